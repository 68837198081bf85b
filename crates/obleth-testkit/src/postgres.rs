//! A PostgreSQL server of the test's own, for tests that stop it.
//!
//! `initdb` refuses to run as root, so when the tests run as root (CI) the cluster is
//! created and run as the `postgres` user (`runuser`), in a directory that user owns.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util;

pub struct OwnPostgres {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl OwnPostgres {
    /// Creates a cluster in a temp dir and starts it on a free port (trust auth, user
    /// `postgres`).
    pub fn start() -> OwnPostgres {
        OwnPostgres::create(false)
    }

    /// Like [`OwnPostgres::start`], but TCP clients must use TLS (`hostssl` only); the
    /// server's certificate is for `localhost`, signed by [`OwnPostgres::ca_cert`].
    pub fn start_tls() -> OwnPostgres {
        OwnPostgres::create(true)
    }

    fn create(tls: bool) -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).find(|p| p.join("initdb").exists()))
            .expect("PostgreSQL server binaries are not installed (apt-get install postgresql)");
        let [port] = util::free_ports::<1>();
        let dir = tempfile::Builder::new().prefix("obleth-postgres-").tempdir().unwrap();
        let as_postgres = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
        if as_postgres {
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
        }
        let pg = OwnPostgres { bin, port, dir, as_postgres };
        let data = pg.data();
        let status = pg.run("initdb", &["-A", "trust", "-U", "postgres", "-D", &data]);
        assert!(status, "initdb failed");
        if tls {
            pg.enable_tls();
        }
        pg.restart();
        pg
    }

    /// A test CA, a certificate for `localhost` it signed, in the data directory (where
    /// the server looks for `server.crt` and `server.key`), `ssl = on`, and TCP
    /// connections without TLS refused.
    fn enable_tls(&self) {
        let data = self.data();
        let (crt, key) = (format!("{data}/server.crt"), format!("{data}/server.key"));
        let ca = crate::TestCa::create(self.dir.path());
        std::fs::copy(ca.server_cert(), &crt).unwrap();
        std::fs::copy(ca.server_key(), &key).unwrap();
        if self.as_postgres {
            Command::new("chown").args(["postgres:postgres", &crt, &key]).status().unwrap();
        }
        Command::new("chmod").args(["600", &key]).status().unwrap();
        std::fs::write(format!("{data}/pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
            .unwrap();
        let conf = format!("{data}/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).unwrap();
    }

    /// The CA that signed the TLS server's certificate.
    pub fn ca_cert(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) on the same port and data, and waits until it accepts connections.
    pub fn restart(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        assert!(self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"]), "pg_ctl start failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (fast shutdown: connections are cut).
    pub fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
