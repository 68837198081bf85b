//! The fixed texts that the equality tests and the measuring examples count: each is a
//! kind of input the pre-tokenizer treats differently (prose, code, JSON, scripts
//! without spaces, emoji, right-to-left text, whitespace runs, digits, contractions).

/// Named samples; [`mixed`] repeats them into a larger text.
pub const SAMPLES: &[(&str, &str)] = &[
    ("empty", ""),
    (
        "english",
        "The quick brown fox jumps over the lazy dog. It's 4:30pm; we'll see   whether they've\nfinished -- or haven't.\n\nNew paragraph: \"Quoted\" words, (parentheses) and [brackets]!",
    ),
    (
        "contractions",
        "I'LL go, you'Re here, she'S, they'VE, we'D, I'M, don't, DON'T, it'ſ, 'll 're 've 'd 'm 's 't, ''s '''re, l'LL, x'lL",
    ),
    (
        "code",
        "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{:?}\", x);\n}\n\n\tif (a && b || !c) { return a->b; }\n// comment // with /// slashes\n#include <stdio.h>\r\nint main(void){return 0;}\r\n",
    ),
    (
        "json",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello, world!\"}],\"max_tokens\":1024,\"temperature\":0.7,\"nested\":{\"a\":[1,2,3,{\"b\":null}],\"c\":true}}",
    ),
    (
        "cjk",
        "日本語のテキストです。中文文本，没有空格。한국어 텍스트도 있습니다. 漢字とかなカナ混じり文、ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３。",
    ),
    ("emoji", "👍🏽 Hello 👨‍👩‍👧‍👦 family! 🇫🇷🇯🇵 flags, ❤️ hearts ✨✨✨ and 😀😃😄😁 a run: 🙂🙂🙂🙂🙂🙂"),
    ("arabic", "مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣٤٥ و 12345. وَالْعَرَبِيَّةُ مَعَ التَّشْكِيلِ"),
    ("whitespace", "a\n\n  \tb   c\t\t\td \r\n\r\n e\u{a0}\u{a0}f\u{2003}g\u{3000}h \n \n x  \n\n\n   \t\n  end  \n\n"),
    ("trailing_spaces", "ends with spaces     "),
    ("trailing_newlines", "ends with newlines\n\n\n"),
    ("only_spaces", "          "),
    ("digits", "1 12 123 1234 12345 123456789012345678901234567890 3.14159265358979 ١٢٣٤٥٦٧ ²³¹ ⅓⅔ Ⅻ 0x1F 1e10 -42"),
    (
        "long_word",
        "pneumonoultramicroscopicsilicovolcanoconiosis Supercalifragilisticexpialidocious aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
    (
        "long_punct",
        "==================================================================================================================== ------------------------------------------------------------------------------------------------------------------------ !!!???...,,,;;;:::",
    ),
    (
        "base64",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg",
    ),
    (
        "marks",
        "e\u{301}e\u{301}\u{301} \u{301}abc \u{301}\u{302}XYZ naïve café Ǆungla ǅemal Ǉ ᾈ ǈ Straße İstanbul ΣΑΣ σας ﬁ ﬂ",
    ),
    (
        "case_mix",
        "HTTPServer XMLHttpRequest iPhone McDONALD'S camelCaseWord snake_case_word SCREAMING_CASE kebab-case-word ABCdefGHI",
    ),
    ("specials", "<|endoftext|> <|fim_prefix|> <|endofprompt|> text"),
    ("controls", "\u{0}\u{1}\u{7f}\u{85}\u{200b}\u{200d}\u{feff}\u{2028}\u{2029}\u{b}\u{c} tail"),
    ("paths", "/usr/local/bin/ C:\\Windows\\System32 https://example.com/a/b?c=d&e=f#g ./src//lib.rs \n/\n//\r\n"),
];

/// Every sample followed by a newline, repeated until the text has at least `bytes` bytes.
pub fn mixed(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 4096);
    while out.len() < bytes {
        for (_, text) in SAMPLES {
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}
