//! Shared plumbing: finding binaries, free ports, stopping children, log tails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The path of `name` on `PATH`, or in the `sbin` directories a non-root user's `PATH`
/// usually lacks (Debian installs `clickhouse-server` in `/usr/sbin`).
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `n` distinct ports that were free on 127.0.0.1 a moment ago. All listeners are held
/// until every port is picked, so the ports differ from each other; another process
/// could still take one before the server binds it, which on a test machine is rare.
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<_> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Whether the handle's process is alive; forgets one that has exited.
pub(crate) fn is_running(child: &mut Option<Child>) -> bool {
    match child.as_mut().map(Child::try_wait) {
        Some(Ok(None)) => true,
        Some(_) => {
            *child = None;
            false
        }
        None => false,
    }
}

/// SIGKILL and reap.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM (through `kill(1)`, to stay free of `libc` and `unsafe`), then wait up to
/// `grace` for the child to exit on its own; SIGKILL after that. True when it exited
/// on its own within the grace period.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().is_ok_and(|s| s.success());
    if sent {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    kill(child);
    false
}

/// The last `lines` lines of a log file, for a panic message; says so when it is missing.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            format!("--- tail of {}:\n{tail}", path.display())
        }
        Err(e) => format!("--- {}: {e}", path.display()),
    }
}
