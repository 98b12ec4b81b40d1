//! Write mysql-webhook topology policies in Rust.
//!
//! A policy is a WebAssembly component implementing the world `mysql-webhook:policy@0.2.0` in
//! `policies/wit/policy.wit`. This crate owns everything between that world and a policy's
//! rules: the bindings, the [`export_policy!`] macro that exports a [`Policy`], the parsed
//! [`Request`] (with the StatefulSet as a [`view`] of what topology policies read, which is what
//! the host sends, and the whole object on demand), the [`Verdict`]
//! builders, Kubernetes [`quantity`] and label [`selector`] helpers, and [`testing`] to run a
//! policy natively through the same code path as the wasm exports.
//!
//! Build a policy crate as `crate-type = ["cdylib", "rlib"]` with
//! `cargo build --release --target wasm32-wasip2`; the cdylib is the component. The export glue
//! is emitted only for `wasm32`, so `cargo test` runs the same crate natively.
//!
//! # Example
//!
//! ```
//! use mysql_webhook_policy::{Policy, Request, Verdict, export_policy, testing};
//! use serde::Deserialize;
//!
//! /// Caps the number of MySQL members.
//! pub struct MaxReplicas;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
//! pub struct Settings {
//!     /// The largest replica count accepted.
//!     max: i32,
//! }
//!
//! impl Default for Settings {
//!     fn default() -> Self {
//!         Self { max: 5 }
//!     }
//! }
//!
//! impl Policy for MaxReplicas {
//!     type Settings = Settings;
//!
//!     fn validate_settings(settings: &Settings) -> Result<(), String> {
//!         if settings.max < 1 { Err(format!("max ({}) must be at least 1", settings.max)) } else { Ok(()) }
//!     }
//!
//!     fn validate(request: &Request, settings: &Settings) -> Verdict {
//!         let replicas = request.replicas();
//!         if replicas > settings.max {
//!             return Verdict::deny(format!("spec.replicas is {replicas}, above the maximum of {}", settings.max));
//!         }
//!         Verdict::allow()
//!     }
//! }
//!
//! export_policy!(MaxReplicas);
//!
//! fn main() {
//!     let e = testing::validate_settings::<MaxReplicas>(r#"{"max": 0}"#).unwrap_err();
//!     assert_eq!(e, "settings: max (0) must be at least 1");
//!     let verdict = testing::validate::<MaxReplicas>(&testing::scale(testing::expanded_statefulset(), 7), "{}");
//!     assert_eq!(verdict.message(), "spec.replicas is 7, above the maximum of 5");
//! }
//! ```

// deny, not forbid: the generated bindings module below must opt out.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod adapter;
pub mod arena;
pub mod quantity;
mod request;
pub mod selector;
pub mod testing;
mod verdict;

pub use k8s_openapi;
/// Image references, parsed as the webhook parses them (shared with it).
pub use mysql_webhook_core::image;
/// Kubernetes name rules, as the webhook checks them (shared with it).
pub use mysql_webhook_core::names;
/// The StatefulSet as the host sends it, cut to what topology policies read (shared with it).
pub use mysql_webhook_core::view;
pub use request::{ContainerImage, ContainerKind, Operation, Request, Whole};
pub use verdict::Verdict;
pub use view::{ContainerView, PodSpecView, StatefulSetView};

/// The generated bindings of the `policy` world; used by [`export_policy!`], not by policies.
#[doc(hidden)]
#[allow(unsafe_code)] // wit-bindgen's ABI glue; none of it is hand-written here.
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit/policy.wit",
        pub_export_macro: true,
        default_bindings_module: "::mysql_webhook_policy::bindings",
    });
}

/// A policy: settings it accepts, and a verdict on each request.
pub trait Policy {
    /// The policy's settings, from the `settings` of its entry in `policies.yaml`. `Default` is
    /// what applies when the user gave none; use `#[serde(deny_unknown_fields, default)]` so a
    /// misspelt setting is refused instead of ignored.
    type Settings: serde::de::DeserializeOwned + Default;

    /// Checks settings beyond their shape (bounds in order, quantities parseable), once when the
    /// host loads the policy and before every [`Policy::validate`].
    ///
    /// # Errors
    ///
    /// Why the settings are refused, naming the setting; the SDK prefixes "settings: ".
    fn validate_settings(_settings: &Self::Settings) -> Result<(), String> {
        Ok(())
    }

    /// Decides one admission request. The object is always an expanded apps/v1 StatefulSet.
    fn validate(request: &Request, settings: &Self::Settings) -> Verdict;
}

/// Exports a [`Policy`] as the component's `validate-settings` and `validate`.
///
/// Invoke once, at the root of the policy crate. Settings and requests are parsed by the SDK;
/// any parse failure becomes an `Err` from `validate-settings` or a deny from `validate` that
/// says what was wrong.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        pub struct __MysqlWebhookPolicyExport;

        impl $crate::bindings::exports::mysql_webhook::policy::validator::Guest for __MysqlWebhookPolicyExport {
            fn validate_settings(settings: String) -> Result<(), String> {
                $crate::adapter::validate_settings::<$policy>(&settings)
            }

            fn validate(
                view: String,
                settings: String,
            ) -> $crate::bindings::exports::mysql_webhook::policy::validator::Verdict {
                let whole = $crate::Whole::Host($crate::bindings::mysql_webhook::policy::review::request);
                $crate::adapter::validate::<$policy>(&view, &settings, whole).into()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__MysqlWebhookPolicyExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    /// The policies README shows the crate example's policy; this keeps the two from drifting.
    #[test]
    fn the_readme_example_is_the_crate_example() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```rust\n").expect("a rust block in the README") + "```rust\n".len();
        let shown = &readme[start..start + readme[start..].find("```").expect("the block's end")];
        let crate_docs: String = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
            .collect();
        let example = crate_docs.split("```\n").nth(1).expect("the example");
        let policy = example.split("\nfn main()").next().expect("the policy part");
        let shown_use = "use mysql_webhook_policy::{Policy, Request, Verdict, export_policy};";
        let example_use = "use mysql_webhook_policy::{Policy, Request, Verdict, export_policy, testing};";
        assert_eq!(shown.trim(), policy.replace(example_use, shown_use).trim());
    }
}
