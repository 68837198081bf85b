//! The splitter's pieces are the matches of tiktoken's own patterns, run with
//! `fancy-regex` (the engine and version tiktoken-rs uses): a stronger check than equal
//! counts, which a wrong split can still give.

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/strategy.rs"]
mod strategy;

use std::sync::LazyLock;

use proptest::prelude::*;

use super::pieces;
use crate::Encoding;

/// cl100k_base's pattern as tiktoken-rs 0.12 builds it (it exports only o200k's).
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

static CL100K: LazyLock<fancy_regex::Regex> =
    LazyLock::new(|| fancy_regex::Regex::new(CL100K_PATTERN).expect("tiktoken's pattern compiles"));
static O200K: LazyLock<fancy_regex::Regex> =
    LazyLock::new(|| fancy_regex::Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).expect("tiktoken's pattern compiles"));

fn expected(enc: Encoding, text: &str) -> Vec<String> {
    let re = match enc {
        Encoding::Cl100kBase => &*CL100K,
        Encoding::O200kBase => &*O200K,
    };
    re.find_iter(text).map(|m| m.expect("the match succeeds").as_str().to_owned()).collect()
}

fn actual(enc: Encoding, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    pieces(enc, text, |p| out.push(String::from_utf8_lossy(p).into_owned()));
    out
}

#[test]
fn samples_and_their_suffixes() {
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        for (_, text) in corpus::SAMPLES {
            for (i, _) in text.char_indices() {
                assert_eq!(actual(enc, &text[i..]), expected(enc, &text[i..]), "{enc:?}");
                assert_eq!(actual(enc, &text[..i]), expected(enc, &text[..i]), "{enc:?}");
            }
        }
        let text = corpus::mixed(64 * 1024);
        assert_eq!(actual(enc, &text), expected(enc, &text), "{enc:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_splits_alike(text in strategy::text()) {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            prop_assert_eq!(actual(enc, &text), expected(enc, &text), "{:?}", enc);
        }
    }
}
