//! A watch cache of cluster objects the shells read on every request, kept current by a
//! kube-runtime reflector in the background (StatefulSets for scale requests in `scale` and the
//! audit in `audit`, Namespaces for policy scopes in `namespaces`): one way of starting and
//! logging them.

use std::fmt::Debug;
use std::hash::Hash;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

/// A cache of the objects of `api` that `config` selects, filled by a reflector that runs until
/// the process ends and retries with backoff; `what` names it in the log when the watch fails.
pub fn spawn<K>(api: Api<K>, config: watcher::Config, what: &'static str) -> Store<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff().touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::debug!(%error, "the {what} watch failed; retrying");
            }
        }
    });
    reader
}
