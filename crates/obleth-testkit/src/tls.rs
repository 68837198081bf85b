//! Certificates a test makes for its own TLS servers, with `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A test CA in a directory, with a server certificate it signed for `localhost` and
/// `127.0.0.1`, and a client certificate it signed (for servers that require one). Valid
/// two days; RSA 2048 keys, unencrypted.
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    /// Makes the CA and both certificates in `dir` (which must exist).
    ///
    /// # Panics
    /// If `openssl` is missing or fails.
    pub fn create(dir: &Path) -> TestCa {
        let ca = TestCa { dir: dir.to_owned() };
        let p = |name: &str| ca.dir.join(name).display().to_string();
        std::fs::write(
            p("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(p("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=obleth test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
        ]);
        for (who, cn) in [("server", "localhost"), ("client", "obleth test client")] {
            let subject = format!("/CN={cn}");
            let (key, csr, crt, ext) = (
                p(&format!("{who}.key")),
                p(&format!("{who}.csr")),
                p(&format!("{who}.crt")),
                p(&format!("{who}.ext")),
            );
            openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &p("ca.crt"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ]);
        }
        ca
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

fn openssl(args: &[&str]) {
    let made = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(made, "openssl {args:?} failed (apt-get install openssl)");
}
