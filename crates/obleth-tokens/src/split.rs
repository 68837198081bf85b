//! The pre-tokenizer: splits text into the pieces that tiktoken's regular expression
//! finds, written out by hand so that it needs no regex engine, no per-thread cache and
//! no backtracking limit (`fancy-regex` gives up on long whitespace runs).
//!
//! Each pattern is a leftmost-first alternation; every char starts a match of some
//! alternative, so the matches tile the text and the splitter only has to find where
//! the match that starts at a position ends. The functions below try the alternatives
//! in the pattern's order and resolve greedy quantifiers and `(?!\S)` the way a
//! backtracking matcher would; each comment quotes the alternative it implements.
//! `tests/equality.rs` checks the result against tiktoken-rs.

use crate::Encoding;
use crate::classes::{Classes, LETTER, LOWER, NUMBER, SPACE, UPPER, classes};

/// Calls `piece` with each piece of `text`, in order.
pub(crate) fn pieces(enc: Encoding, text: &str, mut piece: impl FnMut(&[u8])) {
    let t = Text { bytes: text.as_bytes(), classes: classes() };
    let mut i = 0;
    while let Some((_, _, len)) = t.at(i) {
        let end = match enc {
            Encoding::Cl100kBase => t.next_cl100k(i),
            Encoding::O200kBase => t.next_o200k(i),
        };
        // Every alternative ends on a char boundary past `i`; should one not, the
        // piece is the one char, so that the loop always advances.
        let end = if end > i && end <= t.bytes.len() && text.is_char_boundary(end) { end } else { i + len };
        piece(t.bytes.get(i..end).unwrap_or_default());
        i = end;
    }
}

/// `[^\r\n\p{L}\p{N}]`: the optional char before a word.
fn before_word(c: u32, bits: u8) -> bool {
    bits & (LETTER | NUMBER) == 0 && c != u32::from(b'\r') && c != u32::from(b'\n')
}

/// `[^\s\p{L}\p{N}]`: punctuation and symbols.
fn punct(bits: u8) -> bool {
    bits & (SPACE | LETTER | NUMBER) == 0
}

fn is_newline(c: u32) -> bool {
    c == u32::from(b'\r') || c == u32::from(b'\n')
}

struct Text<'a> {
    bytes: &'a [u8],
    classes: &'static Classes,
}

impl Text<'_> {
    /// The char that starts at byte `i` (a char boundary): its code point, class bits
    /// and length in bytes; `None` at the end.
    #[inline]
    fn at(&self, i: usize) -> Option<(u32, u8, usize)> {
        let b0 = *self.bytes.get(i)?;
        if b0 < 0x80 {
            return Some((u32::from(b0), self.classes.ascii(b0), 1));
        }
        // The text is a `str`, so this is a valid UTF-8 sequence.
        let (len, first) = match b0 {
            0xF0.. => (4, b0 & 0x07),
            0xE0.. => (3, b0 & 0x0F),
            _ => (2, b0 & 0x1F),
        };
        let mut c = u32::from(first);
        for k in 1..len {
            c = (c << 6) | u32::from(*self.bytes.get(i + k)? & 0x3F);
        }
        Some((c, self.classes.of(c), len))
    }

    /// Where the run of chars that satisfy `pred`, starting at `i`, ends.
    #[inline]
    fn run(&self, mut i: usize, pred: impl Fn(u32, u8) -> bool) -> usize {
        while let Some((c, bits, len)) = self.at(i) {
            if !pred(c, bits) {
                break;
            }
            i += len;
        }
        i
    }

    /// Where the run of at most `max` chars of class `class` starting at `i` ends.
    fn run_max(&self, mut i: usize, class: u8, max: usize) -> usize {
        for _ in 0..max {
            match self.at(i) {
                Some((_, bits, len)) if bits & class != 0 => i += len,
                _ => break,
            }
        }
        i
    }

    fn folds_to(&self, c: u32, letter: u8) -> bool {
        self.classes.folds_to(c, letter)
    }

    /// `(?i:[sdmt]|ll|ve|re)` at `i` (just after an apostrophe): where it ends. Both
    /// encodings accept the same contractions (o200k spells them `'s|'t|'re|...`).
    fn contraction(&self, i: usize) -> Option<usize> {
        let (c1, _, n1) = self.at(i)?;
        if b"sdmt".iter().any(|&l| self.folds_to(c1, l)) {
            return Some(i + n1);
        }
        let (c2, _, n2) = self.at(i + n1)?;
        let pair = |a, b| self.folds_to(c1, a) && self.folds_to(c2, b);
        (pair(b'l', b'l') || pair(b'v', b'e') || pair(b'r', b'e')).then_some(i + n1 + n2)
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` at `i`: where it ends (`i` if absent).
    fn optional_contraction(&self, i: usize) -> usize {
        match self.at(i) {
            Some((c, _, 1)) if c == u32::from(b'\'') => self.contraction(i + 1).unwrap_or(i),
            _ => i,
        }
    }

    /// ` ?[^\s\p{L}\p{N}]+` then a run of the ASCII bytes `tail` (cl100k's possessive
    /// quantifiers change nothing here: what follows each run cannot match its class).
    fn punctuation(&self, i: usize, c: u32, tail: &[u8]) -> Option<usize> {
        let space_first = c == u32::from(b' ') && self.at(i + 1).is_some_and(|(_, bits, _)| punct(bits));
        let start = if space_first { i + 1 } else { i };
        let (_, bits, _) = self.at(start)?;
        if !punct(bits) {
            return None;
        }
        let end = self.run(start, |_, bits| punct(bits));
        Some(self.run(end, |c, _| c < 128 && tail.contains(&(c as u8))))
    }

    /// The whitespace alternatives at `i` (a whitespace char of `len` bytes):
    /// cl100k `\s++$|\s*[\r\n]|\s+(?!\S)|\s`, o200k `\s*[\r\n]+|\s+(?!\S)|\s+`.
    fn whitespace(&self, i: usize, len: usize, enc: Encoding) -> usize {
        let mut end = i;
        let mut last = i;
        let mut last_newline = None;
        while let Some((c, bits, n)) = self.at(end) {
            if bits & SPACE == 0 {
                break;
            }
            if is_newline(c) {
                last_newline = Some(end);
            }
            last = end;
            end += n;
        }
        let at_end = end == self.bytes.len();
        if enc == Encoding::Cl100kBase && at_end {
            // `\s++$`
            return end;
        }
        if let Some(newline) = last_newline {
            // `\s*[\r\n]` (and o200k's `\s*[\r\n]+`): the greedy `\s*` gives back chars
            // until a newline follows, so the match ends after the run's last newline.
            return newline + 1;
        }
        if at_end {
            // `\s+(?!\S)` at the end of the text.
            return end;
        }
        if last > i {
            // `\s+(?!\S)`: all but the run's last char, which stays before the word.
            return last;
        }
        // `\s` / `\s+` of a single char.
        (i + len).max(end)
    }

    /// The end of cl100k's match at `i`:
    /// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
    fn next_cl100k(&self, i: usize) -> usize {
        let Some((c, bits, len)) = self.at(i) else { return i };
        if c == u32::from(b'\'')
            && let Some(end) = self.contraction(i + 1)
        {
            return end;
        }
        // `[^\r\n\p{L}\p{N}]?+\p{L}++`: possessive, so a char taken before the word is
        // never given back.
        let word = if before_word(c, bits) { i + len } else { i };
        let end = self.run(word, |_, bits| bits & LETTER != 0);
        if end > word {
            return end;
        }
        if bits & NUMBER != 0 {
            return self.run_max(i, NUMBER, 3);
        }
        if let Some(end) = self.punctuation(i, c, b"\r\n") {
            return end;
        }
        self.whitespace(i, len, Encoding::Cl100kBase)
    }

    /// The end of o200k's match at `i` (see [`crate::Encoding`]'s pattern in
    /// tiktoken-rs, `O200K_BASE_PAT_STR`):
    /// `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
    /// `|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
    /// `|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    fn next_o200k(&self, i: usize) -> usize {
        let Some((c, bits, len)) = self.at(i) else { return i };
        if let Some(end) = self.word_o200k(i, c, bits, len) {
            return end;
        }
        if bits & NUMBER != 0 {
            return self.run_max(i, NUMBER, 3);
        }
        if let Some(end) = self.punctuation(i, c, b"\r\n/") {
            return end;
        }
        self.whitespace(i, len, Encoding::O200kBase)
    }

    /// o200k's two word alternatives. The optional leading char is greedy: each
    /// alternative first tries with it taken, then without (a combining mark is both a
    /// possible leading char and a word char).
    fn word_o200k(&self, i: usize, c: u32, bits: u8, len: usize) -> Option<usize> {
        let starts = [before_word(c, bits).then_some(i + len), Some(i)];
        // `[...]?[UPPER]*[LOWER]+(contraction)?`
        for word in starts.into_iter().flatten() {
            if let Some(end) = self.upper_then_lower(word) {
                return Some(self.optional_contraction(end));
            }
        }
        // `[...]?[UPPER]+[LOWER]*(contraction)?`
        for word in starts.into_iter().flatten() {
            let upper = self.run(word, |_, bits| bits & UPPER != 0);
            if upper > word {
                let end = self.run(upper, |_, bits| bits & LOWER != 0);
                return Some(self.optional_contraction(end));
            }
        }
        None
    }

    /// `[UPPER]*[LOWER]+` at `i`: where it ends, if it matches. The greedy `[UPPER]*`
    /// gives back chars until `[LOWER]+` can start, i.e. at the end of the upper run if
    /// a lower char follows it, else at the run's last char that is in both classes.
    fn upper_then_lower(&self, i: usize) -> Option<usize> {
        let mut end = i;
        let mut last_both = None;
        while let Some((_, bits, n)) = self.at(end) {
            if bits & UPPER == 0 {
                break;
            }
            if bits & LOWER != 0 {
                last_both = Some(end);
            }
            end += n;
        }
        let lower = match self.at(end) {
            Some((_, bits, _)) if bits & LOWER != 0 => end,
            _ => last_both?,
        };
        Some(self.run(lower, |_, bits| bits & LOWER != 0))
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
