//! Compiles the guest crates to `wasm32-wasip2` components and leaves them in `OUT_DIR`:
//! the three built-in plugins (embedded in the binary by `plugin_host::load`), the example
//! plugin and the test guests (read by the tests).
//!
//! The nested cargo gets its own target directory: sharing the outer build's would wait
//! forever on the lock the outer build holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// (package, file name in OUT_DIR)
const GUESTS: [(&str, &str); 8] = [
    ("sketch-plugin-quantile", "quantile"),
    ("sketch-plugin-frequency", "frequency"),
    ("sketch-plugin-stats", "stats"),
    ("spread-plugin", "spread"),
    ("hostile-guest", "hostile"),
    ("wrong-version-guest", "wrong-version"),
    ("impostor-guest", "impostor"),
    ("noisy-guest", "noisy"),
];

/// Environment the outer cargo sets that must not leak into the nested build: wrappers
/// (clippy-driver would lint the guests with the host's flags) and host-only flags.
const SCRUB: [&str; 8] = [
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CLIPPY_ARGS",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().context("proxy/ has a parent")?.to_owned();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    for watched in [
        "wit",
        "plugins",
        // The stats plugin's arithmetic.
        "proxy/promql-math",
        "examples/spread-plugin",
        "proxy/tests/guests",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target_dir = out.join("guest-target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "wasm-plugin"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    for var in SCRUB {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir);
    let status = cmd
        .status()
        .context("running the nested cargo build for the plugins")?;
    if !status.success() {
        bail!(
            "building the WebAssembly plugins failed ({status}). If the error says the wasm32-wasip2 \
             target is missing, run `rustup target add wasm32-wasip2` (rust-toolchain.toml lists it)."
        );
    }
    for (package, name) in GUESTS {
        let built = target_dir
            .join("wasm32-wasip2/wasm-plugin")
            .join(format!("{}.wasm", package.replace('-', "_")));
        copy_if_changed(&built, &out.join(format!("{name}.wasm")))?;
    }
    Ok(())
}

/// Copies only when the bytes differ, so an unchanged plugin does not relink the binary.
fn copy_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}
