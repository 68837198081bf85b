//! CSV exports of the usage queries (`format=csv`).
//!
//! Columns are the JSON answer's fields, in its (alphabetical) order; nested objects are
//! written as JSON. Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`
//! first) is prefixed with `'`: a model or key name must not become a formula in the
//! operator's spreadsheet.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// `rows` as a CSV download named `filename`.
pub(crate) fn attachment<T: Serialize>(filename: &str, rows: &[T]) -> Response {
    let mut response = to_csv(rows).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

pub(crate) fn to_csv<T: Serialize>(rows: &[T]) -> String {
    let rows: Vec<Value> = rows.iter().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)).collect();
    let mut columns: Vec<&str> = Vec::new();
    for row in &rows {
        for k in row.as_object().into_iter().flat_map(|o| o.keys()) {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let mut out = columns.join(",");
    out.push_str("\r\n");
    for row in &rows {
        let cells: Vec<String> = columns.iter().map(|c| cell(row.get(*c).unwrap_or(&Value::Null))).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => return String::new(),
        Value::Bool(b) => return b.to_string(),
        Value::Number(n) => return n.to_string(),
        Value::String(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_become_quoted_csv_without_formulas() {
        let rows = vec![
            json!({"model": "m,1", "requests": 3, "cost": 0.5, "note": null}),
            json!({"model": "=HYPERLINK(\"x\")", "requests": 1, "cost": 0.0, "extra": {"a": 1}}),
        ];
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], "cost,model,note,requests,extra");
        assert_eq!(lines[1], "0.5,\"m,1\",,3,");
        assert_eq!(lines[2], "0.0,\"'=HYPERLINK(\"\"x\"\")\",,1,\"{\"\"a\"\":1}\"");
        assert_eq!(to_csv::<Value>(&[]), "\r\n");
    }
}
