//! The `Authorization` header of every request: inline secrets, or files read again
//! when they change, so a rotated token takes effect without a reload.

use std::path::PathBuf;
use std::time::SystemTime;

use base64::Engine as _;
use http::HeaderValue;
use parking_lot::Mutex;

use crate::config::{HttpClientConfig, Secret};

/// Where a secret comes from.
#[derive(Debug)]
pub(super) enum Source {
    Inline(Secret),
    File {
        path: PathBuf,
        /// The file's modification time and length when last read, and its text.
        read: Mutex<Option<(SystemTime, u64, Secret)>>,
    },
}

impl Source {
    fn new(inline: Option<&Secret>, file: Option<&PathBuf>) -> Self {
        match (inline, file) {
            (_, Some(path)) => Source::File {
                path: path.clone(),
                read: Mutex::new(None),
            },
            (inline, None) => Source::Inline(inline.cloned().unwrap_or_else(|| Secret::new(""))),
        }
    }

    /// The secret; a file is read again when its time or length changed. Surrounding
    /// whitespace is dropped, as Prometheus does.
    fn get(&self) -> Result<Secret, String> {
        match self {
            Source::Inline(secret) => Ok(secret.clone()),
            Source::File { path, read } => {
                let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
                let meta = std::fs::metadata(path).map_err(fail)?;
                let stamp = (meta.modified().map_err(fail)?, meta.len());
                let mut read = read.lock();
                if let Some((time, len, secret)) = &*read
                    && (*time, *len) == stamp
                {
                    return Ok(secret.clone());
                }
                let text = std::fs::read_to_string(path).map_err(fail)?;
                let secret = Secret::new(text.trim());
                *read = Some((stamp.0, stamp.1, secret.clone()));
                Ok(secret)
            }
        }
    }
}

/// How requests authenticate.
#[derive(Debug)]
pub(super) enum Credentials {
    Authorization { scheme: String, secret: Source },
    Basic { username: String, password: Source },
}

impl Credentials {
    pub(super) fn of(config: &HttpClientConfig) -> Option<Self> {
        if let Some(a) = &config.authorization {
            return Some(Credentials::Authorization {
                scheme: a.kind.clone(),
                secret: Source::new(a.credentials.as_ref(), a.credentials_file.as_ref()),
            });
        }
        config.basic_auth.as_ref().map(|b| Credentials::Basic {
            username: b.username.clone(),
            password: Source::new(b.password.as_ref(), b.password_file.as_ref()),
        })
    }

    /// The header value, marked sensitive so no debug output shows it.
    pub(super) fn header(&self) -> Result<HeaderValue, String> {
        let text = match self {
            Credentials::Authorization { scheme, secret } => {
                format!("{scheme} {}", secret.get()?.expose())
            }
            Credentials::Basic { username, password } => {
                let pair = format!("{username}:{}", password.get()?.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
            }
        };
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| "the credentials are not a valid header value".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = Source::new(None, Some(&path));
        assert_eq!(source.get().unwrap().expose(), "first");
        // A different length changes the stamp even within the file system's time granularity.
        std::fs::write(&path, "second-token").unwrap();
        assert_eq!(source.get().unwrap().expose(), "second-token");
        std::fs::remove_file(&path).unwrap();
        assert!(source.get().unwrap_err().contains("cannot read"));
    }

    #[test]
    fn basic_auth_is_base64_of_user_and_password() {
        let credentials = Credentials::Basic {
            username: "Aladdin".to_owned(),
            password: Source::Inline(Secret::new("open sesame")),
        };
        let value = credentials.header().unwrap();
        assert_eq!(value.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(value.is_sensitive());
    }
}
