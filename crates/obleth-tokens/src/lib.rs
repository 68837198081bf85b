//! Exact token counts for OpenAI's `cl100k_base` and `o200k_base` encodings, in little
//! memory.
//!
//! Counts what tiktoken's ordinary encoding would produce (special tokens in the text
//! count as the text they are). Only counting: there is no decoding and no token ids.
//!
//! Why not `tiktoken-rs` itself: its encoder keeps every token twice in hash maps of
//! `Vec<u8>` (plus a sorted copy), 128 clones of a `fancy-regex`, and a regex cache per
//! counting thread; o200k_base costs tens of MiB that way (see README.md for the
//! figures). Here an encoding is its vocabulary's bytes as compiled into the binary
//! (read-only, file-backed pages), one table of `u32` slots built on first use, and a
//! hand-written pre-tokenizer that matches tiktoken's regular expressions exactly,
//! with the Unicode classes of the `regex` crates ([`classes`]). Counting allocates
//! only a small scratch vector per call and never fails or panics on any input, and
//! its time is linear in the text except for the byte-pair merge of single pieces
//! (quadratic below 100 bytes, `n log n` above, as in tiktoken).
//!
//! `tests/equality.rs` compares every count with `tiktoken-rs` on a fixed corpus and
//! random text; `vocab::tests` checks every token of both vocabularies.

mod bpe;
mod classes;
mod split;
mod vocab;

use std::sync::OnceLock;

use vocab::Vocab;

/// A BPE encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5 and the o-series.
    O200kBase,
    /// GPT-4, GPT-3.5 and the OpenAI embedding models.
    Cl100kBase,
}

static CL100K: OnceLock<Vocab> = OnceLock::new();
static O200K: OnceLock<Vocab> = OnceLock::new();

impl Encoding {
    /// The encoding's vocabulary, whose table is built on first use.
    fn vocab(self) -> &'static Vocab {
        match self {
            Encoding::Cl100kBase => CL100K.get_or_init(|| {
                Vocab::new(include_bytes!("../data/cl100k_base.tokens"), include_bytes!("../data/cl100k_base.ends"))
            }),
            Encoding::O200kBase => O200K.get_or_init(|| {
                Vocab::new(include_bytes!("../data/o200k_base.tokens"), include_bytes!("../data/o200k_base.ends"))
            }),
        }
    }

    fn cell(self) -> &'static OnceLock<Vocab> {
        match self {
            Encoding::Cl100kBase => &CL100K,
            Encoding::O200kBase => &O200K,
        }
    }
}

/// Counts the tokens of `text` in the ordinary encoding of `enc`.
pub fn count(enc: Encoding, text: &str) -> usize {
    let vocab = enc.vocab();
    let mut scratch = bpe::Scratch::default();
    let mut tokens = 0usize;
    split::pieces(enc, text, |piece| tokens = tokens.saturating_add(bpe::count_piece(vocab, piece, &mut scratch)));
    tokens
}

/// Builds `enc`'s table now (a few milliseconds; see README.md for its size), so that
/// the first [`count`] does not pay for it.
pub fn load(enc: Encoding) {
    let _ = enc.vocab();
    let _ = classes::classes();
}

/// Whether `enc`'s table has been built.
pub fn is_loaded(enc: Encoding) -> bool {
    enc.cell().get().is_some()
}

/// Heap bytes that `enc` holds once loaded (its table), if it is loaded.
pub fn heap_bytes(enc: Encoding) -> Option<usize> {
    enc.cell().get().map(Vocab::heap_bytes)
}
