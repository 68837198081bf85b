//! Measures what an encoding costs in memory: heap bytes (a counting global allocator)
//! and the process's RSS (anonymous and file-backed, from /proc/self/status), after
//! loading the encoding and after counting a mixed text from 1, 2 or 8 threads.
//!
//! One measurement per process, so that nothing loaded earlier is counted:
//! `memory <tiktoken|obleth> <cl100k_base|o200k_base> <threads>`, or without arguments
//! to run every combination as child processes and print a table.

#[path = "../tests/common/corpus.rs"]
mod corpus;

use std::process::Command;

use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, lib, enc, threads] => measure(lib, enc, threads.parse()?),
        _ => table(&args[0]),
    }
}

/// Runs every combination in a child process and prints their lines.
fn table(me: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{:<9} {:<12} {:>7} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "counter",
        "encoding",
        "threads",
        "load heap",
        "load anon",
        "load file",
        "heap now",
        "heap peak",
        "anon",
        "file"
    );
    for lib in ["tiktoken", "obleth"] {
        for enc in ["cl100k_base", "o200k_base"] {
            for threads in ["1", "2", "8"] {
                let out = Command::new(me).args([lib, enc, threads]).output()?;
                print!("{}", String::from_utf8_lossy(&out.stdout));
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    println!("(KiB; load = growth from loading the encoding; the rest = growth from before loading to after counting)");
    Ok(())
}

type Count = fn(&str) -> usize;

fn counter(lib: &str, enc: &str) -> Option<Count> {
    Some(match (lib, enc) {
        ("tiktoken", "cl100k_base") => |t| tiktoken_rs::cl100k_base_singleton().count_ordinary(t),
        ("tiktoken", "o200k_base") => |t| tiktoken_rs::o200k_base_singleton().count_ordinary(t),
        ("obleth", "cl100k_base") => |t| obleth_tokens::count(obleth_tokens::Encoding::Cl100kBase, t),
        ("obleth", "o200k_base") => |t| obleth_tokens::count(obleth_tokens::Encoding::O200kBase, t),
        _ => return None,
    })
}

fn measure(lib: &str, enc: &str, threads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let count = counter(lib, enc).ok_or("unknown counter or encoding")?;
    // The text exists before the first figure, so that it is not counted.
    let text = corpus::mixed(1 << 20);
    let base = (HEAP.current_usage(), rss()?);
    let _ = count("warm");
    let loaded = (HEAP.current_usage(), rss()?);
    HEAP.reset_peak_usage();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..3 {
                    std::hint::black_box(count(&text));
                }
            });
        }
    });
    let done = (HEAP.current_usage(), rss()?);
    let kib = |a: usize, b: usize| (b as i64 - a as i64) / 1024;
    println!(
        "{:<9} {:<12} {:>7} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        lib,
        enc,
        threads,
        kib(base.0, loaded.0),
        kib(base.1.0, loaded.1.0),
        kib(base.1.1, loaded.1.1),
        kib(base.0, done.0),
        kib(base.0, HEAP.peak_usage().max(loaded.0)),
        kib(base.1.0, done.1.0),
        kib(base.1.1, done.1.1),
    );
    Ok(())
}

/// (RssAnon, RssFile) in bytes.
fn rss() -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Option<usize> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<usize>().ok().map(|k| k * 1024)
    };
    Ok((field("RssAnon:").ok_or("no RssAnon")?, field("RssFile:").ok_or("no RssFile")?))
}
