//! The audit of what already runs (README.md, "Audit and policy reports"): the serving policy
//! set evaluated against every managed StatefulSet when the set changes (a reload) and every
//! `--audit-interval`, through the same policy host, scopes, exceptions, settings and evaluation
//! slots as `/validate`. Each StatefulSet gets one wg-policy `PolicyReport`, owned by it and
//! replaced in place by server-side apply; an Event when its verdict changes; the metrics
//! `mysql_webhook_audit_results{policy,result}` and `mysql_webhook_audit_last_run_timestamp_seconds`.
//!
//! Admission comes first: the audit evaluates one StatefulSet at a time (at most one slot of
//! `/validate`'s), takes a slot only when no review waits for one, and is paced by a token
//! bucket. Without the PolicyReport CRD (a 404 on the write) it says so once in the log and
//! reports through Events and metrics only, trying a report again at the next round.
//!
//! What to report and when is the core's (`audit`); this module runs the policies and writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::namespaces::NamespaceLabels;
use crate::policy::{Failure, Finding, FindingResult, Mode, Policies, PolicySet, Target};
use mysql_webhook_core::admission::Judged;
use mysql_webhook_core::audit::{
    AuditResult, PolicyOutcome, TokenBucket, Verdict, annotations_outcome, audit_request, event_for,
    may_take_slot, policy_report, round_due,
};
use mysql_webhook_core::consts::{
    ANNOTATION_POLICY_EXCEPTIONS, FIELD_MANAGER, REPORT_API_VERSION, REPORT_GROUP, REPORT_KIND,
    REPORT_PLURAL, REPORT_VERSION,
};

/// StatefulSets audited per second at most, after a burst of [`BURST`]: 1,000 StatefulSets take
/// under two minutes, and the audit's API writes (one report each) stay as gentle.
pub const RATE: f64 = 10.0;
pub const BURST: u32 = 10;
/// How long the audit waits before looking again for a free slot while reviews wait.
const SLOT_WAIT: Duration = Duration::from_millis(50);
/// How often the loop looks for a reload or the end of the interval.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// `/validate`'s evaluation slots (one per core) and the count of reviews waiting for one.
#[derive(Clone)]
pub struct Slots {
    pub evaluations: Arc<Semaphore>,
    pub queued: Arc<AtomicUsize>,
}

/// Starts the audit of `serve` on the server's evaluation slots and caches, until `shutdown`.
pub fn spawn(
    client: Client,
    state: &crate::server::AppState,
    namespaces: Arc<NamespaceLabels>,
    statefulsets: Store<StatefulSet>,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let slots = Slots { evaluations: state.evaluations.clone(), queued: state.queued_evaluations.clone() };
    let auditor =
        Auditor::new(client, state.policies.clone(), state.metrics.clone(), Some(namespaces), slots);
    tracing::info!(
        interval_secs = interval.as_secs(),
        "policy audit on: at start, after every reload of the policy set and every interval"
    );
    tokio::spawn(auditor.run(statefulsets, interval, shutdown))
}

/// Why a report wasn't written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server doesn't serve `policyreports.wgpolicyk8s.io`.
    #[error("the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) is not installed")]
    CrdMissing,
    #[error("cannot apply PolicyReport {namespace}/{name}: {source}")]
    Apply { namespace: String, name: String, source: kube::Error },
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// StatefulSets evaluated (those still opted in).
    pub audited: usize,
    pub reports_written: usize,
    pub events: usize,
    /// A report write found no PolicyReport CRD: the round's other reports were not tried.
    pub crd_missing: bool,
}

/// The audit of one process.
pub struct Auditor {
    client: Client,
    recorder: Recorder,
    policies: Arc<Policies>,
    metrics: Arc<Metrics>,
    namespaces: Option<Arc<NamespaceLabels>>,
    slots: Slots,
    pace: Mutex<TokenBucket>,
    origin: Instant,
    /// The last verdict per StatefulSet uid, for Events on change only.
    verdicts: Mutex<HashMap<String, Verdict>>,
    /// The missing CRD has been logged.
    crd_missing_logged: AtomicBool,
}

impl Auditor {
    pub fn new(
        client: Client,
        policies: Arc<Policies>,
        metrics: Arc<Metrics>,
        namespaces: Option<Arc<NamespaceLabels>>,
        slots: Slots,
    ) -> Auditor {
        // The controller's Event reporter: the audit speaks as the same component.
        let recorder = crate::controller::Context::new(client.clone(), metrics.clone()).recorder;
        Auditor {
            client,
            recorder,
            policies,
            metrics,
            namespaces,
            slots,
            pace: Mutex::new(TokenBucket::new(RATE, BURST, Duration::ZERO)),
            origin: Instant::now(),
            verdicts: Mutex::default(),
            crd_missing_logged: AtomicBool::new(false),
        }
    }

    /// Audits every StatefulSet of `statefulsets` (the controller's watch cache of managed
    /// ones, once it has listed them) at the start, after every reload of the policy set, and
    /// every `interval`, until `shutdown` completes.
    pub async fn run(
        self,
        statefulsets: Store<StatefulSet>,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => return,
            ready = statefulsets.wait_until_ready() => if ready.is_err() { return },
        }
        let mut last: Option<(Arc<PolicySet>, Instant)> = None;
        loop {
            let set = self.policies.current();
            let changed = last.as_ref().is_none_or(|(audited, _)| !Arc::ptr_eq(audited, &set));
            if round_due(last.as_ref().map(|(_, at)| at.elapsed()), interval, changed) {
                let started = Instant::now();
                let managed = statefulsets.state();
                let round = tokio::select! {
                    () = &mut shutdown => return,
                    round = self.round(&set, &managed) => round,
                };
                tracing::info!(
                    audited = round.audited,
                    reports = round.reports_written,
                    events = round.events,
                    millis = started.elapsed().as_millis() as u64,
                    reload = changed,
                    "policy audit round done"
                );
                last = Some((set, started));
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }

    /// One round: `set` on each of `statefulsets`, in turn.
    pub async fn round(&self, set: &Arc<PolicySet>, statefulsets: &[Arc<StatefulSet>]) -> Round {
        let mut round = Round::default();
        let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        let mut seen = HashSet::new();
        for sts in statefulsets {
            let Some(uid) = sts.metadata.uid.clone() else { continue };
            let outcomes = match audit_request(sts) {
                Ok(None) => continue,
                Ok(Some(judged)) => match self.evaluate(set, judged).await {
                    Some(outcomes) => outcomes,
                    None => continue,
                },
                Err(invalid) => vec![annotations_outcome(&invalid)],
            };
            round.audited += 1;
            for outcome in &outcomes {
                *counts.entry((outcome.policy.clone(), outcome.result.as_str())).or_default() += 1;
            }
            let previous = self.verdicts.lock().expect("never poisoned").get(&uid).cloned();
            if let Some(event) = event_for(previous.as_ref(), &outcomes) {
                let event = Event {
                    type_: if event.warning { EventType::Warning } else { EventType::Normal },
                    reason: event.reason.into(),
                    note: Some(event.note),
                    action: "Audit".into(),
                    secondary: None,
                };
                match self.recorder.publish(&event, &sts.object_ref(&())).await {
                    Ok(()) => round.events += 1,
                    Err(error) => tracing::debug!(%error, "event not recorded"),
                }
            }
            self.verdicts.lock().expect("never poisoned").insert(uid.clone(), Verdict::of(&outcomes));
            seen.insert(uid);
            if round.crd_missing {
                continue;
            }
            match self.write_report(sts, &outcomes).await {
                Ok(true) => {
                    round.reports_written += 1;
                    self.metrics.record_report_write("success");
                }
                Ok(false) => {}
                Err(Error::CrdMissing) => {
                    round.crd_missing = true;
                    self.metrics.record_report_write("crd_missing");
                    if !self.crd_missing_logged.swap(true, Ordering::AcqRel) {
                        tracing::warn!(
                            "the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) is not installed: the audit reports through Events and metrics only (install deploy/components/policy-reports); said once"
                        );
                    }
                }
                Err(error) => {
                    self.metrics.record_report_write("failure");
                    tracing::warn!(%error, "policy report not written; tried again at the next round");
                }
            }
        }
        self.verdicts.lock().expect("never poisoned").retain(|uid, _| seen.contains(uid));
        self.metrics.set_audit_results(&counts);
        self.metrics.set_audit_last_run(unix_now());
        round
    }

    /// `set` on `judged`, paced and behind admission, on the blocking pool; `None` if the
    /// evaluation panicked (logged).
    async fn evaluate(&self, set: &Arc<PolicySet>, judged: Judged) -> Option<Vec<PolicyOutcome>> {
        self.paced().await;
        let permit = self.slot().await;
        let labels = self.namespaces.as_ref().and_then(|cache| cache.labels(&judged.subject.namespace));
        let (set, policies) = (set.clone(), self.policies.clone());
        let evaluation = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let target = Target { subject: &judged.subject, namespace_labels: labels.as_ref() };
            // No metrics: the policy evaluation counters are admission's.
            set.evaluate_scoped(policies.host(), &judged.input, Some(target), None)
        })
        .await;
        match evaluation {
            Ok(evaluation) => Some(evaluation.findings.iter().map(outcome).collect()),
            Err(error) => {
                tracing::error!(%error, "a policy evaluation of the audit panicked");
                None
            }
        }
    }

    /// Waits for a token of the bucket.
    async fn paced(&self) {
        loop {
            let taken = self.pace.lock().expect("never poisoned").take(self.origin.elapsed());
            match taken {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Waits for a free evaluation slot while no review waits for one.
    async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            let queued = self.slots.queued.load(Ordering::Acquire);
            if may_take_slot(queued, self.slots.evaluations.available_permits())
                && let Ok(permit) = self.slots.evaluations.clone().try_acquire_owned()
            {
                return permit;
            }
            tokio::time::sleep(SLOT_WAIT).await;
        }
    }

    /// Server-side applies the report of `sts` (`false`: not stored yet, no report).
    async fn write_report(&self, sts: &StatefulSet, outcomes: &[PolicyOutcome]) -> Result<bool, Error> {
        let Some(report) = policy_report(sts, outcomes, unix_now()) else { return Ok(false) };
        let object: DynamicObject = serde_json::from_value(report).expect("the report is an object");
        let (name, namespace) = (object.name_any(), object.namespace().unwrap_or_default());
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), &namespace, &report_resource());
        match api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 && !namespace_missing(&status) => {
                Err(Error::CrdMissing)
            }
            Err(source) => Err(Error::Apply { namespace, name, source }),
        }
    }
}

/// A 404 about the namespace (deleted under the StatefulSet) rather than the resource type.
fn namespace_missing(status: &kube::core::Status) -> bool {
    status.details.as_ref().is_some_and(|details| details.kind == "namespaces")
}

fn report_resource() -> ApiResource {
    ApiResource {
        group: REPORT_GROUP.into(),
        version: REPORT_VERSION.into(),
        api_version: REPORT_API_VERSION.into(),
        kind: REPORT_KIND.into(),
        plural: REPORT_PLURAL.into(),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A policy's finding as a report result: a deny is `fail` when enforced and `warn` in warn
/// mode; a refused exception is `fail` in either mode (admission refuses it in both); a policy
/// that failed is `error`; an allowed exception is `skip`.
pub fn outcome(finding: &Finding) -> PolicyOutcome {
    let warnings = (!finding.warnings.is_empty()).then(|| finding.warnings.join("; "));
    let (result, message, exception) = match (&finding.result, finding.mode) {
        (FindingResult::Allowed, _) => (AuditResult::Pass, warnings, false),
        (FindingResult::Denied(message), Mode::Enforce) => (AuditResult::Fail, Some(message.clone()), false),
        (FindingResult::Denied(message), Mode::Warn) => (AuditResult::Warn, Some(message.clone()), false),
        (FindingResult::Failed { fault, failure }, _) => {
            let skipped = if *failure == Failure::Allow { " (failure: allow)" } else { "" };
            (AuditResult::Error, Some(format!("policy failed{skipped}: {fault}")), false)
        }
        (FindingResult::Excepted, _) => (
            AuditResult::Skip,
            Some(format!("not evaluated: excepted by annotation {ANNOTATION_POLICY_EXCEPTIONS}")),
            true,
        ),
        (FindingResult::ExceptionRefused(why), _) => (AuditResult::Fail, Some(why.clone()), false),
    };
    PolicyOutcome { policy: finding.policy.clone(), result, message, exception }
}
