//! A `clickhouse-server` of the test's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util;

/// How long a start or restart may take before the test fails. 18.16 is ready in 1–3 s
/// on an idle machine, but a restart after a kill first loads every part from disk, and a
/// 2-core machine running a parallel test suite can be slow.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long [`OwnClickHouse::stop`] waits after SIGTERM before it kills.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long one [`OwnClickHouse::query`] may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `clickhouse-server` of the test's own, on free loopback ports, with its data in a
/// temporary directory.
///
/// Why not the machine's server (or one at the standard 8123): a test that kills its
/// ClickHouse to see what obleth does about it would take it away from every other test
/// running at the same time. Own ports mean any number of these run side by side.
///
/// Why the data survives [`kill`](Self::kill) and [`stop`](Self::stop): the directory
/// belongs to this handle, not to the process, so [`restart`](Self::restart) brings the
/// same server back on the same ports with what it had written, as a production server
/// does after a crash. A test can then ask whether what obleth had been told was stored
/// really was, and whether a replay was collapsed. The directory is removed when the
/// handle is dropped; the process is killed then too.
///
/// Works with Debian's `clickhouse-server` 18.16 (what CI installs) and current releases:
/// the configuration is the `<yandex>` form both read, and only the HTTP interface is used.
pub struct OwnClickHouse {
    binary: PathBuf,
    http_port: u16,
    tcp_port: u16,
    /// The HTTPS port and its certificates, for [`OwnClickHouse::start_https`].
    https: Option<(u16, crate::TestCa)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnClickHouse {
    /// Starts a fresh, empty server and waits until it answers queries.
    ///
    /// # Panics
    /// If `clickhouse-server` is not installed, or the server is not ready within 60 s
    /// (the message then carries the tail of its error log).
    pub fn start() -> OwnClickHouse {
        OwnClickHouse::create(false)
    }

    /// Like [`OwnClickHouse::start`], and also serving HTTPS on a second port
    /// ([`OwnClickHouse::https_url`]) with a certificate for `localhost` signed by
    /// [`OwnClickHouse::ca`].
    pub fn start_https() -> OwnClickHouse {
        OwnClickHouse::create(true)
    }

    fn create(https: bool) -> OwnClickHouse {
        let binary = util::find_binary("clickhouse-server")
            .expect("clickhouse-server is not installed (apt-get install clickhouse-server)");
        let [http_port, tcp_port, https_port] = util::free_ports::<3>();
        let dir = tempfile::Builder::new().prefix("obleth-clickhouse-").tempdir().unwrap();
        let https = https.then(|| {
            let certs = dir.path().join("tls");
            std::fs::create_dir(&certs).unwrap();
            (https_port, crate::TestCa::create(&certs))
        });
        let tls = match &https {
            None => String::new(),
            Some((port, ca)) => format!(
                r#"<https_port>{port}</https_port>
    <openSSL>
        <server>
            <certificateFile>{}</certificateFile>
            <privateKeyFile>{}</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <disableProtocols>sslv2,sslv3</disableProtocols>
        </server>
    </openSSL>"#,
                ca.server_cert().display(),
                ca.server_key().display()
            ),
        };
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let d = dir.path().display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/log/server.log</log>
        <errorlog>{d}/log/err.log</errorlog>
        <console>0</console>
    </logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    {tls}
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <mark_cache_size>5368709</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
</yandex>
"#
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
"#;
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        let mut ch = OwnClickHouse { binary, http_port, tcp_port, https, dir, child: None };
        ch.launch();
        ch
    }

    /// The base URL of its HTTP interface, e.g. `http://127.0.0.1:40123`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `https://localhost:PORT`, for a server started with [`OwnClickHouse::start_https`].
    pub fn https_url(&self) -> String {
        let (port, _) = self.https.as_ref().expect("started with start_https");
        format!("https://localhost:{port}")
    }

    /// The certificates of a server started with [`OwnClickHouse::start_https`].
    pub fn ca(&self) -> &crate::TestCa {
        &self.https.as_ref().expect("started with start_https").1
    }

    /// The HTTP port; it stays the same across restarts.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The native-protocol port (for `clickhouse-client --port`); same across restarts.
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// The directory holding the configuration, `data/` and `log/` (`err.log`,
    /// `server.log`, and `stderr.log` for what the process printed before logging began).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is alive (it may still be starting or shutting down).
    pub fn is_running(&mut self) -> bool {
        util::is_running(&mut self.child)
    }

    /// SIGKILL, as a crash or an OOM kill would: no flush, no clean shutdown. Returns
    /// once the process is gone. The data directory is kept. Does nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            util::kill(&mut c);
        }
    }

    /// A graceful shutdown: SIGTERM, then up to 10 s for the server to exit on its own,
    /// SIGKILL after that. True when it exited on its own. The data directory is kept.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => util::terminate(&mut c, STOP_GRACE),
            None => true,
        }
    }

    /// Starts the server again on the same ports with the same data directory and waits
    /// until it answers (up to 60 s). A server still running is stopped first.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs `sql` (sent as the POST body, so an `INSERT ... FORMAT ...` may carry its
    /// data after the statement) and returns the response body.
    ///
    /// # Panics
    /// If the server cannot be reached or answers anything but 200 (the message carries
    /// the status and the body, i.e. ClickHouse's exception text).
    pub fn query(&self, sql: &str) -> String {
        match http(self.http_port, "POST", "/", sql.as_bytes(), QUERY_TIMEOUT) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("ClickHouse answered {status} to {sql:?}: {body}"),
            Err(e) => panic!("ClickHouse at {} could not be queried ({sql:?}): {e}", self.http_url()),
        }
    }

    /// Spawns the process and waits until `SELECT 1` answers `1`.
    fn launch(&mut self) {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(self.log("stderr.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg(format!("--config-file={}", self.dir.path().join("config.xml").display()))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let probe = http(self.http_port, "GET", "/?query=SELECT%201", b"", Duration::from_secs(2));
            if matches!(&probe, Ok((200, body)) if body.trim() == "1") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("clickhouse-server exited before it was ready ({status})\n{}", self.logs());
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "clickhouse-server was not ready on {} within {READY_DEADLINE:?} (last probe: {probe:?})\n{}",
                    self.http_url(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("log").join(name)
    }

    fn logs(&self) -> String {
        format!("{}\n{}", util::tail(&self.log("err.log"), 30), util::tail(&self.log("stderr.log"), 30))
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.0 exchange with the server on 127.0.0.1:`port`: the status and the body
/// (de-chunked if the server chunked it). HTTP/1.0 with `Connection: close` keeps this
/// to "write the request, read to the end"; it is all a test harness needs.
fn http(port: u16, method: &str, target: &str, body: &[u8], timeout: Duration) -> std::io::Result<(u16, String)> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;

    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let payload = &response[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked { dechunk(payload).ok_or_else(|| invalid("bad chunked body"))? } else { payload.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Decodes a `Transfer-Encoding: chunked` body (extensions and trailers ignored).
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert_eq!(dechunk(b"0\r\n\r\n").unwrap(), b"");
        assert!(dechunk(b"5\r\nab").is_none());
    }
}
