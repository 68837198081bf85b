//! Upstream error messages made fit to relay: to a client, or into the usage ledger,
//! which tenants and operators read. Shared by the data plane and the MCP gateway.

use std::net::{IpAddr, SocketAddr};

/// The most of an upstream's error message relayed to a client.
pub const MAX_RELAYED_MESSAGE: usize = 512;

/// An upstream's error message fit to relay to a client: URLs and network addresses
/// (`http://…`, `10.1.2.3:8000`, `[fd00::1]:8000`, `vllm-0.vllm:8000`) replaced, since
/// they name the gateway's internal network, and at most [`MAX_RELAYED_MESSAGE`]
/// characters, cut on a character boundary.
pub fn relayable_message(message: &str) -> String {
    let scrubbed = scrub_addresses(&scrub_urls(message));
    let mut out: String = scrubbed.chars().take(MAX_RELAYED_MESSAGE).collect();
    if out.len() < scrubbed.len() {
        out.push('…');
    }
    out
}

/// Replaces every `scheme://…` with `[url]`.
fn scrub_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` just before `://`.
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(i, |(j, _)| j);
        let after = &rest[i + 3..];
        if scheme_start == i {
            out.push_str(&rest[..i + 3]);
            rest = after;
            continue;
        }
        let end =
            after.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')).unwrap_or(after.len());
        // Sentence punctuation after a URL is not part of it.
        let url_len = after[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']).len();
        out.push_str(&rest[..scheme_start]);
        out.push_str("[url]");
        rest = &after[url_len..];
    }
    out.push_str(rest);
    out
}

/// Replaces IP addresses (with an optional port), bracketed IPv6 and `host:port` with `[address]`.
fn scrub_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let (core, trail) = split_trailing_punctuation(word);
        out.push_str(if is_address(core) { "[address]" } else { core });
        out.push_str(trail);
        word.clear();
    };
    for c in s.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '(' | ')' | ',' | '<' | '>' | '`' | '=') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn split_trailing_punctuation(word: &str) -> (&str, &str) {
    let core = word.trim_end_matches(['.', ';', '!', '?']);
    let core = if core.ends_with(':') && !core.ends_with("::") { &core[..core.len() - 1] } else { core };
    (core, &word[core.len()..])
}

/// An IP address, `[IPv6]`, or `host:port` with a numeric port (1-65535).
fn is_address(w: &str) -> bool {
    if w.parse::<IpAddr>().is_ok() || w.parse::<SocketAddr>().is_ok() {
        return true;
    }
    if let Some(inner) = w.strip_prefix('[').and_then(|r| r.split(']').next()) {
        return inner.parse::<IpAddr>().is_ok();
    }
    match w.rsplit_once(':') {
        Some((host, port)) => {
            let Ok(port) = port.parse::<u16>() else { return false };
            let host_ok = host.chars().any(|c| c.is_ascii_alphabetic())
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            // `status:404` is not an address; `vllm:8000` and `db.internal:80` are.
            let address_like = host.contains('.') || host == "localhost" || port >= 1024;
            port > 0 && host_ok && address_like
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_messages_name_no_internal_address() {
        for (upstream, expected) in [
            (
                "The model `m` does not exist at http://10.0.3.7:8000/v1/models.",
                "The model `m` does not exist at [url].",
            ),
            ("proxy https://admin.internal:9090/api/v1/tenants?x=1 refused", "proxy [url] refused"),
            ("connect to 10.1.2.3:8000 failed (vllm-0.vllm.svc:8000)", "connect to [address] failed ([address])"),
            ("peer [fd00::17]:8000 reset; also fd00::17", "peer [address] reset; also [address]"),
            ("backend vllm:8000 is down", "backend [address] is down"),
            ("status:404, max_tokens=4097 is too large", "status:404, max_tokens=4097 is too large"),
            (
                "This model's maximum context length is 8192 tokens.",
                "This model's maximum context length is 8192 tokens.",
            ),
            ("ratio 1.5 and time 12:30", "ratio 1.5 and time 12:30"),
        ] {
            assert_eq!(relayable_message(upstream), expected, "{upstream}");
        }
        let long = "é".repeat(2000);
        let bounded = relayable_message(&long);
        assert_eq!(bounded.chars().count(), MAX_RELAYED_MESSAGE + 1, "cut on a character boundary, with an ellipsis");
        assert!(bounded.ends_with('…'));
    }
}
