//! The companion controller: for every StatefulSet labelled `mysql-webhook.io/managed=true`, it
//! server-side applies the ConfigMap, the headless and read Services and the
//! PodDisruptionBudget the expansion needs, and the backup CronJob when one is scheduled (pure
//! builders in `companions`), each with a controller ownerReference so garbage collection
//! deletes them with the StatefulSet. It creates the credentials Secret and the members' TLS
//! Secret when they are missing, renews the TLS certificate before it expires, or applies a
//! cert-manager Certificate instead; a password or a key is never overwritten or logged; a
//! credentials Secret it made before a password existed (the exporter's) gets that key added,
//! conditionally on the version read, the others untouched. The NetworkPolicy of the clone port
//! is applied like the other companions. The
//! Secrets are owned by the StatefulSet only when its claims are deleted with it
//! (`persistentVolumeClaimRetentionPolicy.whenDeleted: Delete`): otherwise the retained data
//! outlives the StatefulSet and still needs them. Secrets are not watched (that would need list
//! on every Secret in the cluster): a deleted one comes back at the next periodic resync, which
//! also renews.
//!
//! It also watches the Jobs of the backup CronJobs: the time of each StatefulSet's last good
//! backup is a metric, and each finished Job gets one Event on its StatefulSet (the decisions
//! are `core::backup_jobs`).
//!
//! Several webhook replicas may reconcile the same StatefulSet at once: server-side apply of the
//! same desired state with one field manager is idempotent, and a Secret created concurrently
//! by another replica is a 409 that is taken as success, so they converge without fighting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::member_tls::{self, MemberTlsError};
use crate::metrics::Metrics;
use mysql_webhook_core::backup_jobs::backup_job_outcome;
use mysql_webhook_core::companions::{
    Companions, TlsIdentity, credentials_secret, member_dns_names, missing_credentials, tls_secret,
};
use mysql_webhook_core::consts::{
    CERT_MANAGER_API_VERSION, FIELD_MANAGER, LABEL_BACKUP, LABEL_MANAGED, LABEL_MANAGED_BY, MANAGED_BY,
};
use mysql_webhook_core::plan::{Plan, PlanError, plan};

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
    #[error("cannot create or update Secret {name}: {source}")]
    Secret { name: String, source: kube::Error },
    #[error("cannot make or renew the TLS identity in Secret {name}: {source}")]
    Tls { name: String, source: MemberTlsError },
    #[error("cannot report backup Job {name}: {source}")]
    BackupJob { name: String, source: kube::Error },
}

impl Error {
    /// The label of the failure counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::NotStored => "not_stored",
            Error::Apply { .. } => "apply",
            Error::Secret { .. } => "secret",
            Error::Tls { .. } => "tls",
            Error::BackupJob { .. } => "backup_job",
        }
    }

    /// Worth retrying soon (the API server is busy, unreachable, or another writer raced us),
    /// as opposed to waiting for the user to change something.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::NotStored | Error::Tls { .. } => false,
            Error::Apply { source, .. } | Error::Secret { source, .. } | Error::BackupJob { source, .. } => {
                is_transient(source)
            }
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
    let backup_jobs = watch_backup_jobs(client.clone(), context.clone());
    let controller = Controller::new(Api::<StatefulSet>::all(client.clone()), managed)
        .owns(Api::<ConfigMap>::all(client.clone()), companions.clone())
        .owns(Api::<Service>::all(client.clone()), companions.clone())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), companions.clone())
        .owns(Api::<NetworkPolicy>::all(client.clone()), companions.clone())
        .owns(Api::<CronJob>::all(client.clone()), companions)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        });
    // The Jobs' watch ends with the controller (its shutdown is the graceful one).
    tokio::select! {
        () = controller => {}
        () = backup_jobs => {}
    }
}

/// Watches the backup Jobs (labelled `mysql-webhook.io/backup-of`) in every namespace and
/// reports each as it is seen; a Job seen again (a relist, a restart) updates the metric and is
/// not reported twice.
async fn watch_backup_jobs(client: Client, context: Arc<Context>) {
    let jobs = watcher(Api::<Job>::all(client), watcher::Config::default().labels(LABEL_BACKUP));
    jobs.default_backoff()
        .applied_objects()
        .for_each(|job| {
            let context = context.clone();
            async move {
                match job {
                    Ok(job) => {
                        if let Err(error) = report_backup_job(&job, &context).await {
                            tracing::warn!(%error, "backup Job not reported");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "backup Jobs watch"),
                }
            }
        })
        .await;
}

/// One backup Job as the watch delivers it: a success moves the StatefulSet's last-good-backup
/// metric; a finished Job not reported yet is marked reported (conditionally: a 409 means
/// another controller did it) and then gets its Event on the StatefulSet, so once per Job.
pub async fn report_backup_job(job: &Job, context: &Context) -> Result<(), Error> {
    let Some(outcome) = backup_job_outcome(job) else { return Ok(()) };
    if outcome.succeeded {
        context.metrics.record_backup_success(&outcome.namespace, &outcome.statefulset, outcome.finished);
    }
    if outcome.reported {
        return Ok(());
    }
    let failed = |source| Error::BackupJob { name: outcome.job.clone(), source };
    let statefulsets = Api::<StatefulSet>::namespaced(context.client.clone(), &outcome.namespace);
    let Some(sts) = statefulsets.get_opt(&outcome.statefulset).await.map_err(failed)? else {
        // Deleted: its CronJob and Jobs go with it.
        return Ok(());
    };
    let jobs = Api::<Job>::namespaced(context.client.clone(), &outcome.namespace);
    let patch = Patch::Merge(outcome.reported_patch(job));
    match jobs.patch(&outcome.job, &PatchParams::default(), &patch).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => return Ok(()),
        Err(source) => return Err(failed(source)),
    }
    context.metrics.record_backup_job(&outcome.namespace, &outcome.statefulset, outcome.succeeded);
    let event = Event {
        type_: if outcome.succeeded { EventType::Normal } else { EventType::Warning },
        reason: outcome.event_reason().into(),
        note: Some(outcome.event_note()),
        action: "Backup".into(),
        secondary: Some(job.object_ref(&())),
    };
    publish(context, &sts, event).await;
    Ok(())
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
    apply(client, &namespace, &owner, companions.network_policy).await?;
    if let Some(cron_job) = companions.backup_cron_job {
        apply(client, &namespace, &owner, cron_job).await?;
    }

    if let Some(certificate) = companions.certificate {
        apply_certificate(client, &namespace, &owner, certificate).await?;
    }
    let owned = secrets_owned(sts);
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    let credentials = || Ok(credentials_secret(&plan, &crate::new_credentials()));
    let complete = |secret: &Secret| missing_credentials(secret, &mut crate::os_rng());
    match ensure_secret(&secrets, &plan.secret, &owner, owned, credentials, complete).await? {
        Ensured::Created => {
            let note = format!(
                "Secret {} created with generated root, replication and exporter passwords",
                plan.secret
            );
            publish(context, sts, normal("CredentialsCreated", note)).await;
        }
        Ensured::Completed(keys) => {
            let note = format!(
                "Secret {}: generated {} added; the existing keys are unchanged",
                plan.secret,
                keys.join(", ")
            );
            publish(context, sts, normal("CredentialsCompleted", note)).await;
        }
        Ensured::Unchanged => {}
    }
    if plan.tls_issuer.is_none() {
        let identity = || {
            member_tls::member_identity(&plan.service_name, member_dns_names(&plan))
                .map(|identity| tls_secret(&plan, &identity))
                .map_err(|source| Error::Tls { name: plan.tls_secret.clone(), source })
        };
        let nothing_to_add = |_: &Secret| BTreeMap::new();
        if ensure_secret(&secrets, &plan.tls_secret, &owner, owned, identity, nothing_to_add).await?
            == Ensured::Created
        {
            let note =
                format!("Secret {} created with a new CA and the members' certificate", plan.tls_secret);
            publish(context, sts, normal("TlsCreated", note)).await;
        } else if let Some(renewal) = renew_tls(&secrets, &plan).await? {
            let note = format!("Secret {}: members' certificate renewed ({renewal:?})", plan.tls_secret);
            publish(context, sts, normal("TlsRenewed", note)).await;
        }
    }
    Ok(Action::requeue(RESYNC_AFTER))
}

/// The Secrets live as long as the data: owned (deleted with the StatefulSet) only when the
/// claims are deleted with it. With `Retain`, the default, a StatefulSet re-created on the
/// retained claims finds the passwords its data was initialised with.
pub fn secrets_owned(sts: &StatefulSet) -> bool {
    let policy = sts.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    policy.and_then(|p| p.when_deleted.as_deref()) == Some("Delete")
}

/// What [`ensure_secret`] did.
#[derive(Debug, PartialEq, Eq)]
enum Ensured {
    Created,
    /// These keys were missing and were added.
    Completed(Vec<String>),
    Unchanged,
}

/// Creates Secret `name` when it is missing, with `owner` when `owned`. An existing one made by
/// the controller gets its ownership brought in line with `owned` and the keys `complete` says
/// it lacks (one made by you is left alone); an existing key is never overwritten. A create
/// answered 409 (another replica made it meanwhile) is taken as success.
async fn ensure_secret(
    secrets: &Api<Secret>,
    name: &str,
    owner: &OwnerReference,
    owned: bool,
    make: impl FnOnce() -> Result<Secret, Error>,
    complete: impl FnOnce(&Secret) -> BTreeMap<String, ByteString>,
) -> Result<Ensured, Error> {
    let failed = |source| Error::Secret { name: name.to_owned(), source };
    let Some(existing) = secrets.get_opt(name).await.map_err(failed)? else {
        let mut secret = make()?;
        secret.metadata.owner_references = owned.then(|| vec![owner.clone()]);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        return match secrets.create(&params, &secret).await {
            Ok(_) => {
                tracing::info!(secret = %name, owned, "Secret created");
                Ok(Ensured::Created)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Ensured::Unchanged),
            Err(source) => Err(failed(source)),
        };
    };
    let made_by_us = existing.labels().get(LABEL_MANAGED_BY).is_some_and(|v| v == MANAGED_BY);
    if !made_by_us {
        return Ok(Ensured::Unchanged);
    }
    let added = complete(&existing);
    let Some(patch) = secret_patch(&existing, owner, owned, &added) else { return Ok(Ensured::Unchanged) };
    secrets.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(failed)?;
    let keys: Vec<String> = added.into_keys().collect();
    // The key names only: never a value.
    tracing::info!(secret = %name, owned, added = ?keys, "Secret updated");
    Ok(if keys.is_empty() { Ensured::Unchanged } else { Ensured::Completed(keys) })
}

/// The merge patch that brings a Secret the controller made in line: its ownership
/// ([`ownership_patch`]) and the keys `added` it lacked. Conditional on the resourceVersion read,
/// so a key someone added meanwhile is never overwritten (the patch is a 409, retried, and the
/// Secret read again); a merge patch writes only the keys it names, so the existing ones are
/// untouched. `None` when there is nothing to do.
pub fn secret_patch(
    secret: &Secret,
    owner: &OwnerReference,
    owned: bool,
    added: &BTreeMap<String, ByteString>,
) -> Option<serde_json::Value> {
    let ownership = ownership_patch(secret, owner, owned);
    if added.is_empty() {
        return ownership;
    }
    let mut patch = ownership.unwrap_or_else(
        || serde_json::json!({"metadata": {"resourceVersion": secret.metadata.resource_version}}),
    );
    patch["data"] = serde_json::to_value(added).expect("Secret data serialises");
    Some(patch)
}

/// The merge patch that makes `owner` own `secret` or not, conditional on the resourceVersion it
/// was computed from (a concurrent change is a 409, retried); `None` when it is already so.
pub fn ownership_patch(secret: &Secret, owner: &OwnerReference, owned: bool) -> Option<serde_json::Value> {
    let mut references = secret.metadata.owner_references.clone().unwrap_or_default();
    let position = references.iter().position(|r| r.uid == owner.uid);
    match (owned, position) {
        (true, None) => references.push(owner.clone()),
        (false, Some(index)) => {
            references.remove(index);
        }
        _ => return None,
    }
    Some(serde_json::json!({
        "metadata": {"resourceVersion": secret.metadata.resource_version, "ownerReferences": references}
    }))
}

/// Renews the members' certificate in Secret `<name>-tls` when it is due (a Secret without the
/// CA's key, made by cert-manager or by hand, is left to whoever made it). Replaced with the
/// resourceVersion read, so a concurrent renewal by another replica is a 409, retried.
async fn renew_tls(secrets: &Api<Secret>, plan: &Plan) -> Result<Option<member_tls::Renewal>, Error> {
    let name = &plan.tls_secret;
    let failed = |source| Error::Secret { name: name.clone(), source };
    let tls = |source| Error::Tls { name: name.clone(), source };
    let Some(existing) = secrets.get_opt(name).await.map_err(failed)? else { return Ok(None) };
    let Some(identity) = TlsIdentity::from_secret(&existing) else { return Ok(None) };
    let Some(renewal) = member_tls::renewal_due(&identity, time::OffsetDateTime::now_utc()).map_err(tls)?
    else {
        return Ok(None);
    };
    let renewed =
        member_tls::renew(&identity, renewal, &plan.service_name, member_dns_names(plan)).map_err(tls)?;
    let mut secret = existing;
    secret.data = tls_secret(plan, &renewed).data;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    secrets.replace(name, &params, &secret).await.map_err(failed)?;
    tracing::info!(secret = %name, ?renewal, "members' TLS certificate renewed");
    Ok(Some(renewal))
}

/// Server-side apply of the cert-manager Certificate, owned by the StatefulSet (the Secret
/// cert-manager makes is not owned by the Certificate by default, so it stays).
async fn apply_certificate(
    client: &Client,
    namespace: &str,
    owner: &OwnerReference,
    certificate: serde_json::Value,
) -> Result<(), Error> {
    let resource = ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: CERT_MANAGER_API_VERSION.into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    };
    let mut object: DynamicObject =
        serde_json::from_value(certificate).expect("the Certificate is an object");
    let name = object.name_any();
    object.metadata.owner_references = Some(vec![owner.clone()]);
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .map(drop)
        .map_err(|source| Error::Apply { kind: "Certificate", name, source })
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
