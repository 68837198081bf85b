//! How an upstream's tools, resources and prompts are named to clients: `server__tool`.
//!
//! A server's name may not contain the separator, so the first separator in a name is
//! always the boundary: the tool part may contain it (`fs__read__v2` is tool `read__v2` of
//! server `fs`), and no two (server, tool) pairs can ever share a name.

/// Between the server's and the tool's name, unless configured otherwise.
pub const DEFAULT_SEPARATOR: &str = "__";

/// The longest server name (names travel in every tool name a client sees).
pub const MAX_SERVER_NAME: usize = 64;

/// Why a server name or separator is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName(pub String);

impl std::fmt::Display for InvalidName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A separator: 1 to 4 characters of `_`, `-`, `.`, `:` or `/` (what MCP clients accept in
/// tool names, and never a letter or digit a name could end with).
pub fn check_separator(sep: &str) -> Result<(), InvalidName> {
    if sep.is_empty() || sep.len() > 4 || !sep.chars().all(|c| matches!(c, '_' | '-' | '.' | ':' | '/')) {
        return Err(InvalidName(format!("the separator {sep:?} must be 1 to 4 of _ - . : /")));
    }
    Ok(())
}

/// A server name: 1 to 64 of `a-z`, `0-9`, `_`, `-` and `.`, starting with a letter or
/// digit, not containing `sep`, and not ending with the separator's first character (else
/// `a_` + `__` + `b` would read as server `a`).
pub fn check_server_name(name: &str, sep: &str) -> Result<(), InvalidName> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.');
    let invalid = |why: &str| Err(InvalidName(format!("the server name {name:?} {why}")));
    if name.is_empty() || name.len() > MAX_SERVER_NAME {
        return invalid("must be 1 to 64 characters");
    }
    if !name.chars().all(allowed) {
        return invalid("may hold only a-z, 0-9, _, - and .");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("must start with a letter or a digit");
    }
    if name.contains(sep) {
        return invalid(&format!("may not contain the separator {sep:?}"));
    }
    if sep.chars().next().is_some_and(|c| name.ends_with(c)) {
        return invalid(&format!("may not end with {:?}, the separator's first character", &sep[..1]));
    }
    Ok(())
}

/// The name a client sees for `tool` of `server`.
pub fn join(server: &str, tool: &str, sep: &str) -> String {
    let mut name = String::with_capacity(server.len() + sep.len() + tool.len());
    name.push_str(server);
    name.push_str(sep);
    name.push_str(tool);
    name
}

/// The server and the upstream's own name of a name a client sent; `None` when it has no
/// separator or an empty part.
pub fn split<'a>(name: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let (server, tool) = name.split_once(sep)?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_checked_by_rule() {
        let sep = DEFAULT_SEPARATOR;
        for ok in ["fs", "github-prod", "a.b_c", "9lives"] {
            check_server_name(ok, sep).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("", "1 to 64"),
            ("Fs", "only"),
            ("a__b", "separator"),
            ("a_", "end with"),
            ("-a", "start with"),
            ("sp ace", "only"),
        ] {
            let err = check_server_name(bad, sep).expect_err(bad).0;
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(check_server_name(&"a".repeat(65), sep).is_err());
        assert!(check_separator("__").is_ok() && check_separator("-").is_ok());
        assert!(check_separator("").is_err() && check_separator("x").is_err() && check_separator("_____").is_err());
    }

    #[test]
    fn the_first_separator_is_the_boundary() {
        assert_eq!(split("fs__read__v2", "__"), Some(("fs", "read__v2")));
        assert_eq!(split("fs__", "__"), None);
        assert_eq!(split("__x", "__"), None);
        assert_eq!(split("plain", "__"), None);
    }

    fn server() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9._-]{0,12}[a-z0-9.-]?".prop_filter("valid", |s| check_server_name(s, "__").is_ok())
    }

    proptest! {
        /// Any valid server and any tool name come back apart as they went in, so two
        /// different pairs can never collide in one name.
        #[test]
        fn join_then_split_is_the_identity(server in server(), tool in "[ -~]{1,40}") {
            let name = join(&server, &tool, "__");
            prop_assert_eq!(split(&name, "__"), Some((server.as_str(), tool.as_str())));
        }

        #[test]
        fn different_pairs_never_share_a_name(a in server(), b in server(), x in "[a-z_]{1,8}", y in "[a-z_]{1,8}") {
            prop_assume!((&a, &x) != (&b, &y));
            prop_assert_ne!(join(&a, &x, "__"), join(&b, &y, "__"));
        }
    }
}
