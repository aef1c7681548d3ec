//! Stage `cache`: `query_range` answers from stored extents plus the steps they lack,
//! instant answers at times past the freshness window from stored ones
//! ([`crate::cache`]). Whatever path answers (downstream, engine, sketches), only
//! what is missing is asked of it.
//!
//! `Cache-Control: no-cache` from the client skips reading, `no-store` skips
//! storing; `X-Cache` says `hit`, `partial` or `miss`.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use promql_parser::label::Matchers;

use super::stages::PATH_HEADER;
use crate::api::QueryRequest;
use crate::cache::extent::{self, Extent, Parsed};
use crate::cache::gzip::{Gzip, Piece, Plain, Sink};
use crate::cache::{ResultsCache, Stored};
use crate::metrics::{CacheLabels, Metrics};
use crate::promql::eval::Range;

/// The response header saying how the cache answered.
pub const CACHE_HEADER: &str = "x-cache";

/// Request headers that change an answer.
const KEY_HEADERS: [&str; 4] = ["authorization", "cookie", "x-scope-orgid", "x-sketch"];

/// A cacheable request.
#[derive(Debug)]
pub struct Plan {
    cache: Arc<ResultsCache>,
    key: u128,
    range: Range,
    is_range: bool,
    selectors: Arc<[Matchers]>,
    read: bool,
    write: bool,
    gzip: bool,
    /// Before any part of the answer was computed.
    started: std::time::Instant,
}

/// What the cache does not have.
#[derive(Debug)]
pub struct Compute {
    plan: Plan,
    found: Vec<Arc<Extent>>,
    /// The steps to ask for.
    missing: Range,
}

/// The cache's first look at a request.
#[derive(Debug)]
pub enum Lookup {
    /// Answered from the cache.
    Hit(Response),
    /// Ask for the missing steps, then [`Compute::finish`].
    Compute(Compute),
}

/// The plan of `request`, when it may be cached: the cache is on, and no step depends
/// on data after it (`@`, negative offsets).
pub fn plan(cache: Option<&Arc<ResultsCache>>, request: &QueryRequest, headers: &HeaderMap) -> Option<Plan> {
    let cache = cache?;
    // A top sketch-proxy's pushed parts: it caches the answers it merges from them.
    if crate::promql::reads_ahead(&request.expr) || request.compact {
        return None;
    }
    let range = request.range;
    let mut text = Vec::with_capacity(256);
    let mut add = |part: &[u8]| {
        text.extend_from_slice(part);
        text.push(0);
    };
    add(request.expr.to_string().as_bytes());
    if request.is_range {
        add(b"range");
        add(&range.step_ms.to_le_bytes());
        add(&range.start_ms.rem_euclid(range.step_ms).to_le_bytes());
    } else {
        add(b"instant");
        add(&range.start_ms.to_le_bytes());
    }
    add(&[u8::from(request.sketch_off)]);
    add(format!("{:?}", request.thanos.replica_labels).as_bytes());
    add(format!("{:?}", request.thanos.store_match).as_bytes());
    add(format!("{:?}", request.thanos.lookback_delta).as_bytes());
    add(format!("{:?}", request.thanos.passed_on).as_bytes());
    for name in KEY_HEADERS {
        for value in headers.get_all(name) {
            add(name.as_bytes());
            add(value.as_bytes());
        }
    }
    let directive = |d: &str| {
        headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(d))
    };
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let mut parts = v.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|q| matches!(q.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        });
    Some(Plan {
        cache: cache.clone(),
        key: xxhash_rust::xxh3::xxh3_128(&text),
        range,
        is_range: request.is_range,
        selectors: crate::promql::selector_matchers(&request.expr).into(),
        read: !directive("no-cache"),
        write: !directive("no-store"),
        gzip,
        started: std::time::Instant::now(),
    })
}

impl Plan {
    /// Answers from the cache, or says which steps to ask for.
    pub fn lookup(self, metrics: &Metrics) -> Lookup {
        let count = |result: &'static str| {
            metrics
                .cache_requests
                .get_or_create(&CacheLabels { result })
                .inc()
        };
        if !self.is_range {
            if let Some(stored) = self.read.then(|| self.cache.instant(self.key)).flatten() {
                count("hit");
                return Lookup::Hit(self.respond_stored(&stored));
            }
            let missing = self.range;
            return Lookup::Compute(Compute {
                plan: self,
                found: Vec::new(),
                missing,
            });
        }
        let found = if self.read {
            self.cache.extents(self.key)
        } else {
            Vec::new()
        };
        let range = self.range;
        let step = range.step_ms;
        let mut first = range.start_ms;
        for e in &found {
            if e.start_ms <= first && e.end_ms >= first {
                first = e.end_ms + step;
            }
        }
        let mut last = range.end_ms;
        for e in found.iter().rev() {
            if e.start_ms <= last && e.end_ms >= last {
                last = e.start_ms - step;
            }
        }
        if first > range.end_ms {
            count("hit");
            let response = self.respond(&found, None, Some("hit"));
            return Lookup::Hit(response);
        }
        Lookup::Compute(Compute {
            plan: self,
            found,
            missing: Range {
                start_ms: first,
                end_ms: last.max(first),
                step_ms: step,
            },
        })
    }

    /// A stored instant answer.
    fn respond_stored(&self, stored: &Stored) -> Response {
        let body = if self.gzip {
            let mut sink = Gzip::default();
            sink.piece(&stored.body);
            sink.finish()
        } else {
            stored.body.text().to_vec()
        };
        self.response(body, &stored.paths, "hit")
    }

    /// The range answer joined from `found` and `computed` (over its range), written
    /// plain or gzip.
    fn respond(
        &self,
        found: &[Arc<Extent>],
        computed: Option<(&Parsed, Range, &str)>,
        outcome: Option<&'static str>,
    ) -> Response {
        let mut paths: Vec<String> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let add = |list: &mut Vec<String>, items: &[String]| {
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        };
        for e in found {
            add(&mut paths, &e.paths);
            add(&mut warnings, &e.warnings);
        }
        if let Some((parsed, _, path)) = computed {
            let own: Vec<String> = path.split(',').map(str::to_owned).collect();
            add(&mut paths, &own);
            add(&mut warnings, &parsed.warnings);
        }
        let computed = computed.map(|(p, r, _)| (p, r));
        let write = |sink: &mut dyn Sink| write_matrix(sink, self.range, found, computed, &warnings);
        let body = if self.gzip {
            let mut sink = Gzip::default();
            write(&mut sink);
            sink.finish()
        } else {
            let mut sink = Plain::default();
            write(&mut sink);
            sink.0
        };
        self.response(body, &paths.join(","), outcome.unwrap_or("partial"))
    }

    fn response(&self, body: Vec<u8>, paths: &str, outcome: &'static str) -> Response {
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Ok(value) = HeaderValue::from_str(paths) {
            headers.insert(PATH_HEADER, value);
        }
        headers.insert(CACHE_HEADER, HeaderValue::from_static(outcome));
        response
    }
}

impl Compute {
    /// Whether the whole request is asked for.
    pub fn is_whole(&self) -> bool {
        self.missing == self.plan.range
    }

    /// The request narrowed to the missing steps: the query's range, and the `start`
    /// and `end` parameters that go downstream. Downstream is asked for a plain answer,
    /// which is parsed here and compressed on the way out.
    pub fn narrow(
        &self,
        request: &mut QueryRequest,
        parts: &mut Parts,
        body: &mut Bytes,
        pairs: &[(String, String)],
    ) {
        parts.headers.remove(header::ACCEPT_ENCODING);
        if self.is_whole() {
            return;
        }
        request.range = self.missing;
        let time = |ms: i64| crate::api::wire::format_timestamp(ms);
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            match name.as_str() {
                "start" => form.append_pair(name, &time(self.missing.start_ms)),
                "end" => form.append_pair(name, &time(self.missing.end_ms)),
                _ => form.append_pair(name, value),
            };
        }
        let encoded = form.finish();
        let path = parts.uri.path().to_owned();
        if parts.method == http::Method::POST {
            *body = Bytes::from(encoded);
            if let Ok(uri) = path.parse() {
                parts.uri = uri;
            }
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        } else if let Ok(uri) = format!("{path}?{encoded}").parse() {
            parts.uri = uri;
        }
    }

    /// The answer: `response` (the missing steps' answer) joined with what was found,
    /// and what may be stored of it stored.
    pub async fn finish(self, response: Response, metrics: &Metrics) -> Response {
        let Compute { plan, found, missing } = self;
        let outcome = if found.is_empty() { "miss" } else { "partial" };
        metrics
            .cache_requests
            .get_or_create(&CacheLabels { result: outcome })
            .inc();
        if response.status() != StatusCode::OK {
            return response;
        }
        let no_store = response.headers().get_all(header::CACHE_CONTROL).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-store"))
        });
        let paths = response
            .headers()
            .get(PATH_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("downstream")
            .to_owned();
        // Downstream's warnings (a Thanos partial response) make its answer unfit to keep;
        // the proxy's own say no-store when they must.
        let forwarded = paths == "downstream";
        let (parts, body) = match super::collapse::buffered(response, plan.cache.max_answer_bytes()).await {
            Ok(read) => read,
            Err(streaming) => return streaming,
        };
        let cutoff = plan.cache.cutoff_ms(crate::clock::now_ms());
        let store = plan.write && !no_store;
        if !plan.is_range {
            let keep = store && missing.start_ms <= cutoff && !(forwarded && has_warnings(&body));
            if keep {
                let (cache, key, selectors, at, started) = (
                    plan.cache.clone(),
                    plan.key,
                    plan.selectors.clone(),
                    missing.start_ms,
                    plan.started,
                );
                let text = body.clone();
                // Stored before the answer goes: the next identical request finds it.
                let _ = tokio::task::spawn_blocking(move || {
                    let stored = Stored {
                        body: Piece::new(text),
                        paths,
                        stored_at: std::time::Instant::now(),
                    };
                    cache.store_instant(key, selectors, at, stored, started);
                })
                .await;
            }
            return mark(Response::from_parts(parts, Body::from(body)), outcome);
        }
        let last_kept = aligned_at_or_before(missing, cutoff);
        let keep = store && last_kept.is_some();
        if found.is_empty() {
            // The whole answer came: it goes out as it is, once kept (parsing and
            // compressing take about 10 ms per MB, beside the seconds a miss of that
            // size took to compute).
            if keep && let Some(last) = last_kept {
                let (cache, key, selectors, started) =
                    (plan.cache.clone(), plan.key, plan.selectors.clone(), plan.started);
                let text = body.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(parsed) = extent::parse(&text)
                        && (!forwarded || parsed.warnings.is_empty())
                    {
                        let extent = parsed.extent(missing.start_ms, last, split(&paths));
                        cache.store_extent(key, selectors, missing.step_ms, extent, started);
                    }
                })
                .await;
            }
            return mark(Response::from_parts(parts, Body::from(body)), outcome);
        }
        let joined = tokio::task::spawn_blocking(move || {
            let parsed = extent::parse(&body)?;
            let response = plan.respond(&found, Some((&parsed, missing, &paths)), None);
            if keep
                && let Some(last) = last_kept
                && (!forwarded || parsed.warnings.is_empty())
            {
                let extent = parsed.extent(missing.start_ms, last, split(&paths));
                plan.cache.store_extent(
                    plan.key,
                    plan.selectors.clone(),
                    missing.step_ms,
                    extent,
                    plan.started,
                );
            }
            Some((response, body))
        })
        .await;
        match joined {
            Ok(Some((mut response, _))) => {
                if let Some(stats) = parts.extensions.get::<crate::promql::eval::Stats>() {
                    response.extensions_mut().insert(*stats);
                }
                if no_store {
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
                response
            }
            // Not a matrix: a successful range answer always is.
            Ok(None) | Err(_) => super::rescue(crate::api::ApiError::Execution(
                "the answer of the missing steps could not be joined with the cached ones; ask again with Cache-Control: no-cache".to_owned(),
            )),
        }
    }
}

fn split(paths: &str) -> Vec<String> {
    paths.split(',').map(str::to_owned).collect()
}

fn mark(mut response: Response, outcome: &'static str) -> Response {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(outcome));
    response
}

fn has_warnings(body: &[u8]) -> bool {
    body.windows(12).any(|w| w == b"\"warnings\":[")
}

/// The last step of `range` at or before `cutoff_ms`.
fn aligned_at_or_before(range: Range, cutoff_ms: i64) -> Option<i64> {
    if cutoff_ms < range.start_ms {
        return None;
    }
    let steps = (cutoff_ms.min(range.end_ms) - range.start_ms) / range.step_ms;
    Some(range.start_ms + steps * range.step_ms)
}

/// `{"status":"success","data":{"resultType":"matrix","result":[…]}}` over `range`:
/// each series' points from the extents before the computed steps, the computed ones,
/// then the extents after.
fn write_matrix(
    sink: &mut dyn Sink,
    range: Range,
    found: &[Arc<Extent>],
    computed: Option<(&Parsed, Range)>,
    warnings: &[String],
) {
    let (c_start, c_end) = computed.map_or((i64::MAX, i64::MAX), |(_, r)| (r.start_ms, r.end_ms));
    let mut labels: Vec<&crate::promql::eval::value::Labels> = found
        .iter()
        .flat_map(|e| e.runs.iter().map(|r| &r.labels))
        .chain(
            computed
                .iter()
                .flat_map(|(p, _)| p.series.iter().map(|s| &s.labels)),
        )
        .collect();
    labels.sort();
    labels.dedup();
    sink.literal(br#"{"status":"success","data":{"resultType":"matrix","result":["#);
    let mut first_series = true;
    for l in labels {
        let runs: Vec<&extent::Run> = found
            .iter()
            .filter_map(|e| {
                e.runs
                    .binary_search_by(|r| r.labels.cmp(l))
                    .ok()
                    .map(|i| &e.runs[i])
            })
            .collect();
        let series = computed.and_then(|(p, _)| {
            p.series
                .binary_search_by(|s| s.labels.cmp(l))
                .ok()
                .map(|i| &p.series[i])
        });
        let Some(metric) = runs.first().map(|r| &r.metric).or(series.map(|s| &s.metric)) else {
            continue;
        };
        let before = (range.start_ms, (c_start - 1).min(range.end_ms));
        let after = (c_end.saturating_add(1).max(range.start_ms), range.end_ms);
        let text = series.and_then(|s| s.between(c_start.max(range.start_ms), c_end.min(range.end_ms)));
        // A series without a point in the window is left out, as Prometheus does.
        let any = |(from, to): (i64, i64)| runs.iter().any(|r| extent::has_points(&r.points, from, to));
        if text.is_none() && !any(before) && !(c_end < range.end_ms && any(after)) {
            continue;
        }
        sink.literal(if first_series {
            b"{\"metric\":"
        } else {
            b",{\"metric\":"
        });
        first_series = false;
        sink.literal(metric);
        sink.literal(b",\"values\":[");
        let mut wrote = false;
        for r in &runs {
            wrote = extent::write_points(sink, &r.points, before.0, before.1, wrote);
        }
        if let Some(text) = text {
            if wrote {
                sink.literal(b",");
            }
            sink.literal(&text);
            wrote = true;
        }
        if c_end < range.end_ms {
            for r in &runs {
                wrote = extent::write_points(sink, &r.points, after.0, after.1, wrote);
            }
        }
        sink.literal(b"]}");
    }
    sink.literal(b"]}");
    if !warnings.is_empty() {
        let list: Vec<String> = warnings.iter().map(|w| crate::api::wire::go_string(w)).collect();
        sink.literal(b",\"warnings\":[");
        sink.literal(list.join(",").as_bytes());
        sink.literal(b"]");
    }
    sink.literal(b"}");
}

#[cfg(test)]
mod tests;
