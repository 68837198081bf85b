//! Where tiktoken-rs's memory goes: rebuilds each part of its `CoreBPE` for one
//! encoding (the encoder and decoder hash maps, the sorted token list, the 128 regex
//! clones) and measures each part's heap bytes with a counting allocator, then the
//! regex's cache as 1, 2 and 8 threads match text with one shared regex.
//! `cargo run --release -p obleth-tokens --example breakdown`.

#[path = "../tests/common/corpus.rs"]
mod corpus;

use std::collections::HashMap;

use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = corpus::mixed(1 << 20);
    for (name, bpe, pattern) in [
        ("cl100k_base", tiktoken_rs::cl100k_base_singleton(), CL100K_PATTERN),
        ("o200k_base", tiktoken_rs::o200k_base_singleton(), tiktoken_rs::O200K_BASE_PAT_STR),
    ] {
        let tokens: Vec<Vec<u8>> = (0u32..).map_while(|r| bpe.decode_bytes(&[r]).ok()).collect();
        println!("{name}: {} tokens, {} bytes of token text", tokens.len(), tokens.iter().map(Vec::len).sum::<usize>());
        let encoder: HashMap<Vec<u8>, u32> =
            measure("  encoder HashMap<Vec<u8>, Rank>", || tokens.iter().cloned().zip(0..).collect());
        let decoder: HashMap<u32, Vec<u8>> =
            measure("  decoder HashMap<Rank, Vec<u8>>", || encoder.iter().map(|(k, v)| (*v, k.clone())).collect());
        let sorted: Vec<Vec<u8>> = measure("  sorted_token_bytes Vec<Vec<u8>>", || {
            let mut v: Vec<Vec<u8>> = encoder.keys().cloned().collect();
            v.sort();
            v
        });
        let regex = measure("  one fancy_regex::Regex", || fancy_regex::Regex::new(pattern))?;
        let clones: Vec<fancy_regex::Regex> =
            measure("  127 more clones of it", || (1..128).map(|_| regex.clone()).collect());
        for threads in [1, 2, 8] {
            measure(&format!("  regex caches after matching on {threads} threads"), || {
                std::thread::scope(|s| {
                    for re in clones.iter().take(threads) {
                        let text = &text;
                        s.spawn(move || re.find_iter(text).count());
                    }
                })
            });
        }
        drop((encoder, decoder, sorted, clones));
    }
    Ok(())
}

/// Runs `f` and prints how much more heap is in use after it than before.
fn measure<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let before = HEAP.current_usage();
    let out = f();
    let after = HEAP.current_usage();
    println!("{what:<52} {:>8} KiB", (after as i64 - before as i64) / 1024);
    out
}
