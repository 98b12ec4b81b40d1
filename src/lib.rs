//! mysql-webhook's shells: everything that does IO around the pure core
//! (`mysql_webhook_core`, in `src/core/`). ARCHITECTURE.md has the map; in short:
//!
//! - [`server`]: the HTTPS admission webhook (axum over rustls), its TLS reloading and draining;
//! - [`controller`]: the companion controller (kube-runtime, server-side apply);
//! - [`audit`]: the policies on what already runs, PolicyReports and Events;
//! - [`policy`]: the WebAssembly policy host (wasmtime), `policies.yaml` and reloads;
//! - [`scale`]: finding the parent StatefulSet of a Scale in the cluster;
//! - [`namespaces`]: namespace labels for the policies' scopes, from a watch cache;
//! - [`cli`]: the command line and the offline commands (`check`);
//! - [`certs`], [`metrics`], [`telemetry`]: certificates, Prometheus metrics, logs.
//!
//! Each shell parses, calls the core, and carries out what it decided.

// Denied, not forbidden: loading a precompiled policy is the one unsafe call (policy::host).
#![deny(unsafe_code)]

pub mod audit;
pub mod backups;
pub mod certs;
pub mod cli;
pub mod controller;
pub mod member_tls;
pub mod metrics;
pub mod namespaces;
pub mod policy;
pub mod scale;
pub mod server;
pub mod telemetry;
pub mod watch_cache;

use mysql_webhook_core::companions::Credentials;

/// New passwords for a credentials Secret, from the OS's cryptographic generator: the one source
/// of randomness for the controller and `mutate --with-secret`.
pub fn new_credentials() -> Credentials {
    Credentials::generate(&mut os_rng())
}

/// The OS's cryptographic generator, for passwords.
pub fn os_rng() -> rand::rand_core::UnwrapErr<rand::rngs::OsRng> {
    use rand::TryRngCore;
    rand::rngs::OsRng.unwrap_err()
}
