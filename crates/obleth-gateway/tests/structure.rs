//! The request path's shape, checked on its source: ARCHITECTURE.md promises these, and
//! a change that breaks one fails here rather than in review.
//!
//! - `forward` reads as the lifecycle line: at most 50 lines; no request-path function
//!   is longer than 60;
//! - a request is settled in one place: `.settle(` has one call site (the charge's drop);
//! - a request body is parsed once, by its codec: every other JSON parse in the crate is
//!   of something else (an upstream answer, an event), listed here by file;
//! - the crate's modules import each other in no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the crate with its module name (`codec/json.rs` is `codec`:
/// a folder module counts as one), tests excluded.
fn modules() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src()).expect("under src").to_string_lossy().into_owned();
            if !rel.ends_with(".rs") || rel.ends_with("_tests.rs") {
                continue;
            }
            let module = rel.split(['/', '.']).next().unwrap_or_default().to_owned();
            let text = std::fs::read_to_string(&path).expect("readable");
            // Unit tests at the end of a file are not the request path.
            let code = text.split("\n#[cfg(test)]").next().unwrap_or_default().to_owned();
            out.push((rel, module, code));
        }
    }
    out.sort();
    out
}

/// `(name, first line, length in lines)` of every `fn` of a file, by brace indentation.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(rest) = ["pub(crate) async fn ", "pub async fn ", "async fn ", "pub(crate) fn ", "pub fn ", "fn "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p))
        else {
            continue;
        };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if line.trim_end().ends_with(';') || line.trim_end().ends_with('}') {
            out.push((name, i + 1, 1));
            continue;
        }
        let close = format!("{indent}}}");
        let end = lines[i..].iter().position(|l| *l == close).map_or(lines.len() - i, |n| n + 1);
        out.push((name, i + 1, end));
    }
    out
}

#[test]
fn function_lengths_are_measured_to_the_closing_brace() {
    let body = "    let x = 1;\n".repeat(59);
    let code = format!(
        "fn short() {{}}\nasync fn long(\n    a: u8,\n) -> u8 {{\n{body}}}\nimpl X {{\n    pub fn m(&self) {{\n        1\n    }}\n}}\n"
    );
    let found = functions(&code);
    let len = |name: &str| found.iter().find(|(n, _, _)| n == name).map(|f| f.2);
    assert_eq!(len("short"), Some(1));
    assert_eq!(len("long"), Some(63), "signature, 59 lines of body and the brace");
    assert_eq!(len("m"), Some(3));
}

#[test]
fn forward_is_short_and_so_is_every_request_path_function() {
    let mut too_long = Vec::new();
    for (file, module, code) in modules() {
        // The OpenAPI document is data, not the request path.
        for (name, line, len) in functions(&code) {
            let limit = if name == "forward" { 50 } else { 60 };
            if len > limit && !(module == "lib" && name == "openapi") {
                too_long.push(format!("{file}:{line} {name} has {len} lines (at most {limit})"));
            }
        }
    }
    let forward = modules().iter().any(|(f, _, c)| f == "pipeline.rs" && c.contains("async fn forward("));
    assert!(forward, "pipeline.rs defines forward");
    assert!(too_long.is_empty(), "{}", too_long.join("\n"));
}

#[test]
fn a_request_is_settled_in_one_place() {
    let mut sites = Vec::new();
    for (file, _, code) in modules() {
        for (i, line) in code.lines().enumerate() {
            if line.contains(".settle(") && !line.trim_start().starts_with("//") {
                sites.push(format!("{file}:{}", i + 1));
            }
        }
    }
    // The charge's drop settles the slot and the reservation: two calls, one place.
    assert!(sites.iter().all(|s| s.starts_with("charge.rs:")), "settled outside the charge: {sites:?}");
    let charge = modules().into_iter().find(|(f, _, _)| f == "charge.rs").expect("charge.rs").2;
    let drop = charge.split("impl Drop for Charge").nth(1).expect("the charge settles on drop");
    assert_eq!(drop.matches(".settle(").count(), sites.len(), "every settle is in the charge's drop");
    assert_eq!(sites.len(), 2, "the slot and the reservation, once each: {sites:?}");
}

#[test]
fn request_bodies_are_parsed_by_their_codec_only() {
    // Everything else the crate parses, by file: a new parse site must be added here
    // knowingly (it must not be a second parse of the request).
    let expected: BTreeMap<&str, usize> = BTreeMap::from([
        ("codec/json.rs", 2), // the request (once), and an answer's choices (no usage reported)
        ("proxy.rs", 1),      // an upstream error's message
        ("identity.rs", 1),   // a shared cache entry (a key or a tenant)
        ("usage.rs", 1),      // a whole answer's usage
        ("sse.rs", 2),        // a stream event's usage, an upstream error event
    ]);
    let mut found = BTreeMap::new();
    for (file, _, code) in modules() {
        let n = code.matches("serde_json::from_slice").count() + code.matches("serde_json::from_str").count();
        if n > 0 {
            found.insert(file, n);
        }
    }
    let found: BTreeMap<&str, usize> = found.iter().map(|(f, n)| (f.as_str(), *n)).collect();
    assert_eq!(found, expected);
}

#[test]
fn modules_import_each_other_in_no_cycle() {
    let mods = modules();
    let names: BTreeSet<String> = mods.iter().map(|(_, m, _)| m.clone()).filter(|m| m != "lib").collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, code) in &mods {
        if module == "lib" {
            continue; // the crate root declares every module
        }
        // Imports and paths in code; doc links and comments are not dependencies.
        let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for other in &names {
            let uses = code.contains(&format!("crate::{other}::"))
                || code.contains(&format!("crate::{other};"))
                || code.contains(&format!("crate::{{{other}"))
                || code
                    .lines()
                    .filter(|l| l.starts_with("use crate::{"))
                    .any(|l| l.split(['{', '}', ',', ' ']).any(|w| w == other));
            if other != module && uses {
                edges.entry(module.clone()).or_default().insert(other.clone());
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in &names {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("modules import each other in a cycle: {}", cycle.join(" -> "));
        }
    }
    let error = edges.get("error").cloned().unwrap_or_default();
    assert!(!error.contains("limits"), "error.rs names limits");
}
