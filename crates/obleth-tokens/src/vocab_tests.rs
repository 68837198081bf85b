//! Every token of both bundled vocabularies against tiktoken-rs's, and the table's
//! lookups of each.

use super::*;
use crate::Encoding;

fn check(enc: Encoding, bpe: &tiktoken_rs::CoreBPE, count: u32) {
    let vocab = enc.vocab();
    for rank in 0..count {
        let expected = bpe.decode_bytes(&[rank]).ok();
        assert_eq!(vocab.token(rank).map(<[u8]>::to_vec), expected, "{enc:?} rank {rank}");
        let bytes = vocab.token(rank).unwrap_or_default();
        assert_eq!(vocab.rank(bytes), Some(rank), "{enc:?} lookup of rank {rank}");
    }
    assert_eq!(vocab.token(count), None);
    for b in 0..=255u8 {
        assert!(vocab.rank(&[b]).is_some(), "{enc:?}: byte {b} is no token");
    }
    assert_eq!(vocab.rank(b""), None);
    assert_eq!(vocab.rank(b"\xff\xfe this is no token \x00"), None);
}

#[test]
fn cl100k_base_is_tiktokens() {
    check(Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton(), 100_256);
}

#[test]
fn o200k_base_is_tiktokens() {
    check(Encoding::O200kBase, tiktoken_rs::o200k_base_singleton(), 199_998);
}

/// Lookups stay short: the mean probe length over every token.
#[test]
fn probes_are_short() {
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let vocab = enc.vocab();
        let mask = vocab.slots.len() - 1;
        let (mut total, mut worst, mut n) = (0usize, 0usize, 0usize);
        while let Some(bytes) = vocab.token(n as u32) {
            let (home, _) = vocab.locate(bytes);
            let mut i = home;
            while vocab.slots[i] & RANK_MASK != n as u32 + 1 {
                i = (i + 1) & mask;
            }
            let probes = ((i + vocab.slots.len() - home) & mask) + 1;
            total += probes;
            worst = worst.max(probes);
            n += 1;
        }
        let mean = total as f64 / n as f64;
        println!("{enc:?}: {n} tokens, {} slots, mean probes {mean:.2}, worst {worst}", vocab.slots.len());
        assert!(mean < 3.0, "{enc:?}: mean probes {mean}");
    }
}
