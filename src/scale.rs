//! The parent of a `statefulsets/scale` request. `kubectl scale` sends only a Scale object
//! (replicas and a selector), so the policies would see nothing to judge; the webhook gives them
//! the parent StatefulSet with the requested replicas instead (policies/README.md).
//!
//! Parents come from a watch cache of managed StatefulSets (a kube-runtime reflector, selected
//! by label, so memory grows with managed StatefulSets only), with a GET on a miss (a
//! StatefulSet created a moment ago, before the watch saw it). Needs `get`, `list` and `watch`
//! on `statefulsets` (deploy/base/rbac.yaml).

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};

use mysql_webhook_core::consts::LABEL_MANAGED;

/// The parent can't be read: the request is answered with an error, and the webhook's
/// `failurePolicy` decides.
#[derive(Debug, thiserror::Error)]
#[error("cannot read StatefulSet {namespace}/{name}: {source}")]
pub struct LookupError {
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Finds the managed StatefulSet a Scale belongs to.
pub trait ParentLookup: Send + Sync {
    /// The StatefulSet `namespace/name` when it exists and is managed; `None` otherwise (a
    /// Scale of any other StatefulSet is not the webhook's business).
    fn managed_parent<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatefulSet>, LookupError>>;
}

/// [`ParentLookup`] against the cluster.
pub struct ClusterLookup {
    cache: Store<StatefulSet>,
    client: Client,
}

impl ClusterLookup {
    /// A lookup whose cache is filled by `cache`'s writer (tests fill it by hand).
    pub fn new(client: Client, cache: Store<StatefulSet>) -> ClusterLookup {
        ClusterLookup { cache, client }
    }

    /// A lookup with its reflector running until the process ends.
    pub fn start(client: Client) -> ClusterLookup {
        let api = Api::<StatefulSet>::all(client.clone());
        let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED}=true"));
        ClusterLookup::new(client, crate::watch_cache::spawn(api, managed, "StatefulSet (scale requests)"))
    }

    /// The watch cache of managed StatefulSets, shared with the audit.
    pub fn cache(&self) -> Store<StatefulSet> {
        self.cache.clone()
    }
}

fn is_managed(statefulset: &StatefulSet) -> bool {
    statefulset
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_MANAGED))
        .is_some_and(|v| v == "true")
}

impl ParentLookup for ClusterLookup {
    fn managed_parent<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatefulSet>, LookupError>> {
        Box::pin(async move {
            if let Some(cached) = self.cache.get(&ObjectRef::new(name).within(namespace)) {
                return Ok(Some(cached.as_ref().clone()));
            }
            let api = Api::<StatefulSet>::namespaced(self.client.clone(), namespace);
            let fetched = api.get_opt(name).await.map_err(|source| LookupError {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            })?;
            Ok(fetched.filter(is_managed))
        })
    }
}
