//! The pure core of mysql-webhook: everything decided about a StatefulSet, with no IO, no async
//! and no clock, so that the webhook, the controller, the CLI and the policy SDK share one
//! implementation of every rule (ARCHITECTURE.md, "Invariants").
//!
//! The path of an object: [`plan`] reads and validates the annotations into a [`Plan`];
//! [`expand`] builds the replicated pattern (with the shell scripts of [`scripts`] and the
//! per-server facts of [`flavor`]); [`companions`] renders the objects beside it; [`mutate`]
//! turns the expansion into the minimal JSON Patch (written by [`patch`]); [`admission`] decides what `/mutate` and
//! `/validate` answer for a review; [`manifests`] and [`yaml`] do the same for the CLI's
//! documents; [`scope`] decides which policies judge which StatefulSet; [`backup_jobs`] what a finished
//! backup Job means; [`audit`] what the audit of running StatefulSets reports, and when. The shared
//! parsers: [`quantity`], [`image`], [`names`].

#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod backup_jobs;
pub mod companions;
pub mod consts;
pub mod expand;
pub mod flavor;
pub mod image;
pub mod manifests;
pub mod mutate;
pub mod names;
pub mod patch;
pub mod plan;
pub mod policy_request;
pub mod quantity;
pub mod scope;
pub mod scripts;
pub mod view;
pub mod yaml;

pub use mutate::{MutateError, Mutation, Operation, mutate, mutate_statefulset};
pub use plan::{Plan, PlanError, plan};
