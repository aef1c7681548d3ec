//! Sketch rules, parsed and checked against the loaded plugins.

use std::sync::atomic::{AtomicU64, Ordering};

use promql_parser::label::Matchers;

use crate::config::SketchesConfig;
use crate::plugin_host::PluginSet;
use crate::prompb::Label;
use crate::promql;

/// Numbers every rule set, so the store notices a reload.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// The rules of one configuration.
#[derive(Debug)]
pub struct Rules {
    generation: u64,
    rules: Vec<Rule>,
    /// `sketches.max_series`.
    pub max_series: usize,
    /// `sketches.max_memory_bytes`.
    pub max_memory_bytes: u64,
}

/// One rule: a selector, its functions and their history.
#[derive(Debug)]
pub struct Rule {
    /// The selector as written (rule queries: without offset and `@`).
    pub selector: String,
    /// Its matchers, the metric name included.
    pub matchers: Matchers,
    /// Functions served by a loaded plugin, sorted.
    pub functions: Vec<String>,
    /// History each sketch keeps, ms.
    pub retain_ms: i64,
    /// `config`, or the rule query it came from.
    pub origin: String,
    /// Every sample of its series comes through the proxy (`complete`).
    pub complete: bool,
}

impl Rule {
    /// Whether the rule selects the series with these labels.
    pub fn selects(&self, labels: &[Label]) -> bool {
        selects(&self.matchers, labels)
    }
}

impl Rules {
    /// Parses the configured rules. Functions no loaded plugin serves are logged and
    /// left out (a custom plugin may be missing or rejected).
    pub fn new(config: &SketchesConfig, plugins: &PluginSet) -> Self {
        let rules = config
            .rules
            .iter()
            .filter_map(|rule| {
                // The configuration was validated, so the selector parses.
                let matchers = promql::parse_selector(&rule.selector).ok()?;
                let mut functions: Vec<String> = rule
                    .functions
                    .iter()
                    .filter(|f| {
                        let served = plugins.for_function(f).is_some();
                        if !served {
                            tracing::error!(rule = %rule.selector, function = %f, "no loaded plugin serves this function; not sketched");
                        }
                        served
                    })
                    .cloned()
                    .collect();
                functions.sort();
                functions.dedup();
                Some(Rule {
                    selector: rule.selector.clone(),
                    matchers,
                    functions,
                    retain_ms: i64::try_from(rule.retain.as_millis()).unwrap_or(i64::MAX),
                    origin: "config".to_owned(),
                    complete: rule.complete,
                })
            })
            .collect::<Vec<Rule>>();
        let mut rules = rules;
        rules.extend(query_rules(config, plugins));
        Self {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            rules,
            max_series: config.max_series,
            max_memory_bytes: config.max_memory_bytes,
        }
    }

    /// Identifies this rule set among all loaded since start.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether any rule exists (if none, nothing is looked up).
    pub fn is_empty(&self) -> bool {
        self.rules.iter().all(|r| r.functions.is_empty())
    }

    /// Every rule, configured ones first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether a `complete` rule sketching `function` selects every series `matchers`
    /// select: each of its matchers is one of `matchers`.
    pub fn complete_for(&self, function: &str, matchers: &Matchers) -> bool {
        self.rules.iter().any(|r| {
            r.complete
                && r.functions.iter().any(|f| f == function)
                && r.matchers.matchers.iter().all(|m| matchers.matchers.contains(m))
                && r.matchers.or_matchers.is_empty()
                && matchers.or_matchers.is_empty()
        })
    }

    /// The functions to sketch for a series (sorted, no repeats), each with the longest
    /// retention any matching rule asks for.
    pub fn wanted(&self, labels: &[Label]) -> Vec<(String, i64)> {
        let mut wanted: Vec<(String, i64)> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.selects(labels)) {
            for f in &rule.functions {
                match wanted.iter_mut().find(|w| &w.0 == f) {
                    Some(w) => w.1 = w.1.max(rule.retain_ms),
                    None => wanted.push((f.clone(), rule.retain_ms)),
                }
            }
        }
        wanted.sort();
        wanted
    }
}

/// Whether `matchers` select the series with these labels.
pub fn selects(matchers: &Matchers, labels: &[Label]) -> bool {
    let value_of = |name: &str| {
        labels
            .iter()
            .find(|l| l.name == name)
            .map_or("", |l| l.value.as_str())
    };
    promql::selects(matchers, value_of)
}

/// The rules the rule queries need: for each call a loaded plugin serves over a
/// selector (whatever its window: a query kept warm is sketched whole), that selector
/// and function, keeping `query_retain` plus the window and offset.
fn query_rules(config: &SketchesConfig, plugins: &PluginSet) -> Vec<Rule> {
    let served = |f: &str| plugins.for_function(f).is_some();
    let mut rules = Vec::new();
    for query in &config.queries {
        // The configuration was validated, so the query parses.
        let Ok(expr) = promql::parse(query) else { continue };
        let (calls, _) = promql::sketch_plan::sketch_calls(&expr, &served, 0);
        if calls.is_empty() {
            tracing::error!(%query, "no loaded plugin serves a range function of this rule query; not sketched");
        }
        for call in calls {
            let history = config.query_retain.as_millis() as i64 + call.window_ms + call.offset_ms.max(0);
            let mut selector = call.selector.clone();
            selector.offset = None;
            selector.at = None;
            rules.push(Rule {
                selector: selector.to_string(),
                matchers: promql::eval::plan::selector_matchers(call.selector),
                functions: vec![call.function.to_owned()],
                retain_ms: history,
                origin: query.clone(),
                complete: false,
            });
        }
    }
    rules
}
