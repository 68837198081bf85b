//! A vocabulary: the bytes of its tokens in rank order and their end offsets, both
//! compiled into the binary (`data/`, written by `examples/gen_vocab.rs`), and an
//! open-addressing hash table from token bytes to rank, built when the encoding is
//! first used.
//!
//! A slot is one `u32`: the rank plus one (0 is empty) in the low [`RANK_BITS`] bits
//! and a tag of the key's hash in the rest, so that most probes that miss (most lookups
//! of the byte-pair merge miss) are told apart without reading the token's bytes.
//! Tables are at most ~77 % full: 512 KiB for cl100k_base, 1 MiB for o200k_base.

/// Bits of a slot that hold the rank plus one (o200k_base has 199,998 tokens).
const RANK_BITS: u32 = 18;
const RANK_MASK: u32 = (1 << RANK_BITS) - 1;
const TAG_BITS: u32 = 32 - RANK_BITS;

pub(crate) struct Vocab {
    /// Every token's bytes, in rank order.
    tokens: &'static [u8],
    /// Where each token ends in `tokens` (little-endian `u32`s, one per rank).
    ends: &'static [u8],
    slots: Box<[u32]>,
    /// The index of a key's slot is its hash's top bits: `hash >> shift`.
    shift: u32,
}

impl Vocab {
    pub(crate) fn new(tokens: &'static [u8], ends: &'static [u8]) -> Vocab {
        // Ranks that do not fit a slot are left out (none in the bundled vocabularies,
        // which `tests` checks whole).
        let n = (ends.len() / 4).min(RANK_MASK as usize - 1);
        let capacity = (n + n / 4 + 1).next_power_of_two().max(2);
        let mut vocab =
            Vocab { tokens, ends, slots: vec![0; capacity].into_boxed_slice(), shift: 64 - capacity.trailing_zeros() };
        for rank in 0..n as u32 {
            if let Some(bytes) = vocab.token(rank) {
                vocab.insert(bytes, rank);
            }
        }
        vocab
    }

    fn insert(&mut self, bytes: &[u8], rank: u32) {
        let (mut i, tag) = self.locate(bytes);
        let mask = self.slots.len() - 1;
        while let Some(slot) = self.slots.get_mut(i) {
            if *slot == 0 {
                *slot = tag | (rank + 1);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The first slot to probe for `bytes`, and the tag its slot carries.
    #[inline]
    fn locate(&self, bytes: &[u8]) -> (usize, u32) {
        let h = hash(bytes);
        let index = (h >> self.shift) as usize;
        let tag = ((h >> (self.shift - TAG_BITS)) as u32) << RANK_BITS;
        (index, tag)
    }

    /// The rank of the token whose bytes are `bytes`, if there is one.
    #[inline]
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let (mut i, tag) = self.locate(bytes);
        let mask = self.slots.len() - 1;
        // Ends at an empty slot: the table is never full.
        loop {
            let slot = *self.slots.get(i)?;
            if slot == 0 {
                return None;
            }
            if slot & !RANK_MASK == tag {
                let rank = (slot & RANK_MASK) - 1;
                if self.token(rank) == Some(bytes) {
                    return Some(rank);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The bytes of the token of rank `rank`.
    pub(crate) fn token(&self, rank: u32) -> Option<&'static [u8]> {
        let start = match rank.checked_sub(1) {
            Some(prev) => self.end(prev)?,
            None => 0,
        };
        self.tokens.get(start..self.end(rank)?)
    }

    fn end(&self, rank: u32) -> Option<usize> {
        let at = rank as usize * 4;
        let bytes: [u8; 4] = self.ends.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(bytes) as usize)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }
}

/// A multiplicative hash of a byte string (the multiplier is rustc-hash's), reading
/// it in at most a few loads without copying: short keys (most lookups are of 2 to 8
/// bytes) as two overlapping words, longer ones 8 bytes at a time plus the last 8.
/// The slot index takes the top bits of the product, which every input bit reaches.
#[inline]
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let len = bytes.len();
    let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(K);
    let h = (len as u64).wrapping_mul(K);
    match len {
        0 => h,
        1..=3 => {
            let word = u64::from(bytes[0]) | u64::from(bytes[len / 2]) << 8 | u64::from(bytes[len - 1]) << 16;
            mix(h, word)
        }
        4..=8 => mix(h, u64::from(read_u32(bytes, 0)) << 32 | u64::from(read_u32(bytes, len - 4))),
        _ => {
            let mut h = h;
            let mut at = 0;
            while at + 8 < len {
                h = mix(h, read_u64(bytes, at));
                at += 8;
            }
            mix(h, read_u64(bytes, len - 8))
        }
    }
}

#[inline]
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
}

#[inline]
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
#[path = "vocab_tests.rs"]
mod tests;
