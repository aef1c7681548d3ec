//! `cache:`: the results cache of `query` and `query_range` answers.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration, error};

/// `cache:` section. Reloadable; a reload starts with an empty cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Keep answers (default true). The flag `--no-query.cache` turns it off.
    pub enabled: bool,
    /// Most bytes the cache holds: each answer's JSON and its compressed form
    /// (default 512 MiB). An answer over a quarter of it is not kept.
    pub max_bytes: u64,
    /// Steps newer than this are never kept (default 1m, as Thanos' query frontend):
    /// samples for them may still be on their way.
    #[serde(with = "duration::prometheus")]
    pub max_freshness: Duration,
    /// Kept answers older than this are computed again (default 1h). Samples written
    /// through the proxy's remote write drop the answers they change at once; samples
    /// that reach downstream another way (backfills, another writer) are seen after
    /// at most this long.
    #[serde(with = "duration::prometheus")]
    pub max_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 512 << 20,
            max_freshness: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
        }
    }
}

impl CacheConfig {
    /// Every problem, added to `errors`.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.enabled && self.max_bytes < 1 << 20 {
            errors.push(error("cache.max_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if self.max_ttl.is_zero() {
            errors.push(error("cache.max_ttl", "must be greater than 0"));
        }
    }
}
