//! The proxy's own door (`--web.config.file`): TLS for every connection and basic auth
//! for every request, as Prometheus' exporter-toolkit does. The file, and the
//! certificate files it names, are looked at again at most once a second; a change
//! takes effect for the next connection or request, and a file that no longer loads
//! is logged while the previous settings stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use parking_lot::Mutex;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use crate::config::ConfigErrors;
use crate::config::web_file::{ClientAuth, TlsServerConfig, WebFile, tls_version};
use crate::outbound::tls::{certificates, private_key, provider};
use crate::state::Proxy;

/// How often the files are looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// A bcrypt hash checked when the user is unknown, so the answer takes as long as for a
/// known user (whatever it matches, an unknown user is refused).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("no such user", bcrypt::DEFAULT_COST).unwrap_or_default())
}

/// The settings in force.
struct Settings {
    file: WebFile,
    acceptor: Option<TlsAcceptor>,
    headers: HeaderMap,
}

/// The door: settings, and when the files were last looked at.
pub struct Door {
    path: Option<PathBuf>,
    settings: ArcSwap<Settings>,
    /// When the files were last looked at, and what they looked like.
    seen: Mutex<(Instant, Vec<Stamp>)>,
    /// Credentials that passed, by digest: bcrypt costs tens of milliseconds a check.
    passed: moka::sync::Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

type Stamp = Option<(SystemTime, u64)>;

fn stamps(path: Option<&Path>, file: &WebFile) -> Vec<Stamp> {
    let mut files: Vec<&Path> = path.into_iter().collect();
    if let Some(tls) = &file.tls_server_config {
        files.extend(tls.files());
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

impl Door {
    /// The door `path` describes; `None`: plain http, open to all.
    pub fn open(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        let file = match path {
            Some(path) => WebFile::load(path)?,
            None => WebFile::default(),
        };
        let settings = Settings::of(file).map_err(|e| {
            ConfigErrors(vec![crate::config::ConfigError {
                at: path.map(|p| p.display().to_string()).unwrap_or_default(),
                message: e,
            }])
        })?;
        let seen = stamps(path, &settings.file);
        Ok(Self {
            path: path.map(Path::to_owned),
            settings: ArcSwap::from_pointee(settings),
            seen: Mutex::new((Instant::now(), seen)),
            passed: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_live(Duration::from_secs(300))
                .build(),
        })
    }

    /// Whether connections are TLS (decided at start, as Prometheus does).
    pub fn tls(&self) -> bool {
        self.settings.load().acceptor.is_some()
    }

    /// The TLS acceptor in force, after a look at the files.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.refresh();
        self.settings.load().acceptor.clone()
    }

    /// Reads the files again when they changed since the last look (at most once per
    /// [`RECHECK`]).
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let mut seen = self.seen.lock();
        if seen.0.elapsed() < RECHECK {
            return;
        }
        let current = self.settings.load();
        let now = stamps(Some(path), &current.file);
        seen.0 = Instant::now();
        if now == seen.1 {
            return;
        }
        seen.1 = now;
        let loaded = WebFile::load(path)
            .map_err(|e| e.to_string())
            .and_then(Settings::of);
        match loaded {
            Ok(next) if next.acceptor.is_some() != current.acceptor.is_some() => {
                tracing::error!(file = %path.display(), "turning TLS on or off needs a restart; the file's other changes wait for it too");
            }
            Ok(next) => {
                tracing::info!(file = %path.display(), "web configuration file read again");
                seen.1 = stamps(Some(path), &next.file);
                self.passed.invalidate_all();
                self.settings.store(Arc::new(next));
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "the web configuration file does not load; the previous settings stay");
            }
        }
    }

    /// Whether `headers` carry the credentials of a configured user (always, when no
    /// user is configured).
    async fn admits(&self, headers: &HeaderMap) -> bool {
        self.refresh();
        let settings = self.settings.load_full();
        let users = &settings.file.basic_auth_users;
        if users.is_empty() {
            return true;
        }
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let known = users.contains_key(&user);
        let hash = match users.get(&user) {
            Some(hash) => hash.expose().to_owned(),
            None => dummy_hash().to_owned(),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if self.passed.contains_key(&key) {
            return true;
        }
        let checked =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await;
        let ok = known && checked.unwrap_or(false);
        if ok {
            self.passed.insert(key, ());
        }
        ok
    }
}

impl Settings {
    fn of(file: WebFile) -> Result<Self, String> {
        let acceptor = match &file.tls_server_config {
            Some(tls) => Some(TlsAcceptor::from(Arc::new(server_config(tls)?))),
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &file.http_server_config.headers {
            let name = HeaderName::try_from(name).map_err(|e| format!("header {name}: {e}"))?;
            let value = HeaderValue::try_from(value).map_err(|e| format!("header {name}: {e}"))?;
            headers.insert(name, value);
        }
        Ok(Self {
            file,
            acceptor,
            headers,
        })
    }
}

fn server_config(tls: &TlsServerConfig) -> Result<ServerConfig, String> {
    let min = tls_version(tls.min_version.as_deref())?.unwrap_or(12);
    let max = tls_version(tls.max_version.as_deref())?.unwrap_or(13);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    if versions.is_empty() {
        return Err("min_version is above max_version".to_owned());
    }
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let builder = match (tls.client_auth()?, &tls.client_ca_file) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder
        .with_single_cert(certificates(&tls.cert_file)?, private_key(&tls.key_file)?)
        .map_err(|e| format!("{} and {}: {e}", tls.cert_file.display(), tls.key_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The user and password of a `Basic` authorization header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Stage `door`: basic auth when users are configured (401 with `WWW-Authenticate`
/// otherwise, as exporter-toolkit answers), the checked credentials taken out so they
/// go no further, and the configured response headers.
pub async fn door(State(proxy): State<Arc<Proxy>>, req: Request, next: Next) -> Response {
    let handler = super::stages::handler_label(&proxy, req.uri().path());
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {handler}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::adopt_parent(&span, req.headers());
    let response = guarded(&proxy, req, next).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn guarded(proxy: &Proxy, mut req: Request, next: Next) -> Response {
    let door = &proxy.door;
    if !door.admits(req.headers()).await {
        let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        return response;
    }
    if !door.settings.load().file.basic_auth_users.is_empty() {
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    let mut response = next.run(req).await;
    for (name, value) in &door.settings.load().headers {
        response.headers_mut().insert(name, value.clone());
    }
    response
}
