//! What can go wrong with a plugin: at load time (named by file), and per call.

use std::fmt;
use std::path::PathBuf;

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into the proxy binary.
    BuiltIn,
    /// A `.wasm` file from the plugin directory.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a plugin was not loaded. Always names the source and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct LoadError {
    /// The file (or built-in) that was rejected.
    pub origin: Source,
    /// Why.
    pub reason: LoadFailure,
}

/// The reasons a plugin is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadFailure {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(String),
    /// Not a valid WebAssembly component (corrupt, a core module, truncated).
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component exports another version of the contract, or none.
    #[error("{0}")]
    Contract(String),
    /// The component needs imports the sandbox does not provide, or failed to start.
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// `info()` trapped or described the plugin wrongly.
    #[error("invalid metadata: {0}")]
    Metadata(String),
    /// A function is already served by another loaded plugin.
    #[error("function {function} is already served by plugin {owner} ({owner_source})")]
    Clash {
        /// The function both claim.
        function: String,
        /// The plugin that keeps it.
        owner: String,
        /// Where that plugin came from.
        owner_source: Source,
    },
    /// Two plugins share a name.
    #[error("plugin name {name} is already used by {owner_source}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Where the first plugin of that name came from.
        owner_source: Source,
    },
}

/// Why a trapped plugin was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The call ran past its deadline (`plugins.call_timeout`).
    Deadline,
    /// The instance tried to grow past `plugins.memory_limit_bytes`.
    MemoryLimit,
    /// The guest panicked (or hit `unreachable`).
    Panic,
    /// The guest answered something the contract forbids.
    BadOutput,
    /// Any other trap.
    Other,
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapKind::Deadline => "deadline exceeded",
            TrapKind::MemoryLimit => "memory limit exceeded",
            TrapKind::Panic => "panic",
            TrapKind::BadOutput => "output violates the contract",
            TrapKind::Other => "trap",
        })
    }
}

/// A failure the plugin reported on purpose (the WIT `error` variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// `invalid-config`.
    #[error("invalid sketch config: {0}")]
    InvalidConfig(String),
    /// `invalid-argument`.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `out-of-order`.
    #[error("sample at {0} ms is out of order")]
    OutOfOrder(i64),
    /// `bad-snapshot`.
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    /// `other`.
    #[error("{0}")]
    Other(String),
}

/// A failed call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin answered with an error; it keeps running.
    #[error("plugin {plugin}: {error}")]
    Guest {
        /// The plugin's name.
        plugin: String,
        /// What it said.
        error: GuestError,
    },
    /// The call trapped; the plugin is now quarantined and its sketches are gone.
    #[error("plugin {plugin} quarantined ({kind}): {detail}")]
    Trapped {
        /// The plugin's name.
        plugin: String,
        /// The kind of trap.
        kind: TrapKind,
        /// The trap message, and the guest's stderr (a panic message) when it wrote one.
        detail: String,
    },
    /// The plugin was quarantined by an earlier trap, or the sketch belongs to an
    /// instance that is gone.
    #[error("plugin {plugin} is quarantined; reload the configuration to load it again")]
    Quarantined {
        /// The plugin's name.
        plugin: String,
    },
}
