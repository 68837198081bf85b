//! Random text for the equality tests: strings of units that the pre-tokenizer treats
//! specially, from many scripts and whitespace kinds.

use proptest::prelude::*;

/// One random unit of text: a char or a short string of a kind the pre-tokenizer
/// treats specially.
pub fn atom() -> impl Strategy<Value = String> {
    let whitespace = prop::sample::select(vec![
        " ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\u{a0}", "\u{3000}", "\u{2028}", "\u{85}", "\u{b}", "\u{c}",
        "\u{2003}",
    ]);
    let contraction = prop::sample::select(vec![
        "'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D", "'ſ",
        "'", "''", "'x",
    ]);
    let letters = prop::sample::select(vec![
        'a', 'z', 'A', 'Z', 'é', 'ß', 'Σ', 'σ', 'ς', 'Ж', 'ж', 'ǅ', 'ǈ', 'ᾈ', 'ʰ', 'ー', '日', '本', 'の', 'カ', '한',
        'ع', 'ب', 'क', 'ि', 'ं', '\u{301}', '\u{302}', '\u{20dd}', 'ſ', 'İ', 'ı', 'K', 'Å', 'ﬁ', '𝐀', '𝐚', 'ｆ', 'Ｆ',
    ]);
    let numbers = prop::sample::select(vec!['0', '1', '9', '٣', '²', '½', 'Ⅻ', '〇', '𝟙', '१']);
    let symbols = prop::sample::select(vec![
        '.', ',', '!', '?', '/', '\\', '-', '_', '=', '+', '(', ')', '{', '}', '"', '#', '$', '%', '&', '*', '<', '>',
        '|', '~', '`', '@', '^', ';', ':', '€', '©', '→', '😀', '👍', '🏽', '\u{200d}', '\u{fe0f}', '🇫', '\u{0}',
        '\u{7f}', '\u{200b}', '\u{feff}',
    ]);
    let ascii_word = "[a-zA-Z]{1,12}";
    prop_oneof![
        4 => ascii_word.prop_map(String::from),
        3 => whitespace.prop_map(String::from),
        1 => contraction.prop_map(String::from),
        4 => letters.prop_map(String::from),
        2 => numbers.prop_map(String::from),
        3 => symbols.prop_map(String::from),
        2 => any::<char>().prop_map(String::from),
        1 => (prop::sample::select(vec!["a", "xy", "é", " ", "日", "=", "1", "\n "]), 30..160usize)
            .prop_map(|(s, n)| s.repeat(n)),
    ]
}

pub fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(atom(), 0..40).prop_map(|atoms| atoms.concat())
}
