//! `--web.config.file`: the proxy's own door, in the exporter-toolkit format Prometheus
//! reads (TLS, client certificates, basic-auth users with bcrypt hashes, response
//! headers). Read at start and again whenever it or a file it names changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, ConfigErrors, Secret, error};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebFile {
    /// Serve https with this certificate. Absent: plain http.
    pub tls_server_config: Option<TlsServerConfig>,
    /// Headers added to every response.
    pub http_server_config: HttpServerConfig,
    /// User name → bcrypt hash of the password. Not empty: every request needs basic
    /// auth.
    pub basic_auth_users: BTreeMap<String, Secret>,
}

/// `tls_server_config`. Relative paths are relative to the web configuration file's
/// directory, as in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate (chain).
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// `NoClientCert` (default), `VerifyClientCertIfGiven` or
    /// `RequireAndVerifyClientCert`. Go's `RequestClientCert` and
    /// `RequireAnyClientCert` accept unverified certificates; they are refused.
    pub client_auth_type: Option<String>,
    /// PEM CAs client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// `TLS12` (default) or `TLS13`.
    pub min_version: Option<String>,
    /// `TLS12` or `TLS13` (default).
    pub max_version: Option<String>,
    /// Go's cipher-suite names: refused, the proxy offers only modern suites.
    pub cipher_suites: Option<Vec<String>>,
    /// Go's curve names: refused, as `cipher_suites`.
    pub curve_preferences: Option<Vec<String>>,
    /// Accepted for compatibility; the proxy always prefers the server's order.
    pub prefer_server_cipher_suites: Option<bool>,
}

/// `http_server_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; the proxy serves HTTP/1.1.
    pub http2: Option<bool>,
    /// Security headers set on every response; as in Prometheus, only these:
    /// Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options,
    /// X-XSS-Protection, Content-Security-Policy.
    pub headers: BTreeMap<String, String>,
}

/// How client certificates are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    None,
    /// Checked when given.
    VerifyIfGiven,
    /// Required and checked.
    Require,
}

const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

impl TlsServerConfig {
    /// The client-certificate policy named by `client_auth_type`.
    pub fn client_auth(&self) -> Result<ClientAuth, String> {
        match self.client_auth_type.as_deref().unwrap_or("NoClientCert") {
            "NoClientCert" => Ok(ClientAuth::None),
            "VerifyClientCertIfGiven" => Ok(ClientAuth::VerifyIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuth::Require),
            other => Err(format!(
                "client_auth_type {other:?} is not one of NoClientCert, VerifyClientCertIfGiven, \
                 RequireAndVerifyClientCert (certificates that are not verified are not accepted)"
            )),
        }
    }

    /// The files whose change means the TLS settings must be read again.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        files
    }
}

/// `TLS12` or `TLS13`.
pub fn tls_version(text: Option<&str>) -> Result<Option<u8>, String> {
    match text {
        None => Ok(None),
        Some("TLS12") => Ok(Some(12)),
        Some("TLS13") => Ok(Some(13)),
        Some(other) => Err(format!(
            "{other:?} is not TLS12 or TLS13 (older versions are not offered)"
        )),
    }
}

impl WebFile {
    /// Reads and checks `path`, every error at once.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let at = path.display().to_string();
        let fail = |message: String| ConfigErrors(vec![error(&at, message)]);
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let mut file: WebFile = if text.trim().is_empty() {
            WebFile::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        // As exporter-toolkit: relative files are beside the web configuration file.
        if let (Some(tls), Some(dir)) = (&mut file.tls_server_config, path.parent()) {
            for file in [&mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .chain(tls.client_ca_file.as_mut())
            {
                if file.is_relative() && !file.as_os_str().is_empty() {
                    *file = dir.join(&*file);
                }
            }
        }
        let mut errors = Vec::new();
        file.validate(&at, &mut errors);
        if errors.is_empty() {
            Ok(file)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if let Some(tls) = &self.tls_server_config {
            let at = format!("{at}: tls_server_config");
            if tls.cert_file.as_os_str().is_empty() || tls.key_file.as_os_str().is_empty() {
                errors.push(error(&at, "cert_file and key_file are required"));
            }
            if let Err(e) = tls.client_auth() {
                errors.push(error(&at, e));
            }
            if tls.client_auth().is_ok_and(|a| a != ClientAuth::None) && tls.client_ca_file.is_none() {
                errors.push(error(
                    &at,
                    "client_auth_type verifies certificates: client_ca_file is required",
                ));
            }
            for (field, version) in [
                ("min_version", &tls.min_version),
                ("max_version", &tls.max_version),
            ] {
                if let Err(e) = tls_version(version.as_deref()) {
                    errors.push(error(&format!("{at}.{field}"), e));
                }
            }
            if tls.cipher_suites.is_some() || tls.curve_preferences.is_some() {
                errors.push(error(
                    &at,
                    "cipher_suites and curve_preferences are not supported: the proxy offers only \
                     TLS 1.2 and 1.3 suites with forward secrecy; remove them",
                ));
            }
        }
        for name in self.http_server_config.headers.keys() {
            if !ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                errors.push(error(
                    &format!("{at}: http_server_config.headers"),
                    format!("{name} is not one of {}", ALLOWED_HEADERS.join(", ")),
                ));
            }
        }
        for (user, hash) in &self.basic_auth_users {
            if hash.expose().parse::<bcrypt::HashParts>().is_err() {
                errors.push(error(
                    &format!("{at}: basic_auth_users"),
                    format!("the password of {user:?} is not a bcrypt hash (make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_files_are_beside_the_web_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: /abs/key.pem\n",
        )
        .unwrap();
        let file = WebFile::load(&path).unwrap();
        let tls = file.tls_server_config.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("tls/server.pem"));
        assert_eq!(tls.key_file, PathBuf::from("/abs/key.pem"));
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAnyClientCert\n  min_version: TLS10\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\nhttp_server_config:\n  headers:\n    X-Powered-By: me\nbasic_auth_users:\n  alice: plaintext\n",
        )
        .unwrap();
        let errors = WebFile::load(&path).unwrap_err().to_string();
        for expected in [
            "client_auth_type \"RequireAnyClientCert\"",
            "min_version: \"TLS10\" is not TLS12 or TLS13",
            "cipher_suites and curve_preferences are not supported",
            "X-Powered-By is not one of",
            "the password of \"alice\" is not a bcrypt hash",
        ] {
            assert!(errors.contains(expected), "{expected} in {errors}");
        }
        assert!(!errors.contains("plaintext"), "{errors}");
    }
}
