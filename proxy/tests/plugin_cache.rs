//! `plugins.cache_dir`: precompiled plugins are written on first load, reused by later
//! processes, and an unusable cache file is replaced instead of failing the load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::path::Path;
use std::process::Command;

fn cached_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn list_plugins(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
        .args(["--config", config.to_str().unwrap(), "plugins", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn precompiled_plugins_are_cached_and_bad_cache_files_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = dir.path().join("config.yml");
    std::fs::write(&config, format!("plugins:\n  cache_dir: {}\n", cache.display())).unwrap();

    let listed = list_plugins(&config);
    let first = cached_files(&cache);
    assert_eq!(
        first.len(),
        sketch_proxy::plugin_host::built_in_names().count(),
        "one file per built-in: {:?}",
        first.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        first
            .iter()
            .all(|(name, bytes)| name.ends_with(".cwasm") && !bytes.is_empty())
    );

    // A second process reuses the files as they are.
    assert_eq!(list_plugins(&config), listed);
    assert_eq!(cached_files(&cache), first);

    // A damaged file is recompiled and written again; the plugins still load.
    std::fs::write(cache.join(&first[0].0), b"damaged").unwrap();
    assert_eq!(list_plugins(&config), listed);
    assert_eq!(cached_files(&cache), first);
}
