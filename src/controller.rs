//! The companion controller: for every StatefulSet labelled `mysql-webhook.io/managed=true`, it
//! server-side applies the ConfigMap, the headless and read Services and the
//! PodDisruptionBudget the expansion needs (pure builders in `companions`), each with a
//! controller ownerReference so garbage collection deletes them with the StatefulSet, and
//! creates the credentials Secret when it is missing (never read, overwritten or logged). Secrets
//! are not watched (that would need list on every Secret in the cluster): a deleted one comes
//! back at the next periodic resync.
//!
//! Several webhook replicas may reconcile the same StatefulSet at once: server-side apply of the
//! same desired state with one field manager is idempotent, and a Secret created concurrently
//! by another replica is a 409 that is taken as success, so they converge without fighting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;
use mysql_webhook_core::companions::{Companions, credentials_secret};
use mysql_webhook_core::consts::{FIELD_MANAGER, LABEL_MANAGED, LABEL_MANAGED_BY, MANAGED_BY};
use mysql_webhook_core::plan::{PlanError, plan};

/// How soon a transient failure is retried.
const RETRY_AFTER: Duration = Duration::from_secs(15);
/// A periodic re-check even without changes, so a companion deleted by hand comes back.
const RESYNC_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The annotations can't be planned: the user must fix the StatefulSet.
    #[error("the StatefulSet can't be expanded: {0}")]
    Invalid(#[from] PlanError),
    #[error("the StatefulSet has no uid or namespace yet")]
    NotStored,
    #[error("cannot apply {kind} {name}: {source}")]
    Apply { kind: &'static str, name: String, source: kube::Error },
    #[error("cannot create Secret {name}: {source}")]
    Secret { name: String, source: kube::Error },
}

impl Error {
    /// The label of the failure counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::NotStored => "not_stored",
            Error::Apply { .. } => "apply",
            Error::Secret { .. } => "secret",
        }
    }

    /// Worth retrying soon (the API server is busy, unreachable, or another writer raced us),
    /// as opposed to waiting for the user to change something.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::NotStored => false,
            Error::Apply { source, .. } | Error::Secret { source, .. } => is_transient(source),
        }
    }
}

fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 409 || status.code == 429 || status.code >= 500,
        // Connection failures, timeouts, TLS: the API server may be back in a moment.
        _ => true,
    }
}

/// What the reconciler needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Context {
        let reporter = Reporter { controller: MANAGED_BY.into(), instance: std::env::var("POD_NAME").ok() };
        Context { recorder: Recorder::new(client.clone(), reporter), client, metrics }
    }
}

/// Is a cluster reachable (in-cluster configuration or a kubeconfig, and an API server that
/// answers)? `None`, with the reason logged once, when not.
pub async fn connect() -> Option<Client> {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::info!(%error, "no Kubernetes cluster configured: no controller, no scale lookup and no namespace labels (a policy limited by a namespaceSelector runs everywhere), the webhook runs alone");
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(version)) => {
            tracing::info!(version = %version.git_version, "Kubernetes API server reachable: the controller (unless --no-controller), the scale lookup and the namespace labels use it");
            Some(client)
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "the Kubernetes API server doesn't answer: no controller, no scale lookup and no namespace labels (a policy limited by a namespaceSelector runs everywhere), the webhook runs alone");
            None
        }
        Err(_) => {
            tracing::warn!(
                "the Kubernetes API server doesn't answer within 5 s: no controller, no scale lookup and no namespace labels (a policy limited by a namespaceSelector runs everywhere), the webhook runs alone"
            );
            None
        }
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED}=true"));
    let companions = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let context = Arc::new(Context::new(client.clone(), metrics));
    Controller::new(Api::<StatefulSet>::all(client.clone()), managed)
        .owns(Api::<ConfigMap>::all(client.clone()), companions.clone())
        .owns(Api::<Service>::all(client.clone()), companions.clone())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), companions)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        })
        .await;
}

/// Brings the companions of one StatefulSet to their desired state.
pub async fn reconcile(sts: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = apply_companions(&sts, &context).await;
    context.metrics.record_reconcile(started, result.as_ref().err().map(Error::metric_label));
    if let Err(error) = &result {
        let event = Event {
            type_: EventType::Warning,
            reason: if error.is_transient() { "ReconcileRetrying".into() } else { "ReconcileFailed".into() },
            note: Some(error.to_string()),
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(&context, &sts, event).await;
    }
    result
}

/// Transient errors are retried soon; permanent ones wait for the StatefulSet to change (the
/// Warning event already told the user what to fix).
pub fn error_policy(sts: Arc<StatefulSet>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(statefulset = %sts.name_any(), namespace = sts.namespace().unwrap_or_default(), %error, "reconcile failed");
    if error.is_transient() { Action::requeue(RETRY_AFTER) } else { Action::await_change() }
}

async fn apply_companions(sts: &StatefulSet, context: &Context) -> Result<Action, Error> {
    let namespace = sts.namespace().ok_or(Error::NotStored)?;
    // A StatefulSet that lost its annotation keeps its label until the next expansion: nothing
    // new is made, and what exists is left to the garbage collector with the StatefulSet.
    let Some(plan) = plan(sts, Some(&namespace))? else { return Ok(Action::await_change()) };
    let owner = sts.controller_owner_ref(&()).filter(|o| !o.uid.is_empty()).ok_or(Error::NotStored)?;
    let companions = Companions::for_plan(&plan);
    let client = &context.client;
    apply(client, &namespace, &owner, companions.config_map).await?;
    apply(client, &namespace, &owner, companions.headless_service).await?;
    apply(client, &namespace, &owner, companions.read_service).await?;
    apply(client, &namespace, &owner, companions.pod_disruption_budget).await?;

    // Create-only, and an existing Secret is a 409: the controller needs no permission to read
    // Secrets, and an existing password is never read, overwritten or logged.
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    let mut secret = credentials_secret(&plan, &crate::new_credentials());
    secret.metadata.owner_references = Some(vec![owner]);
    match secrets
        .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &secret)
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %plan.secret, %namespace, "credentials Secret created");
            let note =
                format!("Secret {} created with generated root and replication passwords", plan.secret);
            publish(context, sts, normal("CredentialsCreated", note)).await;
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(source) => return Err(Error::Secret { name: plan.secret.clone(), source }),
    }
    Ok(Action::requeue(RESYNC_AFTER))
}

/// Server-side apply of one companion, owned by the StatefulSet.
async fn apply<K>(
    client: &Client,
    namespace: &str,
    owner: &OwnerReference,
    mut object: K,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.name_any();
    object.meta_mut().owner_references = Some(vec![owner.clone()]);
    let api = Api::<K>::namespaced(client.clone(), namespace);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .map(drop)
        .map_err(|source| Error::Apply { kind: <K as k8s_openapi::Resource>::KIND, name, source })
}

fn normal(reason: &str, note: String) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// Events are best effort: failing to record one must not fail the reconcile.
async fn publish(context: &Context, sts: &StatefulSet, event: Event) {
    if let Err(error) = context.recorder.publish(&event, &sts.object_ref(&())).await {
        tracing::debug!(%error, "event not recorded");
    }
}
