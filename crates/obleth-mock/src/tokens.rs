//! Deterministic token counting, output text and embedding vectors.
//!
//! The mock has no tokenizer; it needs a rule that is cheap, obvious to a test author and
//! stable across runs, so that a test can compute the expected `usage` by hand.
//!
//! # Token-counting rule
//!
//! A *word* is a maximal run of non-whitespace characters (`str::split_whitespace`).
//!
//! - **Chat** `prompt_tokens` = words across every message's `content` (a string, or the
//!   `text` of each `{"type":"text"}` part of an array; other parts and `null` count 0)
//!   **+ 3 per message + 3** (the per-message and reply-priming overhead of OpenAI's own
//!   counting recipe). Roles, names and tool calls are not counted.
//! - **Completions** `prompt_tokens` = words of the prompt; for an array of strings the sum of
//!   their words; a token-id array counts its length (an array of token-id arrays sums them).
//! - **Embeddings** `prompt_tokens` = the same rule as completions, applied to `input`.
//! - `completion_tokens` = number of choices × output length, where every output token is
//!   exactly one word (`" " + word`), so re-counting the generated text by the same rule gives
//!   back the output length.
//!
//! Output words and embedding vectors come from a hash of the configured seed, the prompt and
//! the position, so the same request always gets the same answer.

/// Small fixed vocabulary so that demo output reads like (nonsense) text rather than ids.
/// The leading space is part of each entry so that emitting a token never allocates.
const VOCAB: [&str; 64] = [
    " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog", " a", " fair", " share", " of", " tokens",
    " for", " every", " tenant", " gateway", " model", " stream", " cloud", " river", " stone", " light", " paper",
    " green", " blue", " silver", " north", " south", " east", " west", " window", " garden", " engine", " signal",
    " bridge", " forest", " ocean", " market", " letter", " music", " number", " orange", " planet", " quiet",
    " rapid", " simple", " table", " under", " velvet", " winter", " yellow", " zebra", " amber", " basket", " candle",
    " dream", " echo", " feather", " galaxy", " harbor", " island", " jungle", " kettle",
];

/// Number of whitespace-separated words in `text`.
pub(crate) fn words(text: &str) -> u32 {
    saturate(text.split_whitespace().count())
}

/// Converts a count to `u32`, saturating: token totals beyond 4 billion are not meaningful.
pub(crate) fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// FNV-1a, 64 bit.
///
/// Hand-written because std's `DefaultHasher` is explicitly not stable across Rust releases
/// and output text must not change when the toolchain does; pulling in a crate for six lines
/// is not worth it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new(seed: u64) -> Self {
        let mut h = Self(0xcbf2_9ce4_8422_2325);
        h.write(&seed.to_le_bytes());
        h
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Writes a string followed by a separator so that `["ab","c"]` and `["a","bc"]` differ.
    pub(crate) fn write_str(&mut self, s: &str) {
        self.write(s.as_bytes());
        self.write(&[0xff]);
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// SplitMix64 finaliser: spreads a (key, position) pair over all 64 bits.
pub(crate) fn mix(key: u64, position: u64) -> u64 {
    let mut z = key ^ position.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The output token at `position` of choice `choice`, for a prompt hashed to `prompt_hash`.
/// Always one word with a leading space.
pub(crate) fn output_token(prompt_hash: u64, choice: u32, position: u32) -> &'static str {
    let h = mix(prompt_hash ^ u64::from(choice).rotate_left(32), u64::from(position));
    // Truncation is intended: the low six bits pick a vocabulary entry.
    VOCAB[(h & 63) as usize]
}

/// The full text of one choice: `len` tokens concatenated.
pub(crate) fn output_text(prompt_hash: u64, choice: u32, len: u32) -> String {
    let mut s = String::with_capacity(len as usize * 7);
    for pos in 0..len {
        s.push_str(output_token(prompt_hash, choice, pos));
    }
    s
}

/// A deterministic, L2-normalised embedding of `dims` floats for an input hashed to `key`.
pub(crate) fn embedding(key: u64, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims)
        .map(|d| {
            // Top 24 bits → uniform in [-1, 1); f32 holds 24 bits of mantissa exactly.
            let bits = mix(key, d as u64) >> 40;
            (bits as f32 / (1u32 << 23) as f32) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// Standard base64 (RFC 4648, padded) of the little-endian bytes of `floats`, which is what
/// OpenAI returns for `encoding_format: "base64"`.
///
/// Hand-written because it is the only base64 the mock needs and it is twenty lines; a
/// workspace dependency for it would outlive its one use.
pub(crate) fn base64_f32_le(floats: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_any_whitespace() {
        assert_eq!(words(""), 0);
        assert_eq!(words("  hello \n\t world  "), 2);
        assert_eq!(words("one"), 1);
    }

    #[test]
    fn output_is_deterministic_and_one_word_per_token() {
        let h = Fnv::new(7).finish();
        let a = output_text(h, 0, 25);
        assert_eq!(a, output_text(h, 0, 25));
        assert_eq!(words(&a), 25);
        assert_ne!(a, output_text(h, 1, 25), "choices should differ");
        assert_ne!(a, output_text(Fnv::new(8).finish(), 0, 25), "seeds should differ");
    }

    #[test]
    fn every_token_is_one_spaced_word() {
        for pos in 0..1_000 {
            let t = output_token(42, 0, pos);
            assert!(t.starts_with(' '), "{t:?}");
            assert_eq!(words(t), 1, "{t:?}");
        }
    }

    #[test]
    fn embedding_is_normalised() {
        let v = embedding(3, 16);
        assert_eq!(v.len(), 16);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v, embedding(3, 16));
        assert!(embedding(3, 0).is_empty());
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // 1.0f32 = 00 00 80 3f; 2.0f32 = 00 00 00 40.
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32_le(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32_le(&[1.0, 2.0, 1.0]), "AACAPwAAAEAAAIA/");
        assert_eq!(base64_f32_le(&[]), "");
    }
}
