use super::validate;
use crate::plugin_host::{ErrorBound, FunctionInfo, PluginInfo};

fn info(name: &str, version: &str, function: &str, relative: f64, args: usize) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        functions: vec![FunctionInfo {
            name: function.to_owned(),
            scalar_args: (0..args).map(|i| format!("a{i}")).collect(),
            bound: ErrorBound {
                relative,
                min_samples: 10,
            },
            description: String::new(),
        }],
    }
}

#[test]
fn metadata_is_checked() {
    // (name, version, function, bound, scalar args, expected error fragment or "" for OK)
    let cases: &[(&str, &str, &str, f64, usize, &str)] = &[
        ("spread", "0.1.0", "spread_over_time", 0.0, 0, ""),
        ("my-iqr2", "12.0.3-beta", "iqr_over_time", 0.02, 2, ""),
        ("", "0.1.0", "x_over_time", 0.0, 0, "plugin name"),
        ("Upper", "0.1.0", "x_over_time", 0.0, 0, "plugin name"),
        ("x", "1.0", "x_over_time", 0.0, 0, "semver"),
        ("x", "one.two.three", "x_over_time", 0.0, 0, "semver"),
        ("x", "0.1.0", "rate", 0.0, 0, ""),
        ("x", "0.1.0", "changes", 0.0, 0, ""),
        ("x", "0.1.0", "rate", 0.0, 1, "no scalar arguments"),
        ("x", "0.1.0", "histogram_quantile", 0.0, 1, "name_over_time"),
        ("x", "0.1.0", "ratex", 0.0, 0, "name_over_time"),
        ("x", "0.1.0", "_over_time", 0.0, 0, "name_over_time"),
        ("x", "0.1.0", "9x_over_time", 0.0, 0, "name_over_time"),
        ("x", "0.1.0", "x_over_time", 1.0, 0, "bound"),
        ("x", "0.1.0", "x_over_time", -0.1, 0, "bound"),
        ("x", "0.1.0", "x_over_time", f64::NAN, 0, "bound"),
        ("x", "0.1.0", "x_over_time", 0.0, 9, "scalar arguments"),
    ];
    for &(name, version, function, bound, args, want) in cases {
        let got = validate(&info(name, version, function, bound, args));
        match (want, got) {
            ("", Ok(())) => {}
            ("", Err(e)) => panic!("{name}/{function}: unexpected error {e}"),
            (_, Ok(())) => panic!("{name}/{function}: accepted, expected an error about {want}"),
            (_, Err(e)) => assert!(
                e.contains(want),
                "{name}/{function}: {e:?} does not mention {want:?}"
            ),
        }
    }
}

#[test]
fn duplicate_and_missing_functions_are_rejected() {
    let mut twice = info("x", "0.1.0", "x_over_time", 0.0, 0);
    twice.functions.push(twice.functions[0].clone());
    assert!(validate(&twice).unwrap_err().contains("declared twice"));
    let mut none = info("x", "0.1.0", "x_over_time", 0.0, 0);
    none.functions.clear();
    assert!(validate(&none).unwrap_err().contains("1 to 32"));
}
