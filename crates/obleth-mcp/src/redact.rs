//! What the ledger keeps of a captured tool call: `{"arguments":…,"result":…}` with the
//! server's `redact_fields` replaced by `"[redacted]"`, cut to a bound.
//!
//! A field is either a JSON pointer (RFC 6901, starting with `/`) into that capture
//! document, so `/arguments/token` names one place and `/result/structuredContent/key`
//! another, or a key name, matched exactly wherever it occurs, at any depth and inside
//! arrays, in the arguments and the result alike (what an operator means by "never keep
//! a `password`"). A field the call does not have is no error: tools differ in what
//! they take and answer. Pure: no I/O, so the rules are tested here alone.

use serde_json::{Map, Value};

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

/// The capture of a call: its arguments (`{}` when it had none) and its result (`null`
/// when there was none), redacted by `fields`, as JSON of at most `max` bytes. A capture
/// over the bound is cut on a character boundary (and then no longer parses: that is
/// how a reader tells it was cut).
pub fn capture(
    arguments: Option<&Map<String, Value>>,
    result: Option<&Value>,
    fields: &[String],
    max: usize,
) -> String {
    let mut doc = Map::new();
    doc.insert("arguments".to_owned(), Value::Object(arguments.cloned().unwrap_or_default()));
    doc.insert("result".to_owned(), result.cloned().unwrap_or(Value::Null));
    let mut doc = Value::Object(doc);
    redact(&mut doc, fields);
    let mut text = doc.to_string();
    obleth_core::truncate_to_bytes(&mut text, max);
    text
}

/// Replaces every field of `fields` in `doc` by [`REDACTED`].
pub fn redact(doc: &mut Value, fields: &[String]) {
    let (pointers, names): (Vec<&String>, Vec<&String>) = fields.iter().partition(|f| f.starts_with('/'));
    for pointer in pointers {
        if let Some(v) = doc.pointer_mut(pointer) {
            *v = Value::String(REDACTED.to_owned());
        }
    }
    if !names.is_empty() {
        redact_names(doc, &names);
    }
}

/// Replaces the value of every key in `names`, at any depth.
fn redact_names(v: &mut Value, names: &[&String]) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if names.contains(&key) {
                    *value = Value::String(REDACTED.to_owned());
                } else {
                    redact_names(value, names);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_names(item, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn fields(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| (*s).to_owned()).collect()
    }

    fn redacted(mut doc: Value, f: &[&str]) -> Value {
        redact(&mut doc, &fields(f));
        doc
    }

    #[test]
    fn a_pointer_names_one_place() {
        let doc = json!({"arguments": {"token": "t1", "nested": {"token": "t2"}}, "result": {"token": "t3"}});
        assert_eq!(
            redacted(doc, &["/arguments/token"]),
            json!({"arguments": {"token": "[redacted]", "nested": {"token": "t2"}}, "result": {"token": "t3"}})
        );
    }

    #[test]
    fn a_pointer_escapes_and_indexes() {
        let doc = json!({"arguments": {"a/b": 1, "m~n": 2, "rows": [{"k": 1}, {"k": 2}]}});
        assert_eq!(
            redacted(doc, &["/arguments/a~1b", "/arguments/m~0n", "/arguments/rows/1/k"]),
            json!({"arguments": {"a/b": "[redacted]", "m~n": "[redacted]", "rows": [{"k": 1}, {"k": "[redacted]"}]}})
        );
    }

    #[test]
    fn a_name_is_matched_at_any_depth_in_both_halves() {
        let doc = json!({
            "arguments": {"password": "p0", "user": {"password": {"even": "an object"}, "name": "ann"}},
            "result": {"structuredContent": {"deep": {"deeper": {"password": "p2"}}}}
        });
        assert_eq!(
            redacted(doc, &["password"]),
            json!({
                "arguments": {"password": "[redacted]", "user": {"password": "[redacted]", "name": "ann"}},
                "result": {"structuredContent": {"deep": {"deeper": {"password": "[redacted]"}}}}
            })
        );
    }

    #[test]
    fn names_reach_into_arrays() {
        let doc = json!({"arguments": {"rows": [{"ssn": 1}, [{"ssn": 2}], "ssn", {"other": 3}]}});
        assert_eq!(
            redacted(doc, &["ssn"]),
            json!({"arguments": {"rows": [{"ssn": "[redacted]"}, [{"ssn": "[redacted]"}], "ssn", {"other": 3}]}}),
            "keys only: a string equal to the name is data"
        );
    }

    #[test]
    fn names_are_exact() {
        let doc = json!({"arguments": {"Token": 1, "token_id": 2, "token": 3}});
        assert_eq!(redacted(doc, &["token"]), json!({"arguments": {"Token": 1, "token_id": 2, "token": "[redacted]"}}));
    }

    #[test]
    fn absent_fields_change_nothing() {
        let doc = json!({"arguments": {"a": [1, 2]}, "result": null});
        let fields = ["/arguments/missing", "/arguments/a/7", "/result/content", "/nowhere/at/all", "missing", ""];
        assert_eq!(redacted(doc.clone(), &fields), doc);
        assert_eq!(redacted(doc.clone(), &[]), doc);
    }

    #[test]
    fn the_capture_holds_both_halves_redacted() {
        let mut args = Map::new();
        args.insert("path".into(), json!("/etc/motd"));
        args.insert("api_key".into(), json!("sk-live"));
        let result = json!({"content": [{"type": "text", "text": "hello", "api_key": "echoed"}], "isError": false});
        let got = capture(Some(&args), Some(&result), &fields(&["api_key", "/arguments/path"]), 16 * 1024);
        let parsed: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            parsed,
            json!({
                "arguments": {"path": "[redacted]", "api_key": "[redacted]"},
                "result": {"content": [{"type": "text", "text": "hello", "api_key": "[redacted]"}], "isError": false}
            })
        );
        assert!(!got.contains("sk-live") && !got.contains("echoed") && !got.contains("motd"));
        let empty = capture(None, None, &[], 1024);
        assert_eq!(empty, r#"{"arguments":{},"result":null}"#);
    }

    #[test]
    fn a_capture_over_the_bound_is_cut_on_a_character_boundary() {
        let mut args = Map::new();
        args.insert("text".into(), json!("é".repeat(100)));
        let whole = capture(Some(&args), None, &[], usize::MAX);
        assert!(whole.len() > 64);
        for max in 60..=64 {
            let cut = capture(Some(&args), None, &[], max);
            assert!(cut.len() <= max && cut.len() >= max - 1, "{max}: {} bytes", cut.len());
            assert!(whole.starts_with(&cut));
            assert!(serde_json::from_str::<Value>(&cut).is_err(), "a cut capture does not parse");
        }
        assert_eq!(capture(Some(&args), None, &[], whole.len()), whole, "at the bound exactly: whole");
    }
}
