//! Test certificates made on the spot with rcgen: a CA, a server certificate for
//! 127.0.0.1 and localhost, and a client certificate, as PEM files in a temporary
//! directory. Every CA made in a process is trusted by [`crate::http_agent`].

use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use anyhow::Context as _;
use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// CA certificates (DER) made so far in this process.
static TRUSTED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The CA certificates [`crate::http_agent`] trusts.
pub fn trusted() -> Vec<Vec<u8>> {
    TRUSTED.lock().clone()
}

/// A CA and what it signed, as files; removed when dropped.
#[derive(Debug)]
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA, with `server.pem`/`server-key.pem` for 127.0.0.1 and localhost and
    /// `client.pem`/`client-key.pem` for a client named `test-client`.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("sketch-proxy-tls-").tempdir()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sketch-proxy test CA");
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        fs::write(dir.path().join("ca.pem"), cert.pem())?;
        TRUSTED.lock().push(cert.der().to_vec());
        let ca = Self {
            dir,
            issuer: Issuer::new(params, key),
        };
        ca.sign(
            "server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        ca.sign("client", &["test-client"], ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(ca)
    }

    /// Signs a certificate for `names`, written to `<stem>.pem` and `<stem>-key.pem`.
    pub fn sign(&self, stem: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> anyhow::Result<()> {
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer).context("signing")?;
        fs::write(self.dir.path().join(format!("{stem}.pem")), cert.pem())?;
        fs::write(
            self.dir.path().join(format!("{stem}-key.pem")),
            key.serialize_pem(),
        )?;
        Ok(())
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file of the directory: `ca.pem`, `server.pem`, `server-key.pem`, ...
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `--web.config.file` serving TLS with the server certificate, and basic auth
    /// for `user` with `password` when given; written to `name` in the directory.
    pub fn web_config(&self, name: &str, user: Option<(&str, &str)>) -> anyhow::Result<PathBuf> {
        let mut text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            self.file("server.pem").display(),
            self.file("server-key.pem").display()
        );
        if let Some((user, password)) = user {
            // The lowest cost: these hashes protect nothing and every check runs it.
            let hash = bcrypt::hash(password, 4)?;
            text.push_str(&format!("basic_auth_users:\n  {user}: '{hash}'\n"));
        }
        let path = self.file(name);
        fs::write(&path, text)?;
        Ok(path)
    }
}

impl TestCa {
    /// A web door of TLS and basic auth for `user` with `password`, for a Prometheus
    /// started with it (see [`crate::PrometheusOptions::web`]).
    pub fn web_door(&self, name: &str, user: &str, password: &str) -> anyhow::Result<crate::WebDoor> {
        Ok(crate::WebDoor {
            file: self.web_config(name, Some((user, password)))?,
            basic_auth: Some((user.to_owned(), password.to_owned())),
        })
    }
}

/// The `Authorization` value of basic auth for `user` and `password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
