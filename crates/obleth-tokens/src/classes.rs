//! The Unicode character classes of tiktoken's pre-tokenizer patterns, taken from
//! `regex-syntax`: the same tables that `regex` and `fancy-regex` (which tiktoken
//! matches with) compile `\p{L}`, `\s` and `(?i)` into, so that [`crate::split`]
//! classifies every char exactly as tiktoken does.
//!
//! A char's classes are a few bits, looked up in a 128-entry table for ASCII and by
//! binary search in a list of code point intervals otherwise (a few thousand entries,
//! tens of KiB, built once for both encodings).

use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};

/// `\p{L}`.
pub(crate) const LETTER: u8 = 1;
/// `\p{N}`.
pub(crate) const NUMBER: u8 = 2;
/// `\s` (Unicode `White_Space`).
pub(crate) const SPACE: u8 = 4;
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` (o200k's upper-case word part).
pub(crate) const UPPER: u8 = 8;
/// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` (o200k's lower-case word part).
pub(crate) const LOWER: u8 = 16;

const CLASSES_PATTERNS: [(u8, &str); 5] = [
    (LETTER, r"\p{L}"),
    (NUMBER, r"\p{N}"),
    (SPACE, r"\s"),
    (UPPER, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"),
    (LOWER, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"),
];

/// The letters of the contractions (`'s`, `'ll`, ...), matched ignoring case.
const FOLDED_LETTERS: &[u8] = b"sdmtlver";

/// Inclusive code point ranges, sorted.
type Ranges = Vec<(u32, u32)>;

pub(crate) struct Classes {
    ascii: [u8; 128],
    /// Interval `i` runs from `starts[i]` to the next start; its chars have `bits[i]`.
    starts: Vec<u32>,
    bits: Vec<u8>,
    /// For each letter of [`FOLDED_LETTERS`], what `(?i:letter)` matches.
    folds: Vec<(u8, Ranges)>,
}

static CLASSES: LazyLock<Classes> = LazyLock::new(Classes::build);

pub(crate) fn classes() -> &'static Classes {
    &CLASSES
}

impl Classes {
    fn build() -> Classes {
        let sets: Vec<(u8, Ranges)> = CLASSES_PATTERNS.iter().map(|&(bit, p)| (bit, ranges(p))).collect();
        // Every point where some class begins or ends starts a new interval.
        let mut cuts: Vec<u32> = vec![0];
        for (_, set) in &sets {
            for &(start, end) in set {
                cuts.push(start);
                cuts.push(end.saturating_add(1));
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut classes = Classes { ascii: [0; 128], starts: Vec::new(), bits: Vec::new(), folds: Vec::new() };
        for cut in cuts.into_iter().filter(|&c| c <= char::MAX as u32) {
            let bits = sets.iter().filter(|(_, set)| contains(set, cut)).fold(0, |acc, (bit, _)| acc | bit);
            if classes.bits.last() != Some(&bits) {
                classes.starts.push(cut);
                classes.bits.push(bits);
            }
        }
        for c in 0..128u8 {
            classes.ascii[usize::from(c)] = classes.search(u32::from(c));
        }
        classes.folds = FOLDED_LETTERS.iter().map(|&l| (l, ranges(&format!("(?i:{})", char::from(l))))).collect();
        classes
    }

    /// The class bits of an ASCII byte.
    #[inline]
    pub(crate) fn ascii(&self, b: u8) -> u8 {
        self.ascii.get(usize::from(b)).copied().unwrap_or(0)
    }

    /// The class bits of a code point.
    #[inline]
    pub(crate) fn of(&self, c: u32) -> u8 {
        if c < 128 { self.ascii[c as usize] } else { self.search(c) }
    }

    fn search(&self, c: u32) -> u8 {
        let i = self.starts.partition_point(|&s| s <= c);
        i.checked_sub(1).and_then(|i| self.bits.get(i)).copied().unwrap_or(0)
    }

    /// Whether `c` matches `(?i:letter)`.
    pub(crate) fn folds_to(&self, c: u32, letter: u8) -> bool {
        self.folds.iter().any(|(l, set)| *l == letter && contains(set, c))
    }

    /// How many intervals the list has (3,191 with regex-syntax 0.8.11: about 16 KiB).
    #[cfg(test)]
    pub(crate) fn intervals(&self) -> usize {
        self.starts.len()
    }
}

/// What the single class (or char) `pattern` matches, as `regex-syntax` parses it. The
/// patterns are constants and all parse (`tests` checks each is non-empty); a pattern
/// that did not would match nothing rather than panic.
fn ranges(pattern: &str) -> Ranges {
    let Ok(hir) = regex_syntax::parse(pattern) else { return Vec::new() };
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().iter().map(|r| (u32::from(r.start()), u32::from(r.end()))).collect()
        }
        HirKind::Literal(lit) => match std::str::from_utf8(&lit.0).ok().and_then(|s| s.chars().next()) {
            Some(c) => vec![(u32::from(c), u32::from(c))],
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn contains(set: &[(u32, u32)], c: u32) -> bool {
    set.binary_search_by(|&(start, end)| {
        if end < c {
            std::cmp::Ordering::Less
        } else if start > c {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_parses_to_a_class() {
        for (_, p) in CLASSES_PATTERNS {
            assert!(!ranges(p).is_empty(), "{p}");
        }
        for &l in FOLDED_LETTERS {
            assert!(ranges(&format!("(?i:{})", char::from(l))).len() >= 2, "{}", char::from(l));
        }
    }

    #[test]
    fn known_chars() {
        let c = classes();
        assert_eq!(c.of('a' as u32), LETTER | LOWER);
        assert_eq!(c.of('A' as u32), LETTER | UPPER);
        assert_eq!(c.of('7' as u32), NUMBER);
        assert_eq!(c.of(' ' as u32), SPACE);
        assert_eq!(c.of('\u{3000}' as u32), SPACE);
        assert_eq!(c.of('\u{301}' as u32), UPPER | LOWER);
        assert_eq!(c.of('日' as u32), LETTER | UPPER | LOWER);
        assert_eq!(c.of('!' as u32), 0);
        assert!(c.folds_to('ſ' as u32, b's'));
        assert!(c.folds_to('S' as u32, b's'));
        assert!(!c.folds_to('x' as u32, b's'));
        println!("{} intervals", c.intervals());
    }
}
