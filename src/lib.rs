//! mysql-webhook: a Kubernetes admission webhook that expands a StatefulSet annotated
//! `mysql-webhook.io/replicated: "true"` into a replicated MySQL or MariaDB cluster.
//!
//! The domain core is pure (no IO, no async): [`plan`] reads and validates the annotations,
//! [`expand`] builds the pattern, [`companions`] the objects beside it, and [`mutate`] ties them
//! into the minimal JSON Patch the webhook returns. [`policy`] runs the WebAssembly topology
//! policies on the expanded objects. The CLI and the server are thin shells.

// Denied, not forbidden: loading a precompiled policy is the one unsafe call (policy::host).
#![deny(unsafe_code)]

pub mod backups;
pub mod certs;
pub mod check;
pub mod cli;
pub mod companions;
pub mod consts;
pub mod controller;
pub mod expand;
pub mod flavor;
pub mod manifests;
pub mod metrics;
pub mod mutate;
pub mod plan;
pub mod policy;
pub mod quantity;
pub mod scale;
pub mod scripts;
pub mod server;
pub mod telemetry;
pub mod yaml;

pub use mutate::{MutateError, Mutation, Operation, mutate, mutate_statefulset};
pub use plan::{Invalid, Plan, plan};
