//! Prometheus metrics of the webhook (`GET /metrics`, OpenMetrics text): requests by endpoint and
//! outcome, latency, requests in flight, certificate reloads and expiry, controller reconciles,
//! failures and duration, policy evaluations by policy and outcome with their latency, policy
//! set reloads, exceptions used and refused, the last good backup per StatefulSet and the backup
//! Jobs reported, the audit's results, last round and report writes, build info. One
//! [`Metrics`] per process, shared by the handlers and the certificate reloader.

use std::time::Instant;

use mysql_webhook_core::admission::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyOutcomeLabels {
    pub policy: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatefulSetLabels {
    pub namespace: String,
    pub statefulset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupJobLabels {
    pub namespace: String,
    pub statefulset: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyResultLabels {
    pub policy: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    in_flight: Gauge,
    certificate_reloads: Family<ResultLabels, Counter>,
    pub certificate_expiry: Gauge,
    reconciles: Counter,
    reconcile_failures: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    policy_evaluations: Family<PolicyOutcomeLabels, Counter>,
    policy_duration: Family<PolicyLabels, Histogram>,
    policy_reloads: Family<ResultLabels, Counter>,
    policies_loaded: Gauge,
    policy_exceptions: Family<PolicyOutcomeLabels, Counter>,
    last_backup_success: Family<StatefulSetLabels, Gauge>,
    backup_jobs: Family<BackupJobLabels, Counter>,
    audit_results: Family<PolicyResultLabels, Gauge>,
    audit_last_run: Gauge,
    audit_report_writes: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(mysql_webhook_core::consts::METRICS_PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by endpoint and outcome",
            requests.clone(),
        );
        // Buckets from 50 µs to 2.5 s, fine up to 2.5 ms where answers are (benches/load.sh reads the
        // median from them); the API server gives up at the webhook timeout.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025,
                0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
            ])
        });
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("admission_in_flight", "Admission requests being answered", in_flight.clone());
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads after the files changed, by result",
            certificate_reloads.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (Unix time)",
            certificate_expiry.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Version of the running binary", build);
        let reconciles = Counter::default();
        registry.register("controller_reconciles", "Reconciles of managed StatefulSets", reconciles.clone());
        let reconcile_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "controller_reconcile_failures",
            "Failed reconciles by reason",
            reconcile_failures.clone(),
        );
        let reconcile_duration = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        registry.register(
            "controller_reconcile_duration_seconds",
            "Time to reconcile a StatefulSet",
            reconcile_duration.clone(),
        );
        let policy_evaluations = Family::<PolicyOutcomeLabels, Counter>::default();
        registry.register(
            "policy_evaluations",
            "Policy evaluations by policy and outcome (allowed, denied, timeout, memory_limit, trap, oversized_result)",
            policy_evaluations.clone(),
        );
        // From 10 µs (a small policy) to the longest timeout accepted (2 s).
        let policy_duration = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.01, 0.1, 0.5, 2.0])
        });
        registry.register(
            "policy_evaluation_duration_seconds",
            "Time one policy takes on one request, instantiation included",
            policy_duration.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy set reloads after policies.yaml or a module changed, by result (a failure keeps the last good set)",
            policy_reloads.clone(),
        );
        let policies_loaded = Gauge::default();
        registry.register("policies_loaded", "Policies in the set serving now", policies_loaded.clone());
        let policy_exceptions = Family::<PolicyOutcomeLabels, Counter>::default();
        registry.register(
            "policy_exceptions",
            "Exceptions asked for by annotation mysql-webhook.io/policy-exceptions, by policy and outcome (used, refused)",
            policy_exceptions.clone(),
        );
        let last_backup_success = Family::<StatefulSetLabels, Gauge>::default();
        registry.register(
            "last_backup_success_timestamp_seconds",
            "When the newest backup Job of the StatefulSet that succeeded finished (Unix time), from the Jobs the backup CronJob keeps",
            last_backup_success.clone(),
        );
        let backup_jobs = Family::<BackupJobLabels, Counter>::default();
        registry.register(
            "backup_jobs",
            "Finished backup Jobs reported by an Event, by StatefulSet and result (succeeded, failed)",
            backup_jobs.clone(),
        );
        let audit_results = Family::<PolicyResultLabels, Gauge>::default();
        registry.register(
            "audit_results",
            "Managed StatefulSets by policy and result (pass, fail, warn, error, skip) at the last audit round",
            audit_results.clone(),
        );
        let audit_last_run = Gauge::default();
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When the last audit round finished (Unix time)",
            audit_last_run.clone(),
        );
        let audit_report_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "audit_report_writes",
            "PolicyReport writes by result (success, failure, crd_missing: the PolicyReport CRD is not installed)",
            audit_report_writes.clone(),
        );
        Metrics {
            registry,
            last_backup_success,
            backup_jobs,
            audit_results,
            audit_last_run,
            audit_report_writes,
            policy_exceptions,
            policy_evaluations,
            policy_duration,
            policy_reloads,
            policies_loaded,
            requests,
            latency,
            in_flight,
            certificate_reloads,
            certificate_expiry,
            reconciles,
            reconcile_failures,
            reconcile_duration,
        }
    }

    /// Counts a request in flight until the guard is dropped: a request abandoned half-way (its
    /// future dropped when the connection goes or a drain times out) leaves the gauge too.
    pub fn start_request(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn record_request(&self, endpoint: &'static str, outcome: Outcome, started: Instant) {
        self.requests.get_or_create(&RequestLabels { endpoint, outcome: outcome.as_str() }).inc();
        self.latency.get_or_create(&EndpointLabels { endpoint }).observe(started.elapsed().as_secs_f64());
    }

    pub fn record_certificate_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.certificate_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// One reconcile, and its failure reason if it failed.
    pub fn record_reconcile(&self, started: Instant, failure: Option<&'static str>) {
        self.reconciles.inc();
        self.reconcile_duration.observe(started.elapsed().as_secs_f64());
        if let Some(reason) = failure {
            self.reconcile_failures.get_or_create(&ReasonLabels { reason }).inc();
        }
    }

    pub fn record_policy_evaluation(
        &self,
        policy: &str,
        outcome: &'static str,
        duration: std::time::Duration,
    ) {
        self.policy_evaluations
            .get_or_create(&PolicyOutcomeLabels { policy: policy.to_owned(), outcome })
            .inc();
        self.policy_duration
            .get_or_create(&PolicyLabels { policy: policy.to_owned() })
            .observe(duration.as_secs_f64());
    }

    /// An exception asked for: `used` (the policy didn't run) or `refused`.
    pub fn record_policy_exception(&self, policy: &str, outcome: &'static str) {
        self.policy_exceptions
            .get_or_create(&PolicyOutcomeLabels { policy: policy.to_owned(), outcome })
            .inc();
    }

    /// A reload attempt, and the number of policies serving after it.
    pub fn record_policy_reload(&self, ok: bool, serving: usize) {
        let result = if ok { "success" } else { "failure" };
        self.policy_reloads.get_or_create(&ResultLabels { result }).inc();
        self.set_policies_loaded(serving);
    }

    pub fn set_policies_loaded(&self, serving: usize) {
        self.policies_loaded.set(serving as i64);
    }

    /// A backup Job of `statefulset` that succeeded at `finished` (Unix seconds): the gauge keeps
    /// the newest, whatever order the Jobs are seen in.
    pub fn record_backup_success(&self, namespace: &str, statefulset: &str, finished: i64) {
        let labels =
            StatefulSetLabels { namespace: namespace.to_owned(), statefulset: statefulset.to_owned() };
        let gauge = self.last_backup_success.get_or_create(&labels);
        if gauge.get() < finished {
            gauge.set(finished);
        }
    }

    /// A finished backup Job reported by an Event (once per Job).
    pub fn record_backup_job(&self, namespace: &str, statefulset: &str, succeeded: bool) {
        let result = if succeeded { "succeeded" } else { "failed" };
        let labels =
            BackupJobLabels { namespace: namespace.to_owned(), statefulset: statefulset.to_owned(), result };
        self.backup_jobs.get_or_create(&labels).inc();
    }

    /// The results of an audit round, replacing the last round's (a policy removed from the set
    /// leaves the metric).
    pub fn set_audit_results(&self, counts: &std::collections::BTreeMap<(String, &'static str), i64>) {
        self.audit_results.clear();
        for ((policy, result), count) in counts {
            self.audit_results
                .get_or_create(&PolicyResultLabels { policy: policy.clone(), result })
                .set(*count);
        }
    }

    pub fn set_audit_last_run(&self, unix_seconds: i64) {
        self.audit_last_run.set(unix_seconds);
    }

    /// A PolicyReport write: `success`, `failure` or `crd_missing`.
    pub fn record_report_write(&self, result: &'static str) {
        self.audit_report_writes.get_or_create(&ResultLabels { result }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String can't fail");
        text
    }
}

/// A request in flight; see [`Metrics::start_request`].
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
