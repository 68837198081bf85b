//! Counting speed of obleth-tokens against tiktoken-rs's `count_ordinary` on the same
//! texts, in one run, and how long each takes to load an encoding. Prints a table:
//! `cargo run --release -p obleth-tokens --example speed`.

#[path = "../tests/common/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use obleth_tokens::Encoding;

/// Each text is repeated to about this many bytes (what the gateway counts exactly of
/// one request at most).
const TEXT_BYTES: usize = 64 * 1024;
/// Each measurement takes turns counting with both for this long.
const MIN_TIME: Duration = Duration::from_millis(1500);

fn main() {
    println!("load (first count of \"warm\"):");
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let obleth = time_once(|| obleth_tokens::count(enc, "warm"));
        let tiktoken = time_once(|| reference(enc, "warm"));
        println!("  {enc:?}: obleth {obleth:.1?}, tiktoken-rs {tiktoken:.1?}");
    }
    println!();
    println!("{:<12} {:<12} {:>12} {:>12} {:>8}", "text", "encoding", "obleth MB/s", "tiktoken MB/s", "ratio");
    let texts = ["english", "code", "json", "cjk", "emoji", "arabic", "whitespace", "digits"];
    let mut cases: Vec<(String, String)> = texts
        .iter()
        .filter_map(|name| corpus::SAMPLES.iter().find(|(n, _)| n == name))
        .map(|(name, text)| (name.to_string(), repeat(text)))
        .collect();
    cases.push(("mixed".to_string(), corpus::mixed(TEXT_BYTES)));
    for (name, text) in &cases {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let (ours, theirs) = rates(text, enc);
            assert_eq!(obleth_tokens::count(enc, text), reference(enc, text), "{name} {enc:?}");
            println!("{name:<12} {:<12} {ours:>12.1} {theirs:>12.1} {:>8.2}", format!("{enc:?}"), ours / theirs);
        }
    }
    println!("(ratio = obleth / tiktoken-rs; above 1 is faster)");
}

fn reference(enc: Encoding, text: &str) -> usize {
    match enc {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton().count_ordinary(text),
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton().count_ordinary(text),
    }
}

fn repeat(text: &str) -> String {
    let mut out = String::with_capacity(TEXT_BYTES + text.len() + 1);
    while out.len() < TEXT_BYTES {
        out.push_str(text);
        out.push('\n');
    }
    out
}

fn time_once<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    black_box(f());
    start.elapsed()
}

/// MB/s of obleth and tiktoken-rs: the fastest of many short counts of each, taken in
/// turns, so that other processes on the machine slow both alike and rarely both.
fn rates(text: &str, enc: Encoding) -> (f64, f64) {
    let started = Instant::now();
    let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
    while started.elapsed() < MIN_TIME {
        ours = ours.min(time_once(|| obleth_tokens::count(enc, text)));
        theirs = theirs.min(time_once(|| reference(enc, text)));
    }
    let rate = |d: Duration| text.len() as f64 / 1e6 / d.as_secs_f64();
    (rate(ours), rate(theirs))
}
