//! The fields of Prometheus' `http_config` that sit next to every outgoing `url`
//! (`downstream`, each endpoint, each remote-write destination): TLS, credentials,
//! extra headers and a proxy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use http::Uri;
use http::header::HeaderName;
use serde::Deserialize;

use super::{ConfigError, error};

/// How the proxy connects to one URL. Every field is optional.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HttpClientConfig {
    /// TLS settings for an `https://` URL.
    #[serde(default)]
    pub tls_config: Option<TlsClientConfig>,
    /// An `Authorization: <type> <credentials>` header on every request.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    /// HTTP basic authentication on every request. Credentials in the URL
    /// (`http://user:password@host`) become this.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// Headers set on every request. Those the proxy sets itself (Authorization, Host,
    /// Content-*, User-Agent, the remote-write ones) are refused.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An HTTP proxy every connection goes through, with `CONNECT` (for `http://` URLs
    /// too), e.g. `http://proxy.example:3128`.
    #[serde(default, with = "super::duration::uri_opt")]
    pub proxy_url: Option<Uri>,
}

/// Header values may be credentials (`X-Api-Key`): shown by name only.
impl fmt::Debug for HttpClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self.headers.keys().map(|k| (k.as_str(), "<secret>")).collect();
        f.debug_struct("HttpClientConfig")
            .field("tls_config", &self.tls_config)
            .field("authorization", &self.authorization)
            .field("basic_auth", &self.basic_auth)
            .field("headers", &headers)
            .field("proxy_url", &self.proxy_url.as_ref().map(redacted))
            .finish()
    }
}

/// `tls_config`, as in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// PEM file of the CAs that sign the server's certificate. Default: the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), presented when the server asks for one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (and the SNI sent), when it is not
    /// the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any server certificate. For tests only: anyone on the path can read and
    /// change the traffic.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `authorization`, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// The scheme, default `Bearer`.
    #[serde(default = "bearer", rename = "type")]
    pub kind: String,
    /// The credentials, inline.
    #[serde(default)]
    pub credentials: Option<Secret>,
    /// A file holding the credentials, read again when it changes (a rotated token).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

/// `basic_auth`, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name.
    pub username: String,
    /// The password, inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password, read again when it changes.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A secret from the configuration: never shown by `Debug`, so no log line or error
/// message can carry it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Headers the proxy sets itself; as in Prometheus, the configuration may not.
const RESERVED_HEADERS: [&str; 9] = [
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

impl HttpClientConfig {
    /// Moves credentials found in `url` into `basic_auth` and takes them out of the URL,
    /// so no message or metric shows them. Both set is an error.
    pub(super) fn take_url_credentials(&mut self, url: &mut Uri, at: &str, errors: &mut Vec<ConfigError>) {
        let Some((userinfo, bare)) = split_userinfo(url) else {
            return;
        };
        *url = bare;
        if self.basic_auth.is_some() || self.authorization.is_some() {
            errors.push(error(
                at,
                "the URL carries credentials and basic_auth or authorization is set too; keep one",
            ));
            return;
        }
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo.as_str(), ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        self.basic_auth = Some(BasicAuthConfig {
            username: decode(user),
            password: Some(Secret(decode(password))),
            password_file: None,
        });
    }

    /// Every problem with these settings, reported at `at` (the URL's field path
    /// without `.url`).
    pub(super) fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if self.authorization.is_some() && self.basic_auth.is_some() {
            errors.push(error(at, "authorization and basic_auth are both set; keep one"));
        }
        if let Some(a) = &self.authorization {
            let at = format!("{at}.authorization");
            if a.kind.eq_ignore_ascii_case("basic") {
                errors.push(error(&at, "type Basic is basic_auth's job; use basic_auth"));
            }
            if a.kind.is_empty()
                || !a
                    .kind
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                errors.push(error(
                    &at,
                    format!("type {:?} is not an authorization scheme", a.kind),
                ));
            }
            match (&a.credentials, &a.credentials_file) {
                (Some(_), Some(_)) => {
                    errors.push(error(&at, "credentials and credentials_file are both set"))
                }
                (None, None) => errors.push(error(&at, "needs credentials or credentials_file")),
                (None, Some(file)) => readable(file, &format!("{at}.credentials_file"), errors),
                (Some(_), None) => {}
            }
        }
        if let Some(b) = &self.basic_auth {
            let at = format!("{at}.basic_auth");
            if b.username.is_empty() {
                errors.push(error(&at, "username is empty"));
            }
            match (&b.password, &b.password_file) {
                (Some(_), Some(_)) => errors.push(error(&at, "password and password_file are both set")),
                (None, Some(file)) => readable(file, &format!("{at}.password_file"), errors),
                _ => {}
            }
        }
        for (name, value) in &self.headers {
            let at = format!("{at}.headers");
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => errors.push(error(&at, format!("{name:?} is not a header name"))),
                Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => errors.push(error(
                    &at,
                    format!(
                        "{name} is set by the proxy itself (use authorization or basic_auth for credentials)"
                    ),
                )),
                Ok(_) => {}
            }
            if http::HeaderValue::from_str(value).is_err() {
                errors.push(error(&at, format!("the value of {name} is not a header value")));
            }
        }
        if let Some(proxy) = &self.proxy_url
            && (proxy.scheme_str() != Some("http") || proxy.authority().is_none())
        {
            errors.push(error(
                &format!("{at}.proxy_url"),
                format!("{} must be an http:// URL with a host", redacted(proxy)),
            ));
        }
        if let Some(tls) = &self.tls_config {
            let at = format!("{at}.tls_config");
            for (field, file) in [
                ("ca_file", &tls.ca_file),
                ("cert_file", &tls.cert_file),
                ("key_file", &tls.key_file),
            ] {
                if let Some(file) = file {
                    readable(file, &format!("{at}.{field}"), errors);
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                errors.push(error(&at, "cert_file and key_file go together"));
            }
            if let Some(name) = &tls.server_name
                && !crate::outbound::tls::is_server_name(name)
            {
                errors.push(error(
                    &format!("{at}.server_name"),
                    format!("{name:?} is not a host name"),
                ));
            }
            if errors.iter().all(|e| !e.at.starts_with(&at))
                && let Err(e) = crate::outbound::check_tls(tls)
            {
                errors.push(error(&at, e));
            }
        }
    }
}

fn readable(file: &std::path::Path, at: &str, errors: &mut Vec<ConfigError>) {
    if let Err(e) = std::fs::File::open(file) {
        errors.push(error(at, format!("cannot read {}: {e}", file.display())));
    }
}

/// `url` without its `user:password@`, and that userinfo; `None` when it has none.
fn split_userinfo(url: &Uri) -> Option<(String, Uri)> {
    let authority = url.authority()?;
    let (userinfo, host) = authority.as_str().rsplit_once('@')?;
    let mut parts = url.clone().into_parts();
    parts.authority = Some(host.parse().ok()?);
    Some((userinfo.to_owned(), Uri::from_parts(parts).ok()?))
}

/// `url` for a message: any `user:password@` replaced by `<secret>@`.
pub fn redacted(url: &Uri) -> String {
    match split_userinfo(url) {
        Some((_, bare)) => bare.to_string().replacen("://", "://<secret>@", 1),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_move_to_basic_auth_and_leave_the_url() {
        let cases = [
            ("http://u:p%40ss@h:9090/x", Some(("u", "p@ss")), "http://h:9090/x"),
            ("http://user@h:9090", Some(("user", "")), "http://h:9090/"),
            ("http://h:9090", None, "http://h:9090/"),
        ];
        for (text, expected, bare) in cases {
            let mut url: Uri = text.parse().unwrap();
            let mut http = HttpClientConfig::default();
            let mut errors = Vec::new();
            http.take_url_credentials(&mut url, "downstream", &mut errors);
            assert!(errors.is_empty(), "{text}: {errors:?}");
            assert_eq!(url.to_string(), bare, "{text}");
            let got = http
                .basic_auth
                .map(|b| (b.username, b.password.unwrap().expose().to_owned()));
            assert_eq!(got, expected.map(|(u, p)| (u.to_owned(), p.to_owned())), "{text}");
            assert!(!redacted(&text.parse().unwrap()).contains("p%40ss"));
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let auth = AuthorizationConfig {
            kind: bearer(),
            credentials: Some(Secret::new("hunter2")),
            credentials_file: None,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
