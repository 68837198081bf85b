//! Tests of the token estimates. Known counts were checked against the bundled
//! vocabularies (and, for "tiktoken is great!", tiktoken's own README).

use serde_json::json;

use super::*;

const O200K: Encoding = Encoding::O200kBase;
const CL100K: Encoding = Encoding::Cl100kBase;
const BOTH: [Encoding; 2] = [O200K, CL100K];

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn t(enc: Encoding, s: &str) -> u64 {
    count_text(enc, s)
}

// === text ===

#[test]
fn known_counts() {
    for enc in BOTH {
        assert_eq!(t(enc, "hello world"), 2, "{enc}");
        assert_eq!(t(enc, "Hello, world!"), 4, "{enc}");
        assert_eq!(t(enc, "The quick brown fox jumps over the lazy dog."), 10, "{enc}");
        assert_eq!(t(enc, ""), 0, "{enc}");
    }
    assert_eq!(t(CL100K, "tiktoken is great!"), 6);
    // The encodings differ on non-Latin text.
    assert_eq!(t(O200K, "日本語のテキスト"), 6);
    assert_eq!(t(CL100K, "日本語のテキスト"), 8);
}

#[test]
fn special_tokens_count_as_text() {
    for enc in BOTH {
        assert_eq!(t(enc, "<|endoftext|>"), 7, "{enc}");
        assert_eq!(t(enc, "a<|endoftext|>b"), t(enc, "a") + 7 + t(enc, "b"), "{enc}");
    }
}

#[test]
fn text_within_the_budget_is_counted_exactly() {
    let text = "The quick brown fox, jumping over 12345 lazy dogs; naïve café — 日本語 🙂.\n\t".repeat(400);
    assert!(text.len() < EXACT_BYTES);
    for enc in BOTH {
        assert_eq!(t(enc, &text), exact(enc, &text), "{enc}");
    }
}

#[test]
fn the_budget_is_cut_on_a_char_boundary() {
    // A 4-byte char across the budget's end: nothing panics, the count stays close.
    let text = format!("{}{}", "a ".repeat(EXACT_BYTES / 2 - 1), "🙂".repeat(100));
    for enc in BOTH {
        let n = t(enc, &text);
        let e = exact(enc, &text);
        assert!(n.abs_diff(e) <= e / 50, "{enc}: {n} vs {e}");
    }
}

/// The tokenizer's own count of all of `text`.
fn exact(enc: Encoding, text: &str) -> u64 {
    obleth_tokens::count(enc.tokens(), text) as u64
}

#[test]
fn pathological_text_neither_panics_nor_takes_long() {
    // A megabyte of whitespace made tiktoken-rs's regex fail (and the crate panic).
    let started = std::time::Instant::now();
    for s in [" ".repeat(1 << 20), "\n".repeat(1 << 20), " \t\n".repeat(1 << 18), "a".repeat(1 << 20)] {
        for enc in BOTH {
            let n = t(enc, &s);
            assert!(n > 0 && n <= s.len() as u64, "{enc}: {n}");
        }
    }
    // Only EXACT_BYTES of each is tokenized (generous bound for debug builds).
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn text_past_the_exact_budget_is_extrapolated() {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(4 * EXACT_BYTES / 45);
    let n = t(O200K, &text);
    let exact = exact(O200K, &text);
    assert!(n.abs_diff(exact) <= exact / 100, "{n} vs {exact}");
}

// === chat ===

#[test]
fn known_roles_are_one_token() {
    for enc in BOTH {
        for role in KNOWN_ROLES {
            assert_eq!(exact(enc, role), 1, "{enc} {role}");
        }
        let b = body(json!({"messages": [{"role": "narrator", "content": ""}]}));
        assert_eq!(input_tokens(enc, RequestKind::Chat, &b), 3 + t(enc, "narrator") + 3, "{enc}");
    }
}

#[test]
fn chat_follows_the_cookbook() {
    let b = body(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "name": "alice", "content": "hello world"},
        ],
    }));
    for enc in BOTH {
        let system = 3 + t(enc, "system") + t(enc, "You are terse.");
        let user = 3 + t(enc, "user") + 1 + t(enc, "alice") + t(enc, "hello world");
        assert_eq!(input_tokens(enc, RequestKind::Chat, &b), system + user + 3, "{enc}");
    }
}

#[test]
fn chat_content_parts() {
    let b = body(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "something_new"},
        {"text": "no type: ignored"},
        "a bare string: ignored",
    ]}]}));
    let expected = 3 + t(O200K, "user") + t(O200K, "What is in this image?") + 2 * 85 + 2 * OTHER_PART_TOKENS + 3;
    assert_eq!(input_tokens(O200K, RequestKind::Chat, &b), expected);
}

#[test]
fn chat_null_content_and_tool_calls() {
    let args = r#"{"city":"Paris","unit":"celsius"}"#;
    let b = body(json!({"messages": [
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": null, "function_call": {"name": "legacy", "arguments": "{}"}},
    ]}));
    let e = O200K;
    let calls = 3 + t(e, "assistant") + t(e, "get_weather") + t(e, args) + t(e, "get_time") + t(e, "{}");
    let result = 3 + t(e, "tool") + t(e, "call_1") + t(e, "18C");
    let legacy = 3 + t(e, "assistant") + t(e, "legacy") + t(e, "{}");
    assert_eq!(input_tokens(e, RequestKind::Chat, &b), calls + result + legacy + 3);
}

#[test]
fn chat_schemas_count_their_compact_json() {
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}]);
    let schema = json!({"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}});
    let functions = json!([{"name": "f", "parameters": {}}]);
    let b = body(json!({
        "messages": [],
        "tools": tools,
        "functions": functions,
        "response_format": {"type": "json_schema", "json_schema": schema},
    }));
    let compact = |v: &Value| t(O200K, &serde_json::to_string(v).expect("json"));
    let expected = 3 + compact(&tools) + compact(&functions) + compact(&schema);
    assert_eq!(input_tokens(O200K, RequestKind::Chat, &b), expected);

    // A plain JSON-mode response format has no schema to count.
    let b = body(json!({"messages": [], "response_format": {"type": "json_object"}}));
    assert_eq!(input_tokens(O200K, RequestKind::Chat, &b), 3);
}

// === completions and embeddings ===

#[test]
fn prompt_and_input_shapes() {
    let cases = [
        (json!("hello world"), 2),
        (json!(["hello world", "Hello, world!"]), 6),
        (json!([1, 2, 3, 4]), 4),
        (json!([[1, 2, 3], [4, 5], []]), 5),
        (json!([]), 0),
    ];
    for (value, expected) in cases {
        for enc in BOTH {
            let prompt = body(json!({"prompt": value}));
            assert_eq!(input_tokens(enc, RequestKind::Completion, &prompt), expected, "prompt {value} {enc}");
            let input = body(json!({"input": value}));
            assert_eq!(input_tokens(enc, RequestKind::Embedding, &input), expected, "input {value} {enc}");
        }
    }
}

#[test]
fn completion_suffix_counts() {
    let b = body(json!({"prompt": "def add(a, b):", "suffix": "hello world"}));
    assert_eq!(input_tokens(O200K, RequestKind::Completion, &b), t(O200K, "def add(a, b):") + 2);
}

#[test]
fn each_kind_reads_only_its_own_fields() {
    let b = body(json!({"prompt": "hello world", "input": "hello world", "messages": [{"role": "user"}]}));
    assert_eq!(input_tokens(O200K, RequestKind::Completion, &b), 2);
    assert_eq!(input_tokens(O200K, RequestKind::Embedding, &b), 2);
    assert_eq!(input_tokens(O200K, RequestKind::Chat, &b), 3 + t(O200K, "user") + 3);
}

// === malformed ===

#[test]
fn malformed_parts_count_zero() {
    for kind in [RequestKind::Chat, RequestKind::Completion, RequestKind::Embedding] {
        assert_eq!(input_tokens(O200K, kind, &Map::new()), 0, "{kind:?}");
        for junk in [json!(null), json!(42), json!(-1), json!(1.5), json!(true), json!({"a": "b"})] {
            let b = body(json!({"messages": junk, "prompt": junk, "input": junk, "suffix": junk}));
            assert_eq!(input_tokens(O200K, kind, &b), 0, "{kind:?} {junk}");
        }
    }
    // Wrong element types inside arrays count 0; the rest still counts.
    let b = body(json!({"prompt": ["hello world", null, {"x": 1}, true, -3, 2.5, 7, [1, "x", -1, 2.0, 3]]}));
    assert_eq!(input_tokens(O200K, RequestKind::Completion, &b), 2 + 1 + 2);
    let b = body(json!({"messages": [
        "not an object",
        null,
        {"role": 7, "name": false, "content": {"text": "object content"}, "tool_calls": "x", "tool_call_id": 3},
        {"tool_calls": [null, 1, {"function": "x"}, {"function": {"name": 1, "arguments": {"a": 1}}}]},
        {"content": [{"type": "text", "text": 5}, {"type": 5}, null]},
        {"function_call": [1, 2]},
    ]}));
    assert_eq!(input_tokens(O200K, RequestKind::Chat, &b), 4 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS);
}

// === output ===

#[test]
fn output_requests() {
    use RequestKind::*;
    let parse = |kind, v: Value| OutputRequest::parse(kind, &body(v));
    let reserve = |kind, v: Value| parse(kind, v).expect("valid").reserve(256, None);
    assert_eq!(reserve(Chat, json!({})), 256);
    assert_eq!(reserve(Chat, json!({"max_tokens": 100})), 100);
    assert_eq!(reserve(Chat, json!({"max_completion_tokens": 50, "max_tokens": 100})), 50);
    assert_eq!(reserve(Chat, json!({"max_completion_tokens": null, "max_tokens": 100})), 100);
    assert_eq!(reserve(Chat, json!({"max_tokens": 100, "n": 3})), 300);
    assert_eq!(reserve(Chat, json!({"n": 2})), 512);
    // Completions generate best_of candidates; chat has no best_of.
    assert_eq!(reserve(Completion, json!({"max_tokens": 10, "n": 2, "best_of": 5})), 50);
    assert_eq!(reserve(Completion, json!({"max_tokens": 10, "n": 2})), 20);
    assert_eq!(reserve(Chat, json!({"max_tokens": 10, "best_of": 5})), 10);
    // Embeddings produce none, whatever they say.
    assert_eq!(reserve(Embedding, json!({"max_tokens": "x", "n": 2})), 0);
    // The context window bounds each choice, not the total.
    let r = parse(Chat, json!({"max_tokens": 1000, "n": 4})).expect("valid");
    assert_eq!(r.reserve(256, Some(300)), 1200);
    assert_eq!(r.reserve(256, Some(0)), 4, "a full window still reserves a token a choice");

    // The review's cases: floats and strings are refused, naming the field.
    for (v, field) in [
        (json!({"max_tokens": 5000.0}), "max_tokens"),
        (json!({"max_tokens": "5000"}), "max_tokens"),
        (json!({"max_completion_tokens": -1, "max_tokens": 10}), "max_completion_tokens"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_tokens": 1.5}), "max_tokens"),
        (json!({"max_tokens": u64::MAX}), "max_tokens"),
        (json!({"max_tokens": 2_147_483_648u64}), "max_tokens"),
        (json!({"max_tokens": 10, "n": 0}), "n"),
        (json!({"max_tokens": 10, "n": "3"}), "n"),
        (json!({"max_tokens": 10, "n": 129}), "n"),
        (json!({"n": true}), "n"),
    ] {
        let e = parse(Chat, v.clone()).expect_err("refused");
        assert_eq!(e.field, field, "{v}");
        assert!(e.message.contains(field), "{}", e.message);
    }
    assert_eq!(parse(Completion, json!({"best_of": 1000})).expect_err("refused").field, "best_of");
    assert_eq!(parse(Chat, json!({"max_tokens": 2_147_483_647u64})).expect("max").max_tokens, Some(2_147_483_647));
    // The message names the type, never echoes a string the client sent.
    let e = parse(Chat, json!({"max_tokens": "<script>"})).expect_err("refused");
    assert!(!e.message.contains("script"), "{}", e.message);
}

#[test]
fn prompt_counts() {
    use RequestKind::*;
    let prompts = |kind, v: Value| OutputRequest::parse(kind, &body(v)).expect("valid").prompts;
    assert_eq!(prompts(Chat, json!({"messages": [{}, {}]})), 1);
    assert_eq!(prompts(Completion, json!({"prompt": "a"})), 1);
    assert_eq!(prompts(Completion, json!({"prompt": ["a", "b", "c"]})), 3);
    assert_eq!(prompts(Completion, json!({"prompt": [1, 2, 3]})), 1, "token ids are one prompt");
    assert_eq!(prompts(Embedding, json!({"input": [[1, 2], [3]]})), 2);
    assert_eq!(prompts(Embedding, json!({"input": []})), 1);
}

// === encodings ===

#[test]
fn encoding_names() {
    for enc in BOTH {
        assert_eq!(Encoding::parse(enc.as_str()), Some(enc));
    }
    assert_eq!(Encoding::parse("o200k_base"), Some(O200K));
    assert_eq!(Encoding::parse("cl100k_base"), Some(CL100K));
    assert_eq!(Encoding::parse("p50k_base"), None);
    assert_eq!(Encoding::parse(""), None);
}

#[test]
fn encoding_for_model() {
    let o200k = [
        "gpt-4o",
        "gpt-4o-mini-2024-07-18",
        "gpt-4.1-nano",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5-mini",
        "o1",
        "o1-preview",
        "o3-mini",
        "o4-mini",
        "chatgpt-4o-latest",
        "openai/gpt-4o",
        "openrouter/openai/o3",
        "GPT-4o",
        "ft:gpt-4o-mini:acme::abc123",
    ];
    for m in o200k {
        assert_eq!(Encoding::for_model(m), Some(O200K), "{m}");
    }
    let cl100k = [
        "gpt-4",
        "gpt-4-turbo",
        "gpt-4-0613",
        "gpt-3.5-turbo",
        "gpt-35-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "azure/gpt-4-32k",
        "ft:gpt-3.5-turbo:acme::x",
    ];
    for m in cl100k {
        assert_eq!(Encoding::for_model(m), Some(CL100K), "{m}");
    }
    let other = [
        "llama-3.1-8b-instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "mistral-large",
        "gpt-oss-20b",
        "claude-3-5-sonnet",
        "",
        "/",
        "openai/",
        "é",
    ];
    for m in other {
        assert_eq!(Encoding::for_model(m), None, "{m}");
    }
}

#[test]
fn warm_then_count() {
    for enc in BOTH {
        warm(enc);
        assert_eq!(t(enc, "hello world"), 2);
    }
}
