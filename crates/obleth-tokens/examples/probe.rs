//! Prints tiktoken-rs's tokens and both counts of the text given as argument (a
//! debugging aid for the splitter).

fn main() {
    let text = std::env::args().nth(1).unwrap_or_default().replace("\\n", "\n").replace("\\t", "\t");
    for (enc, bpe) in [
        (obleth_tokens::Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
        (obleth_tokens::Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
    ] {
        let tokens: Vec<String> = bpe
            .encode_ordinary(&text)
            .iter()
            .map(|&t| String::from_utf8_lossy(&bpe.decode_bytes(&[t]).unwrap_or_default()).into_owned())
            .collect();
        println!("{enc:?}: tiktoken {} {tokens:?}, obleth {}", tokens.len(), obleth_tokens::count(enc, &text));
    }
}
