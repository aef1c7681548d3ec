//! Loading plugins and test guests for the plugin-host tests. The build script leaves
//! every guest component in `OUT_DIR`.

#![allow(dead_code, reason = "shared by several test files; each uses a subset")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sketch_proxy::plugin_host::{
    Host, Observer, Plugin, PluginSet, Settings, Sketch, SketchConfig, TrapKind,
};

/// Path of a guest component built by the build script (`quantile`, `spread`, `hostile`...).
pub fn guest_path(name: &str) -> PathBuf {
    Path::new(env!("OUT_DIR")).join(format!("{name}.wasm"))
}

/// The bytes of a guest component.
pub fn guest(name: &str) -> Vec<u8> {
    std::fs::read(guest_path(name)).unwrap()
}

/// Tight limits so hostile guests are caught quickly.
pub fn settings(dir: Option<PathBuf>) -> Settings {
    Settings {
        dir,
        cache_dir: None,
        instances: 2,
        memory_limit_bytes: 256 << 20,
        call_timeout: Duration::from_millis(500),
        grants: Default::default(),
    }
}

/// Records quarantines.
#[derive(Debug, Default)]
pub struct Recorder(pub Mutex<Vec<(String, TrapKind)>>);

impl Observer for Recorder {
    fn quarantined(&self, plugin: &str, kind: TrapKind) {
        self.0.lock().push((plugin.to_owned(), kind));
    }
}

/// Loads the built-ins plus the files in `dir`.
pub fn load(dir: Option<PathBuf>) -> (PluginSet, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let observer: Arc<dyn Observer> = recorder.clone();
    (Host::global().unwrap().load(&settings(dir), &observer), recorder)
}

/// A directory holding copies of the named guests (as `<name>.wasm`).
pub fn plugin_dir(guests: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in guests {
        std::fs::copy(guest_path(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// A sketch config keeping `retention_ms` and passing `options`.
pub fn config(retention_ms: i64, options: &[(&str, &str)]) -> SketchConfig {
    SketchConfig {
        retention_ms,
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A fresh sketch of `plugin` with a long retention.
pub fn sketch(plugin: &Arc<Plugin>) -> Sketch {
    plugin.create(0, &config(i64::MAX / 4, &[])).unwrap()
}
