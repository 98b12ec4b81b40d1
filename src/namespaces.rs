//! The labels of namespaces, for the policies' `namespaceSelector`s (policies/README.md): an
//! AdmissionReview names the namespace but doesn't carry its labels, so `serve` keeps a watch
//! cache of Namespaces (a kube-runtime reflector, like the StatefulSets of `scale`). Needs
//! `list` and `watch` on `namespaces` (deploy/base/rbac.yaml).
//!
//! A namespace the cache hasn't seen yet has unknown labels: the core's `scope::decide` then
//! keeps every policy in force and allows no exception by selector.

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};

use mysql_webhook_core::scope::{Labels, namespace_labels};

/// Namespace labels from a watch cache.
pub struct NamespaceLabels {
    cache: Store<Namespace>,
}

impl NamespaceLabels {
    /// Labels from `cache`, filled by its writer (tests fill it by hand).
    pub fn new(cache: Store<Namespace>) -> NamespaceLabels {
        NamespaceLabels { cache }
    }

    /// A cache with its reflector running until the process ends.
    pub fn start(client: Client) -> NamespaceLabels {
        let api = Api::<Namespace>::all(client);
        NamespaceLabels::new(crate::watch_cache::spawn(
            api,
            watcher::Config::default(),
            "Namespace (policy scopes)",
        ))
    }

    /// The labels of namespace `name`, with `kubernetes.io/metadata.name`; `None` when the
    /// cache doesn't have it.
    pub fn labels(&self, name: &str) -> Option<Labels> {
        let namespace = self.cache.get(&ObjectRef::new(name))?;
        Some(namespace_labels(name, namespace.metadata.labels.as_ref()))
    }
}
