//! One list over many servers: the servers the caller holds a grant on are asked
//! concurrently (each within its own deadline, answered from the cache when fresh), and
//! each item is kept only if [`decide`] allows it, the rule calls obey too.
//!
//! A server that is down or too slow is left out and named in the result's `_meta`
//! (`io.obleth/unavailable`); the list still answers.

use std::sync::Arc;

use futures_util::future::join_all;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::McpCaller;
use crate::grants::{Decision, GrantIndex, Item, Pin, Who, decide};
use crate::hub::{Hub, Listing, Server};
use crate::names;

/// What one aggregated list found.
pub struct Aggregate<T> {
    pub items: Vec<T>,
    /// Granted servers that did not answer in time.
    pub unavailable: Vec<String>,
}

/// The listings of every enabled server `caller` holds a grant on, asked concurrently.
async fn listings(
    hub: &Hub,
    grants: &GrantIndex,
    caller: &McpCaller,
) -> (Vec<(Arc<Server>, Arc<Listing>)>, Vec<String>) {
    let who = caller.who();
    let asked: Vec<Arc<Server>> =
        hub.servers().into_iter().filter(|s| s.config.enabled && grants.touches(who, s.name())).collect();
    let answers = join_all(asked.iter().map(|s| hub.listing(s))).await;
    let mut found = Vec::new();
    let mut unavailable = Vec::new();
    for (server, answer) in asked.into_iter().zip(answers) {
        match answer {
            Ok(listing) => found.push((server, listing)),
            Err(e) => {
                tracing::info!(server = %server.name(), error = %e, "an MCP server was left out of a listing");
                crate::telemetry::list_partial(server.name());
                unavailable.push(server.name().to_owned());
            }
        }
    }
    (found, unavailable)
}

fn allowed(grants: &GrantIndex, who: Who<'_>, server: &Server, item: Item<'_>, pin: Pin) -> bool {
    decide(Some(grants), who, server.name(), server.config.enabled, item, pin) == Decision::Allow
}

/// The caller's tools, named `server__tool`.
pub async fn tools(hub: &Hub, grants: &GrantIndex, caller: &McpCaller) -> Aggregate<Tool> {
    let (found, unavailable) = listings(hub, grants, caller).await;
    let sep = &hub.config.separator;
    let mut items = Vec::new();
    for (server, listing) in &found {
        for (tool, hash) in &listing.tools {
            let pin = hub.pin_status(server.name(), &tool.name, hash);
            if allowed(grants, caller.who(), server, Item::Tool(&tool.name), pin) {
                let mut exposed = tool.clone();
                exposed.name = names::join(server.name(), &tool.name, sep).into();
                items.push(exposed);
            }
        }
    }
    Aggregate { items, unavailable }
}

/// The caller's prompts, named `server__prompt`.
pub async fn prompts(hub: &Hub, grants: &GrantIndex, caller: &McpCaller) -> Aggregate<Prompt> {
    let (found, unavailable) = listings(hub, grants, caller).await;
    let sep = &hub.config.separator;
    let mut items = Vec::new();
    for (server, listing) in &found {
        if allowed(grants, caller.who(), server, Item::Prompt, Pin::Approved) {
            items.extend(listing.prompts.iter().map(|p| {
                let mut exposed = p.clone();
                exposed.name = names::join(server.name(), &p.name, sep);
                exposed
            }));
        }
    }
    Aggregate { items, unavailable }
}

/// The caller's resources and resource templates, with their upstream URIs.
pub async fn resources(
    hub: &Hub,
    grants: &GrantIndex,
    caller: &McpCaller,
) -> (Aggregate<Resource>, Vec<ResourceTemplate>) {
    let (found, unavailable) = listings(hub, grants, caller).await;
    let mut items = Vec::new();
    let mut templates = Vec::new();
    for (server, listing) in &found {
        if allowed(grants, caller.who(), server, Item::Resource, Pin::Approved) {
            items.extend(listing.resources.iter().cloned());
            templates.extend(listing.templates.iter().cloned());
        }
    }
    (Aggregate { items, unavailable }, templates)
}

/// The server whose listing holds resource `uri` among those the caller may read; the
/// first by name when several do.
pub async fn resource_owner(hub: &Hub, grants: &GrantIndex, caller: &McpCaller, uri: &str) -> Option<Arc<Server>> {
    let (found, _) = listings(hub, grants, caller).await;
    found.into_iter().find_map(|(server, listing)| {
        let listed = listing.resources.iter().any(|r| r.uri == uri)
            || listing.templates.iter().any(|t| template_prefix(&t.uri_template).is_some_and(|p| uri.starts_with(p)));
        (listed && allowed(grants, caller.who(), &server, Item::Resource, Pin::Approved)).then_some(server)
    })
}

/// The literal start of a URI template (`file:///{path}` → `file:///`), if not empty.
fn template_prefix(template: &str) -> Option<&str> {
    let prefix = template.split('{').next().unwrap_or_default();
    (!prefix.is_empty()).then_some(prefix)
}
