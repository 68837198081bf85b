//! The operator console's built assets, embedded at compile time from `console/dist`
//! (committed, so that a build needs no npm). The admin API serves them under `/ui/`.

include!(concat!(env!("OUT_DIR"), "/files.rs"));

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    /// Vite names these by their content hash: they never change under one name.
    pub immutable: bool,
}

/// The file at `path` (relative to `/ui/`), if the build has one.
pub fn asset(path: &str) -> Option<Asset> {
    let (_, bytes) = FILES.iter().find(|(p, _)| *p == path)?;
    Some(Asset { bytes, content_type: content_type(path), immutable: path.starts_with("assets/") })
}

/// The page every console route loads.
pub fn index() -> Option<Asset> {
    asset("index.html")
}

/// Whether the console was built into this binary.
pub fn is_built() -> bool {
    index().is_some()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type("assets/index-abc.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }

    #[test]
    fn every_embedded_path_is_relative_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (path, _) in FILES {
            assert!(!path.starts_with('/') && !path.contains(".."), "{path}");
            assert!(seen.insert(*path), "{path} twice");
        }
    }
}
