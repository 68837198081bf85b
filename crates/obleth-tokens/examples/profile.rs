//! Counts the mixed corpus in o200k_base in a loop, for a profiler.

#[path = "../tests/common/corpus.rs"]
mod corpus;

fn main() {
    let text = corpus::mixed(1 << 20);
    let mut total = 0;
    for _ in 0..20 {
        total += obleth_tokens::count(obleth_tokens::Encoding::O200kBase, &text);
    }
    println!("{total}");
}
