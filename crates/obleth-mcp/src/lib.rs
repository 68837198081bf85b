//! The MCP gateway (issue 15), its pure rules first: how upstream tools are named to
//! clients ([`names`]), who may list and call what ([`grants`]: deny by default, one
//! decision for both), and how a tool whose definition changed is caught ([`pin`]).
//!
//! No I/O and no clock here; the `/mcp` endpoint, the upstream connections and the
//! scheduling of tool calls build on these (`docs/design/mcp-gateway.md` is the plan; the
//! endpoint is not built yet).

pub mod grants;
pub mod names;
pub mod pin;
