//! WebAssembly topology policies (policies/README.md): the configuration ([`config`]), the sandbox
//! ([`host`]), a loaded set and its merged verdicts ([`set`]) (the request the policies see is
//! the core's `policy_request`), and [`Policies`], the live set that `serve` evaluates and reloads when
//! `policies.yaml` or a module it names changes. A bad new set is refused and the last good one
//! keeps serving.

pub mod builtin;
pub mod config;
mod engine;
pub mod host;
pub mod set;
pub mod workers;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use config::{Failure, Mode, PolicyConfig};
pub use host::{Fault, Host, World};
pub use mysql_webhook_core::policy_request::PolicyInput;
pub use set::{Evaluation, Finding, FindingResult, PolicySet, Target};

use crate::metrics::Metrics;

/// How often `serve` looks for a changed `policies.yaml` or module.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Why a policy set can't be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy configuration {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Set(#[from] set::SetError),
    #[error(transparent)]
    Host(#[from] host::LoadError),
}

/// Where the set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No `policies.yaml`: the built-in policies with their default settings.
    Builtins,
    File(PathBuf),
}

/// The live policy set of a process.
pub struct Policies {
    host: Host,
    source: Source,
    current: RwLock<Arc<PolicySet>>,
    /// Fingerprint of the files behind the last load attempted, good or bad: a refused set is
    /// not retried until something changes again.
    seen: Mutex<u64>,
}

impl Policies {
    /// Loads the set from `source`. Blocking (files, compiling).
    pub fn load(host: Host, source: Source) -> Result<Policies, PolicyError> {
        let (configs, fingerprint) = read(&source);
        let set = PolicySet::load(&host, &configs?)?;
        Ok(Policies { host, source, current: RwLock::new(Arc::new(set)), seen: Mutex::new(fingerprint) })
    }

    /// The set serving now.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.read().expect("never poisoned").clone()
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Runs the current set on `request`. Blocking.
    pub fn evaluate(&self, request: &PolicyInput, metrics: Option<&Metrics>) -> Evaluation {
        self.current().evaluate(&self.host, request, metrics)
    }

    /// Runs the current set's policies whose scope takes in `target` on `request`. Blocking.
    pub fn evaluate_scoped(
        &self,
        request: &PolicyInput,
        target: Target<'_>,
        metrics: Option<&Metrics>,
    ) -> Evaluation {
        self.current().evaluate_scoped(&self.host, request, Some(target), metrics)
    }

    /// Loads the set again when the configuration or a module file changed since the last
    /// attempt; `None` when nothing changed. A refused set leaves the current one in place.
    /// Blocking.
    pub fn reload_if_changed(&self) -> Option<Result<(), PolicyError>> {
        let (configs, fingerprint) = read(&self.source);
        {
            let mut seen = self.seen.lock().expect("never poisoned");
            if *seen == fingerprint {
                return None;
            }
            *seen = fingerprint;
        }
        let result = configs.and_then(|configs| Ok(PolicySet::load(&self.host, &configs)?));
        Some(result.map(|set| {
            self.host.retain(&set.digests());
            *self.current.write().expect("never poisoned") = Arc::new(set);
        }))
    }

    /// [`Self::reload_if_changed`], logged and counted.
    pub fn reload_and_report(&self, metrics: &Metrics) {
        match self.reload_if_changed() {
            None => {}
            Some(Ok(())) => {
                let set = self.current();
                tracing::info!(policies = ?set.names(), "policy set reloaded");
                metrics.record_policy_reload(true, set.names().len());
            }
            Some(Err(error)) => {
                tracing::error!(%error, "new policy set refused; the last good set keeps serving");
                metrics.record_policy_reload(false, self.current().names().len());
            }
        }
    }
}

/// The configurations of `source` and a fingerprint of every file behind them: the
/// configuration's content and each module file's size, modification time and inode (a
/// Kubernetes ConfigMap update swaps a symlink, which changes the inode).
fn read(source: &Source) -> (Result<Vec<PolicyConfig>, PolicyError>, u64) {
    let mut hasher = std::hash::DefaultHasher::new();
    let Source::File(path) = source else { return (Ok(config::defaults()), 0) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            source.kind().hash(&mut hasher);
            return (Err(PolicyError::Read { path: path.display().to_string(), source }), hasher.finish());
        }
    };
    text.hash(&mut hasher);
    let configs = config::parse(&text, path);
    for policy in configs.iter().flatten() {
        if let config::Module::File(module) = &policy.module {
            file_identity(module).hash(&mut hasher);
        }
    }
    (configs.map_err(PolicyError::from), hasher.finish())
}

fn file_identity(path: &Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
}

/// Where precompiled policies are kept unless `--policy-cache` says otherwise:
/// `$XDG_CACHE_HOME/mysql-webhook` or `$HOME/.cache/mysql-webhook`; with neither, no cache
/// (compiling at every start) rather than a shared temporary directory, where another user
/// could plant machine code.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("mysql-webhook"))
}
