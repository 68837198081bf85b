//! obleth-tokens counts exactly what tiktoken-rs's `count_ordinary` counts: on a fixed
//! corpus (each sample, every suffix of it, every pair of samples, large repetitions,
//! long runs) and on random strings mixing ASCII, whitespace of every kind, letters of
//! many scripts and cases, combining marks, numbers and emoji, in both encodings.
//! A mismatch fails the test.

mod common;

use common::corpus::{SAMPLES, mixed};
use common::strategy::text;
use obleth_tokens::{Encoding, count};
use proptest::prelude::*;

const ENCODINGS: [Encoding; 2] = [Encoding::Cl100kBase, Encoding::O200kBase];

fn reference(enc: Encoding, text: &str) -> usize {
    match enc {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton().count_ordinary(text),
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton().count_ordinary(text),
    }
}

fn assert_same(enc: Encoding, text: &str) {
    assert_eq!(count(enc, text), reference(enc, text), "{enc:?} on {text:?}");
}

#[test]
fn samples() {
    for enc in ENCODINGS {
        for (name, text) in SAMPLES {
            assert_eq!(count(enc, text), reference(enc, text), "{enc:?} on sample {name}");
        }
    }
}

/// Cutting a sample anywhere moves the end of the text, where `$` and `(?!\S)` match.
#[test]
fn every_suffix_and_prefix_of_each_sample() {
    for enc in ENCODINGS {
        for (_, text) in SAMPLES {
            for (i, _) in text.char_indices() {
                assert_same(enc, &text[i..]);
                assert_same(enc, &text[..i]);
            }
        }
    }
}

#[test]
fn every_pair_of_samples() {
    for enc in ENCODINGS {
        for (_, a) in SAMPLES {
            for (_, b) in SAMPLES {
                assert_same(enc, &format!("{a}{b}"));
            }
        }
    }
}

#[test]
fn a_large_mixed_text() {
    let text = mixed(256 * 1024);
    for enc in ENCODINGS {
        assert_same(enc, &text);
    }
}

/// Runs long enough for the heap merge (100 bytes and more) and for whitespace runs
/// that the chunking of the old estimator was there for.
#[test]
fn long_runs() {
    let runs = [
        "a".repeat(5000),
        "ab".repeat(700),
        "日本".repeat(300),
        "👍".repeat(200),
        "7".repeat(1001),
        " ".repeat(3000),
        format!("{}x", " ".repeat(3000)),
        format!("x{}y", "\n".repeat(500)),
        format!("{}{}", " \t".repeat(400), "\n"),
        "\u{3000}".repeat(700),
        "!?".repeat(600),
        format!("{}end", "=".repeat(2000)),
        "A".repeat(300) + &"b".repeat(300),
        "e\u{301}".repeat(300),
        "'ll".repeat(300),
        format!("word{}", "\r\n".repeat(300)),
    ];
    for enc in ENCODINGS {
        for run in &runs {
            assert_same(enc, run);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_cl100k(text in text()) {
        prop_assert_eq!(count(Encoding::Cl100kBase, &text), reference(Encoding::Cl100kBase, &text), "{:?}", text);
    }

    #[test]
    fn random_text_o200k(text in text()) {
        prop_assert_eq!(count(Encoding::O200kBase, &text), reference(Encoding::O200kBase, &text), "{:?}", text);
    }
}
