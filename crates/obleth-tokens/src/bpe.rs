//! The byte-pair merge of one piece, counting the tokens it ends as. A port of
//! tiktoken's `byte_pair_encode` (tiktoken-rs 0.12, `vendor_tiktoken.rs`): a piece
//! that is a token is one; a shorter piece repeatedly merges the adjacent pair of
//! lowest rank (leftmost on ties) by rescanning a vector, a piece of 100 bytes or more
//! does the same merges with a heap. Ranks are those of the merged byte strings, as
//! tiktoken's are.

use std::collections::BinaryHeap;

use crate::vocab::Vocab;

type Rank = u32;
const NONE: Rank = Rank::MAX;

/// Below this length tiktoken merges by rescanning (`_byte_pair_merge`), at and above
/// it with a heap (`_byte_pair_merge_large`). Both give the same merges.
const LARGE_PIECE: usize = 100;

/// Reused by the pieces of one count, so that short merges do not allocate.
#[derive(Default)]
pub(crate) struct Scratch {
    parts: Vec<(usize, Rank)>,
}

/// How many tokens `piece` encodes to.
pub(crate) fn count_piece(vocab: &Vocab, piece: &[u8], scratch: &mut Scratch) -> usize {
    // Every single byte is a token (`vocab::tests` checks it).
    if piece.len() <= 1 || vocab.rank(piece).is_some() {
        return piece.len().min(1);
    }
    if piece.len() < LARGE_PIECE { merge_small(vocab, piece, &mut scratch.parts) } else { merge_large(vocab, piece) }
}

/// `_byte_pair_merge`: `parts[i] = (start, rank of the pair that starts there)`.
fn merge_small(vocab: &Vocab, piece: &[u8], parts: &mut Vec<(usize, Rank)>) -> usize {
    let rank = |range: std::ops::Range<usize>| piece.get(range).and_then(|b| vocab.rank(b)).unwrap_or(NONE);
    parts.clear();
    let mut min = (NONE, usize::MAX);
    for i in 0..piece.len() - 1 {
        let r = rank(i..i + 2);
        if r < min.0 {
            min = (r, i);
        }
        parts.push((i, r));
    }
    parts.push((piece.len() - 1, NONE));
    parts.push((piece.len(), NONE));
    // The rank of the part at `i` merged with the next, once the part after is gone.
    let pair_rank = |parts: &[(usize, Rank)], i: usize| match (parts.get(i), parts.get(i + 3)) {
        (Some(&(start, _)), Some(&(end, _))) => rank(start..end),
        _ => NONE,
    };
    while min.0 != NONE {
        let i = min.1;
        if i > 0 {
            parts[i - 1].1 = pair_rank(parts, i - 1);
        }
        parts[i].1 = pair_rank(parts, i);
        parts.remove(i + 1);
        min = (NONE, usize::MAX);
        for (i, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
            if r < min.0 {
                min = (r, i);
            }
        }
    }
    parts.len() - 1
}

#[derive(PartialEq, Eq)]
struct Merge {
    start: usize,
    rank: Rank,
}

impl Ord for Merge {
    /// The heap pops the lowest rank first, then the leftmost.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.start.cmp(&self.start))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One byte position of `_byte_pair_merge_large`: the token that starts here ends at
/// `end`; merging it with the next would end at `next_end`, a token of `next_rank`.
struct State {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: Rank,
}

/// `_byte_pair_merge_large` (pieces of [`LARGE_PIECE`] bytes or more), counting the
/// tokens left.
fn merge_large(vocab: &Vocab, piece: &[u8]) -> usize {
    let rank = |range: std::ops::Range<usize>| piece.get(range).and_then(|b| vocab.rank(b)).unwrap_or(NONE);
    let mut heap = BinaryHeap::with_capacity(piece.len());
    let mut state: Vec<State> = (0..piece.len())
        .map(|i| {
            let next_rank = if i + 1 < piece.len() { rank(i..i + 2) } else { NONE };
            if next_rank != NONE {
                heap.push(Merge { start: i, rank: next_rank });
            }
            State { prev: i.wrapping_sub(1), end: i + 1, next_end: i + 2, next_rank }
        })
        .collect();
    // Points the token at `start` at its new right neighbour ending at `next_end`.
    let potential_merge = |state: &mut Vec<State>, heap: &mut BinaryHeap<Merge>, start: usize, next_end: usize| {
        state[start].next_end = next_end;
        state[start].next_rank = NONE;
        if next_end <= piece.len() {
            let r = rank(start..next_end);
            if r != NONE {
                heap.push(Merge { start, rank: r });
                state[start].next_rank = r;
            }
        }
    };
    while let Some(left) = heap.pop() {
        if left.rank == NONE {
            break;
        }
        if left.rank != state[left.start].next_rank {
            continue; // invalidated by an earlier merge
        }
        let left_start = left.start;
        let right_start = state[left_start].end;
        let right_end = state[left_start].next_end;
        let right_next_end = state[right_start].next_end;
        state[left_start].end = right_end;
        potential_merge(&mut state, &mut heap, left_start, right_next_end);
        if right_end < state.len() {
            state[right_end].prev = left_start;
        }
        if left_start > 0 {
            let prev_start = state[left_start].prev;
            potential_merge(&mut state, &mut heap, prev_start, right_end);
        }
        state[right_start].next_rank = NONE;
    }
    let mut tokens = 0;
    let mut i = 0;
    while let Some(s) = state.get(i) {
        tokens += 1;
        i = s.end;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two merge loops agree on pieces of every length around the switch.
    #[test]
    fn small_and_large_merges_agree() {
        let vocab = crate::Encoding::O200kBase.vocab();
        let mut parts = Vec::new();
        let text = "xq9;Zz~ aé日€👍b".repeat(20);
        for len in 2..text.len() {
            let piece = &text.as_bytes()[..len];
            assert_eq!(merge_small(vocab, piece, &mut parts), merge_large(vocab, piece), "{len}");
        }
    }
}
