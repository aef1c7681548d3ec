//! The Prometheus text format (0.0.4) from prometheus-client's OpenMetrics output, for
//! scrapers and tools that do not ask for OpenMetrics (`promtool check metrics`, older
//! Prometheus servers, curl). The two differ in a few rules only: a counter's family
//! carries its `_total` suffix, an info metric is a gauge named `<name>_info`, `unknown`
//! is `untyped`, and there is no `# UNIT`, no exemplar, no `_created` and no `# EOF`.

use std::collections::HashMap;

/// `openmetrics` (prometheus-client's text encoding) in the Prometheus text format.
pub fn from_openmetrics(openmetrics: &str) -> String {
    let mut renamed: HashMap<&str, (String, &str)> = HashMap::new();
    for line in openmetrics.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let classic = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            renamed.insert(name, classic);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((name, help)) = line.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')) {
            let classic = renamed.get(name).map_or(name, |(n, _)| n.as_str());
            out.push_str(&format!("# HELP {classic} {help}\n"));
            continue;
        }
        if let Some((name, _)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            if let Some((classic, kind)) = renamed.get(name) {
                out.push_str(&format!("# TYPE {classic} {kind}\n"));
            }
            continue;
        }
        let sample = line.split(" # ").next().unwrap_or(line);
        let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
        let name = &sample[..name_end];
        let created = name
            .strip_suffix("_created")
            .is_some_and(|family| renamed.get(family).is_some_and(|(_, kind)| *kind == "counter"));
        if !created {
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::from_openmetrics;

    #[test]
    fn families_take_the_classic_names_and_openmetrics_only_lines_go() {
        let openmetrics = "# HELP requests Requests served.\n# TYPE requests counter\n\
            requests_total{code=\"200\"} 3 # {trace_id=\"ab\"} 1.0\nrequests_created{code=\"200\"} 1.7e9\n\
            # HELP build Build information.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n\
            # HELP up Whether up.\n# TYPE up gauge\n# UNIT up seconds\nup 1\n# EOF\n";
        let want = "# HELP requests_total Requests served.\n# TYPE requests_total counter\n\
            requests_total{code=\"200\"} 3\n\
            # HELP build_info Build information.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n\
            # HELP up Whether up.\n# TYPE up gauge\nup 1\n";
        assert_eq!(from_openmetrics(openmetrics), want);
    }
}
