//! Every metric of the MCP gateway.

use std::time::Duration;

/// A granted server left out of a listing (down or too slow).
pub fn list_partial(server: &str) {
    metrics::counter!("obleth_mcp_list_partial_total", "server" => server.to_owned()).increment(1);
}

/// The histograms (their buckets are set where the recorder is installed).
pub const HISTOGRAMS: &[&str] = &["obleth_mcp_tool_call_duration_seconds"];

/// One tool call's outcome (`ok`, `tool_error`, `unknown_tool`, `queue_full`, …) and how
/// long it took. `tool` is the upstream's own name, only for tools the server lists (so
/// the label's values are bounded by its catalog); a refused name is not a label.
pub fn tool_call(server: &str, tool: &str, outcome: &'static str, took: Duration) {
    metrics::counter!("obleth_mcp_tool_calls_total", "server" => server.to_owned(), "tool" => tool.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("obleth_mcp_tool_call_duration_seconds", "server" => server.to_owned(), "tool" => tool.to_owned())
        .record(took.as_secs_f64());
}

/// A call refused before it reached a server (an unknown, ungranted or quarantined
/// tool): no server or tool label, as the name came from the client.
pub fn tool_call_refused(outcome: &'static str) {
    metrics::counter!("obleth_mcp_tool_calls_refused_total", "outcome" => outcome).increment(1);
}

/// The gauges of each server, refreshed at every scrape.
pub fn publish(servers: &[crate::ServerStatus]) {
    for s in servers {
        let name = || s.name.clone();
        metrics::gauge!("obleth_mcp_upstream_up", "server" => name()).set(f64::from(u8::from(s.health.up)));
        metrics::gauge!("obleth_mcp_tool_calls_in_flight", "server" => name()).set(f64::from(s.in_flight));
        metrics::gauge!("obleth_mcp_tool_calls_queued", "server" => name()).set(s.queued as f64);
        metrics::gauge!("obleth_mcp_tools_pending_approval", "server" => name()).set(s.pending_approval as f64);
    }
}

/// A tool's definition moved away from its pin (quarantined) or back.
pub fn quarantined(server: &str) {
    metrics::counter!("obleth_mcp_tools_quarantined_total", "server" => server.to_owned()).increment(1);
}

/// A request with a session id that is unknown, expired or another key's (all answered
/// 404 alike; one label, as the check cannot tell them apart).
pub fn session_rejected() {
    metrics::counter!("obleth_mcp_session_rejected_total").increment(1);
}

/// The sessions bound now (set at each scrape).
pub fn sessions(count: u64) {
    metrics::gauge!("obleth_mcp_sessions").set(count as f64);
}

/// The per-tenant families of each server's fair queue, rendered from this scrape's
/// status (not registered: a tenant that leaves the queue leaves the text), at most
/// `tenants` per server (the busiest first).
pub fn render(servers: &[crate::ServerStatus], tenants: usize, out: &mut String) {
    use std::fmt::Write;
    let families: [(&str, &str); 3] = [
        ("obleth_mcp_tenant_in_flight", "Tool calls of a tenant running on an MCP server"),
        ("obleth_mcp_tenant_queued", "Tool calls of a tenant waiting in an MCP server's fair queue"),
        ("obleth_mcp_tenant_share", "A tenant's share of an MCP server's call time: target (entitled) and actual"),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for server in servers {
            let mut busiest: Vec<&crate::hub::TenantQueue> = server.tenants.iter().collect();
            busiest.sort_by(|a, b| {
                (b.in_flight as usize + b.queued)
                    .cmp(&(a.in_flight as usize + a.queued))
                    .then(b.actual_share.total_cmp(&a.actual_share))
            });
            for t in busiest.into_iter().take(tenants) {
                let labels = format!("server=\"{}\",tenant=\"{}\"", server.name, t.tenant);
                let _ = match i {
                    0 => writeln!(out, "{name}{{{labels}}} {}", t.in_flight),
                    1 => writeln!(out, "{name}{{{labels}}} {}", t.queued),
                    _ => writeln!(
                        out,
                        "{name}{{{labels},kind=\"target\"}} {}\n{name}{{{labels},kind=\"actual\"}} {}",
                        t.target_share, t.actual_share
                    ),
                };
            }
        }
    }
}
