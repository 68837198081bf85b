//! A `redis-server` of the test's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util;

const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` of the test's own on a free loopback port, persisted to an
/// append-only file with `appendfsync always`, in a temporary directory.
///
/// Why its own: the tests that kill Redis mid-run must not take away the Redis at 6379
/// that the other tests share. Why AOF with fsync on every write: a production Redis
/// holding budgets runs with AOF, so a kill loses nothing that was acknowledged; with it
/// here, a [`kill`](Self::kill) and [`restart`](Self::restart) show exactly what obleth
/// does about an outage, not what a lossy Redis forgot. The directory (and so the data)
/// lives as long as the handle; the process is killed when the handle is dropped.
pub struct OwnRedis {
    binary: PathBuf,
    port: u16,
    /// The TLS port and the certificates, for [`OwnRedis::start_tls`].
    tls: Option<(u16, crate::TestCa)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts a fresh, empty Redis and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` is not installed or does not answer within 10 s.
    pub fn start() -> OwnRedis {
        let binary =
            util::find_binary("redis-server").expect("redis-server is not installed (apt-get install redis-server)");
        let [port] = util::free_ports::<1>();
        let dir = tempfile::Builder::new().prefix("obleth-redis-").tempdir().unwrap();
        let mut r = OwnRedis { binary, port, tls: None, dir, child: None };
        r.launch();
        r
    }

    /// Like [`OwnRedis::start`], and also serving TLS on a second port
    /// ([`OwnRedis::tls_url`]) with a certificate for `localhost` signed by
    /// [`OwnRedis::ca`], requiring clients to present a certificate that CA signed
    /// (`tls-auth-clients yes`). The plain port stays, for the test's own checks.
    pub fn start_tls() -> OwnRedis {
        let binary =
            util::find_binary("redis-server").expect("redis-server is not installed (apt-get install redis-server)");
        let [port, tls_port] = util::free_ports::<2>();
        let dir = tempfile::Builder::new().prefix("obleth-redis-").tempdir().unwrap();
        let certs = dir.path().join("tls");
        std::fs::create_dir(&certs).unwrap();
        let ca = crate::TestCa::create(&certs);
        let mut r = OwnRedis { binary, port, tls: Some((tls_port, ca)), dir, child: None };
        r.launch();
        r
    }

    /// `rediss://localhost:TLS_PORT`, for a Redis started with [`OwnRedis::start_tls`].
    pub fn tls_url(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://localhost:{port}")
    }

    /// The certificates of a Redis started with [`OwnRedis::start_tls`].
    pub fn ca(&self) -> &crate::TestCa {
        &self.tls.as_ref().expect("started with start_tls").1
    }

    /// `redis://127.0.0.1:PORT`; the same across restarts.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the append-only file and `redis.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        util::is_running(&mut self.child)
    }

    /// SIGKILL, and wait until the process is gone. The data is kept. Does nothing if
    /// not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            util::kill(&mut c);
        }
    }

    /// Starts Redis again on the same port with the same directory, so it replays its
    /// append-only file, and waits until it answers `PING` (not merely accepts: a Redis
    /// still loading answers `-LOADING`). A Redis still running is killed first.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let mut command = Command::new(&self.binary);
        if let Some((port, ca)) = &self.tls {
            command.args(["--tls-port", &port.to_string(), "--tls-auth-clients", "yes"]);
            command.arg("--tls-cert-file").arg(ca.server_cert()).arg("--tls-key-file").arg(ca.server_key());
            command.arg("--tls-ca-cert-file").arg(ca.ca_cert());
        }
        let child = command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        while !self.pong() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("redis-server exited before it was ready ({status})\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("redis-server did not answer PING within {READY_DEADLINE:?}\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pong(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn log_tail(&self) -> String {
        util::tail(&self.dir.path().join("redis.log"), 30)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
