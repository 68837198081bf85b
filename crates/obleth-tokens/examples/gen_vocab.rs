//! Writes `data/<encoding>.tokens` and `data/<encoding>.ends` from tiktoken-rs's bundled
//! vocabularies: the bytes of every token in rank order, and the end offset of each
//! token as a little-endian u32. Run from the crate's directory:
//! `cargo run --release -p obleth-tokens --example gen_vocab`.
//!
//! The files are checked token by token against tiktoken-rs by `tests/vocab.rs`.

use std::fs;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    write("cl100k_base", tiktoken_rs::cl100k_base_singleton())?;
    write("o200k_base", tiktoken_rs::o200k_base_singleton())?;
    Ok(())
}

fn write(name: &str, bpe: &tiktoken_rs::CoreBPE) -> Result<(), Box<dyn std::error::Error>> {
    let mut tokens = Vec::new();
    let mut ends = Vec::new();
    let mut longest = 0;
    // Ranks are dense from 0; the first rank that is no ordinary token ends the list
    // (both encodings leave a gap before their special tokens).
    for rank in 0u32.. {
        let Ok(bytes) = bpe.decode_bytes(&[rank]) else { break };
        if bytes.starts_with(b"<|") && bytes.ends_with(b"|>") && bytes.len() > 4 {
            break;
        }
        longest = longest.max(bytes.len());
        tokens.extend_from_slice(&bytes);
        ends.extend_from_slice(&u32::try_from(tokens.len())?.to_le_bytes());
    }
    fs::write(format!("data/{name}.tokens"), &tokens)?;
    fs::write(format!("data/{name}.ends"), &ends)?;
    println!("{name}: {} tokens, {} bytes, longest {longest}", ends.len() / 4, tokens.len());
    Ok(())
}
