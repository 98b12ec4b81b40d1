//! The audit of what already runs (README.md, "Audit and policy reports"): the request the
//! policies see for a stored StatefulSet, the wg-policy `PolicyReport` that records their
//! results (one per StatefulSet, bounded in size), whether a result changed enough for an
//! Event, when a round is due, and the pacing that keeps the audit behind admission (a token
//! bucket, and a slot only when no review waits).
//!
//! Pure: the shell (`src/audit.rs`) brings the clock as durations and timestamps, runs the
//! policies and writes what is decided here.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::admission::{Judged, strip_bookkeeping};
use crate::consts::{
    ANNOTATION_POLICY_EXCEPTIONS, AUDIT_USER, LABEL_MANAGED_BY, MANAGED_BY, REPORT_API_VERSION, REPORT_KIND,
    REPORT_NAME_PREFIX, REPORT_PROPERTY_EXCEPTION,
};
use crate::plan::{PlanError, plan};
use crate::policy_request::PolicyRequest;
use crate::scope::Subject;

/// A result's message is cut to this many bytes (at a character boundary), so that a policy's
/// long message can't grow a report.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Results kept in one report; the summary still counts every policy. With 64 results of at
/// most 1 KiB a report stays under 100 KiB, far below etcd's 1.5 MiB object limit.
pub const MAX_RESULTS: usize = 64;
/// An Event's note is at most 1 KiB (events.k8s.io/v1).
pub const MAX_EVENT_NOTE_BYTES: usize = 1024;
/// The policy name of the result that says the StatefulSet's annotations can't be read: not a
/// valid policy name (it has a slash), so it never clashes with one.
pub const ANNOTATIONS_POLICY: &str = "mysql-webhook.io/annotations";

/// The shortest and longest audit period `serve --audit-interval` accepts (0 turns it off).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A policy's result in a report, as the wg-policy API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    /// The policy allowed the StatefulSet.
    Pass,
    /// An enforced policy denies it, or it claims an exception the policy doesn't allow: its
    /// next write will be refused.
    Fail,
    /// A warn-mode policy denies it: refused once the policy is enforced.
    Warn,
    /// The policy failed (trap, timeout, memory), or the annotations can't be read.
    Error,
    /// Excepted by annotation where the policy allows it: not evaluated.
    Skip,
}

impl AuditResult {
    pub const ALL: [AuditResult; 5] =
        [AuditResult::Pass, AuditResult::Fail, AuditResult::Warn, AuditResult::Error, AuditResult::Skip];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Pass => "pass",
            AuditResult::Fail => "fail",
            AuditResult::Warn => "warn",
            AuditResult::Error => "error",
            AuditResult::Skip => "skip",
        }
    }

    /// Something a platform team has to look at.
    pub fn is_problem(self) -> bool {
        matches!(self, AuditResult::Fail | AuditResult::Warn | AuditResult::Error)
    }
}

/// One policy's result on one StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    pub policy: String,
    pub result: AuditResult,
    /// Why (a deny's message, the fault, the policy's warnings), if anything.
    pub message: Option<String>,
    /// Skipped because the StatefulSet's exceptions annotation excepts it.
    pub exception: bool,
}

/// The request the policies see for a stored StatefulSet: what `/validate` judges on a CREATE
/// of it (as `check` does), without the API server's and kubectl's bookkeeping, with the
/// subject its scopes judge. `Ok(None)`: no longer opted in, nothing to audit. A refusal of its
/// annotations (the plan, or the exceptions annotation) is an `Err`, reported as an `error`
/// result ([`annotations_outcome`]).
pub fn audit_request(sts: &StatefulSet) -> Result<Option<Judged>, PlanError> {
    let namespace = sts.metadata.namespace.as_deref();
    if plan(sts, namespace)?.is_none() {
        return Ok(None);
    }
    let subject = Subject::of(sts, namespace)?;
    let mut object = sts.clone();
    strip_bookkeeping(&mut object);
    let user = format!(r#"{{"username":"{AUDIT_USER}"}}"#);
    let user: Box<RawValue> = RawValue::from_string(user).expect("a JSON object");
    let uid = sts.metadata.uid.as_deref().unwrap_or_default();
    let input = PolicyRequest::create(uid, &object, Some(&user)).input();
    Ok(Some(Judged { input, subject }))
}

/// The single result of a StatefulSet whose annotations can't be read.
pub fn annotations_outcome(error: &PlanError) -> PolicyOutcome {
    PolicyOutcome {
        policy: ANNOTATIONS_POLICY.into(),
        result: AuditResult::Error,
        message: Some(error.to_string()),
        exception: false,
    }
}

/// `report.summary`: every result counted, also those beyond [`MAX_RESULTS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: u32,
    pub fail: u32,
    pub warn: u32,
    pub error: u32,
    pub skip: u32,
}

impl Summary {
    pub fn of(outcomes: &[PolicyOutcome]) -> Summary {
        let mut summary = Summary::default();
        for outcome in outcomes {
            let count = match outcome.result {
                AuditResult::Pass => &mut summary.pass,
                AuditResult::Fail => &mut summary.fail,
                AuditResult::Warn => &mut summary.warn,
                AuditResult::Error => &mut summary.error,
                AuditResult::Skip => &mut summary.skip,
            };
            *count += 1;
        }
        summary
    }
}

/// The name of `sts`'s report: [`REPORT_NAME_PREFIX`] and its name, the same at every audit so
/// that the report is replaced, never added to; its uid's instead when that would pass the
/// 253 characters of a name.
pub fn report_name(name: &str, uid: &str) -> String {
    let readable = format!("{REPORT_NAME_PREFIX}{name}");
    if readable.len() <= 253 { readable } else { format!("{REPORT_NAME_PREFIX}{uid}") }
}

/// `text` cut to at most `limit` bytes at a character boundary, with `…` when cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = limit - ellipsis.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// The `PolicyReport` of `sts` (which must be stored: a name, a namespace and a uid; `None`
/// otherwise) with `outcomes`, found at `seconds` (Unix time): in the StatefulSet's namespace,
/// owned by it (deleted with it), its scope pointing at it, a summary of every outcome, and at
/// most [`MAX_RESULTS`] results (the problems first when some must go) of messages cut to
/// [`MAX_MESSAGE_BYTES`].
pub fn policy_report(sts: &StatefulSet, outcomes: &[PolicyOutcome], seconds: i64) -> Option<Value> {
    let meta = &sts.metadata;
    let (name, namespace, uid) = (meta.name.as_deref()?, meta.namespace.as_deref()?, meta.uid.as_deref()?);
    let mut kept: Vec<&PolicyOutcome> = outcomes.iter().collect();
    if kept.len() > MAX_RESULTS {
        // Stable: the set's order within each kind.
        kept.sort_by_key(|outcome| !outcome.result.is_problem());
        kept.truncate(MAX_RESULTS);
    }
    let results: Vec<Value> = kept
        .into_iter()
        .map(|outcome| {
            let mut result = json!({
                "policy": outcome.policy,
                "result": outcome.result,
                "scored": true,
                "timestamp": {"seconds": seconds, "nanos": 0},
            });
            if let Some(message) = &outcome.message {
                result["message"] = json!(truncate(message, MAX_MESSAGE_BYTES));
            }
            if outcome.exception {
                let properties = BTreeMap::from([(REPORT_PROPERTY_EXCEPTION, ANNOTATION_POLICY_EXCEPTIONS)]);
                result["properties"] = json!(properties);
            }
            result
        })
        .collect();
    Some(json!({
        "apiVersion": REPORT_API_VERSION,
        "kind": REPORT_KIND,
        "metadata": {
            "name": report_name(name, uid),
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY},
            // Not a controller reference: the report describes the StatefulSet, it doesn't run it.
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": uid}],
        },
        "scope": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "namespace": namespace, "uid": uid},
        "summary": Summary::of(outcomes),
        "results": results,
    }))
}

/// What an Event compares between audits: each policy's result, in order. Messages are left
/// out: a failing StatefulSet whose message changes (4 replicas, then 6) hasn't changed result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict(Vec<(String, AuditResult)>);

impl Verdict {
    pub fn of(outcomes: &[PolicyOutcome]) -> Verdict {
        Verdict(outcomes.iter().map(|o| (o.policy.clone(), o.result)).collect())
    }

    fn has_problems(&self) -> bool {
        self.0.iter().any(|(_, result)| result.is_problem())
    }
}

/// An Event to record on the StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Reason of the Event when a StatefulSet starts breaking a policy (or its results change while
/// it does).
pub const REASON_FAILED: &str = "PolicyAuditFailed";
/// Reason of the Event when a StatefulSet that broke a policy no longer does.
pub const REASON_PASSED: &str = "PolicyAuditPassed";

/// The Event for `outcomes` after `previous` (the last audit's verdict, `None` when this process
/// hasn't audited the StatefulSet yet): one only when the verdict changed. A first audit that
/// finds nothing wrong is silent; one that finds a problem says so (after a restart, a failing
/// StatefulSet gets that Event once more).
pub fn event_for(previous: Option<&Verdict>, outcomes: &[PolicyOutcome]) -> Option<AuditEvent> {
    let current = Verdict::of(outcomes);
    if previous == Some(&current) {
        return None;
    }
    if current.has_problems() {
        let problems: Vec<String> = outcomes
            .iter()
            .filter(|o| o.result.is_problem())
            .map(|o| match &o.message {
                Some(message) => format!("{} {}: {message}", o.policy, o.result.as_str()),
                None => format!("{} {}", o.policy, o.result.as_str()),
            })
            .collect();
        let summary = Summary::of(outcomes);
        let note =
            format!("policy audit: {}; {} pass, {} skip", problems.join("; "), summary.pass, summary.skip);
        return Some(AuditEvent {
            warning: true,
            reason: REASON_FAILED,
            note: truncate(&note, MAX_EVENT_NOTE_BYTES),
        });
    }
    let summary = Summary::of(outcomes);
    previous.filter(|previous| previous.has_problems()).map(|_| AuditEvent {
        warning: false,
        reason: REASON_PASSED,
        note: format!("policy audit: no policy fails any more; {} pass, {} skip", summary.pass, summary.skip),
    })
}

/// Whether a round is due: the policy set changed since the last round (a reload, or the first
/// round), or `interval` has passed since it.
pub fn round_due(since_last: Option<Duration>, interval: Duration, set_changed: bool) -> bool {
    set_changed || since_last.is_none_or(|elapsed| elapsed >= interval)
}

/// Whether the audit may take a policy evaluation slot now: only when no admission review is
/// waiting for one and one is free, so that the audit never makes a review wait in the queue.
pub fn may_take_slot(queued_reviews: usize, free_slots: usize) -> bool {
    queued_reviews == 0 && free_slots > 0
}

/// A token bucket: at most `burst` evaluations at once, then `rate` per second. Time is the
/// caller's, as a duration since any fixed origin.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: f64, burst: u32, now: Duration) -> TokenBucket {
        TokenBucket { rate, burst: f64::from(burst), tokens: f64::from(burst), last: now }
    }

    /// Takes a token at `now`, or says how long to wait for one.
    pub fn take(&mut self, now: Duration) -> Result<(), Duration> {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Parses `--audit-interval`: `0` turns the audit off (`None`); otherwise hours, minutes and
/// seconds (`1h`, `30m`, `1h30m`, `90s`) from [`MIN_INTERVAL`] to [`MAX_INTERVAL`].
pub fn parse_interval(text: &str) -> Result<Option<Duration>, String> {
    let refuse = |why: &str| {
        format!(
            "{text:?}: {why}; give 0 to turn the audit off, or a duration from 1m to 168h such as 30m, 1h or 1h30m"
        )
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(None);
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut units = 0;
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let seconds = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(refuse(&format!("{c:?} is not a unit (h, m or s)"))),
        };
        let value: u64 = number.parse().map_err(|_| refuse("every unit needs a number before it"))?;
        total = total.saturating_add(Duration::from_secs(value.saturating_mul(seconds)));
        number.clear();
        units += 1;
    }
    if !number.is_empty() || units == 0 {
        return Err(refuse("every number needs a unit (h, m or s)"));
    }
    if total < MIN_INTERVAL {
        return Err(refuse("shorter than the minimum of 1m"));
    }
    if total > MAX_INTERVAL {
        return Err(refuse("longer than the maximum of 168h"));
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(policy: &str, result: AuditResult, message: Option<&str>) -> PolicyOutcome {
        PolicyOutcome { policy: policy.into(), result, message: message.map(Into::into), exception: false }
    }

    fn stored() -> StatefulSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {
                "name": "orders", "namespace": "shop", "uid": "u-1",
                "annotations": {"mysql-webhook.io/replicated": "true", "mysql-webhook.io/policy-exceptions": "spread",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "labels": {"mysql-webhook.io/managed": "true"},
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {"replicas": 3, "serviceName": "orders-hl", "selector": {"matchLabels": {"app": "orders"}},
                "template": {"metadata": {"labels": {"app": "orders"}},
                    "spec": {"containers": [{"name": "mysql", "image": "mysql:8.4"}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn the_audit_request_is_a_create_of_the_stored_object_without_bookkeeping() {
        let judged = audit_request(&stored()).unwrap().unwrap();
        let request: Value = serde_json::from_str(judged.input.whole()).unwrap();
        assert_eq!(request["operation"], "CREATE");
        assert_eq!(request["namespace"], "shop");
        assert_eq!(request["userInfo"]["username"], AUDIT_USER);
        assert_eq!(request["object"]["metadata"]["managedFields"], Value::Null);
        assert_eq!(
            request["object"]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            Value::Null
        );
        assert_eq!(judged.subject.namespace, "shop");
        assert_eq!(judged.subject.exceptions, ["spread"]);
    }

    #[test]
    fn a_statefulset_no_longer_opted_in_is_not_audited_and_a_bad_annotation_is_an_error_result() {
        let mut sts = stored();
        sts.metadata.annotations.as_mut().unwrap().remove("mysql-webhook.io/replicated");
        assert!(audit_request(&sts).unwrap().is_none());
        let mut sts = stored();
        sts.metadata.annotations.as_mut().unwrap().insert(ANNOTATION_POLICY_EXCEPTIONS.into(), "a,a".into());
        let error = audit_request(&sts).unwrap_err();
        let outcome = annotations_outcome(&error);
        assert_eq!((outcome.policy.as_str(), outcome.result), (ANNOTATIONS_POLICY, AuditResult::Error));
        assert!(outcome.message.unwrap().contains("named twice"));
    }

    #[test]
    fn the_report_is_owned_by_and_scoped_to_its_statefulset_with_a_summary() {
        let outcomes = [
            outcome("quorum", AuditResult::Fail, Some("4 replicas")),
            outcome("storage", AuditResult::Pass, None),
            PolicyOutcome { exception: true, ..outcome("spread", AuditResult::Skip, None) },
        ];
        let report = policy_report(&stored(), &outcomes, 1_700_000_000).unwrap();
        assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(report["metadata"]["name"], "mysql-webhook-orders");
        assert_eq!(report["metadata"]["namespace"], "shop");
        assert_eq!(
            report["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "orders", "uid": "u-1"}])
        );
        assert_eq!(report["scope"]["uid"], "u-1");
        assert_eq!(report["summary"], json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 1}));
        assert_eq!(report["results"][0]["message"], "4 replicas");
        assert_eq!(report["results"][0]["timestamp"], json!({"seconds": 1_700_000_000, "nanos": 0}));
        assert_eq!(report["results"][1].get("message"), None);
        assert_eq!(report["results"][2]["properties"], json!({"exception": ANNOTATION_POLICY_EXCEPTIONS}));
        let mut unstored = stored();
        unstored.metadata.uid = None;
        assert!(policy_report(&unstored, &outcomes, 0).is_none());
    }

    #[test]
    fn the_report_name_is_the_same_at_every_audit_and_never_too_long() {
        assert_eq!(report_name("orders", "u-1"), report_name("orders", "u-1"));
        let long = "a".repeat(250);
        assert_eq!(report_name(&long, "u-1"), "mysql-webhook-u-1");
    }

    #[test]
    fn a_report_is_bounded_in_messages_and_results_keeping_the_problems() {
        let long = "é".repeat(2000);
        let mut outcomes: Vec<PolicyOutcome> =
            (0..100).map(|i| outcome(&format!("p{i}"), AuditResult::Pass, Some(&long))).collect();
        outcomes.push(outcome("last", AuditResult::Fail, Some("broken")));
        let report = policy_report(&stored(), &outcomes, 0).unwrap();
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), MAX_RESULTS);
        assert_eq!(results[0]["policy"], "last", "the failure is kept, first");
        let message = results[1]["message"].as_str().unwrap();
        assert!(message.len() <= MAX_MESSAGE_BYTES && message.ends_with('…'), "{}", message.len());
        assert_eq!(report["summary"]["pass"], 100, "the summary counts every result");
        assert!(report.to_string().len() < 100 * 1024);
    }

    #[test]
    fn an_event_only_when_the_verdict_changes() {
        let passing = [outcome("quorum", AuditResult::Pass, None)];
        let failing = [outcome("quorum", AuditResult::Fail, Some("4 replicas"))];
        let failing_again = [outcome("quorum", AuditResult::Fail, Some("6 replicas"))];
        assert_eq!(event_for(None, &passing), None, "a first clean audit is silent");
        let failed = event_for(None, &failing).unwrap();
        assert_eq!((failed.warning, failed.reason), (true, REASON_FAILED));
        assert_eq!(failed.note, "policy audit: quorum fail: 4 replicas; 0 pass, 0 skip");
        assert_eq!(event_for(Some(&Verdict::of(&failing)), &failing_again), None, "same result, new message");
        assert_eq!(event_for(Some(&Verdict::of(&passing)), &passing), None);
        let passed = event_for(Some(&Verdict::of(&failing)), &passing).unwrap();
        assert_eq!((passed.warning, passed.reason), (false, REASON_PASSED));
        let added = [outcome("quorum", AuditResult::Pass, None), outcome("spread", AuditResult::Pass, None)];
        assert_eq!(event_for(Some(&Verdict::of(&passing)), &added), None, "nothing to look at");
        let long = [outcome("quorum", AuditResult::Fail, Some(&"x".repeat(5000)))];
        assert!(event_for(None, &long).unwrap().note.len() <= MAX_EVENT_NOTE_BYTES);
    }

    #[test]
    fn a_round_is_due_after_a_reload_or_the_interval() {
        let hour = Duration::from_secs(3600);
        assert!(round_due(None, hour, false));
        assert!(round_due(Some(Duration::from_secs(5)), hour, true));
        assert!(!round_due(Some(Duration::from_secs(5)), hour, false));
        assert!(round_due(Some(hour), hour, false));
    }

    #[test]
    fn the_audit_takes_a_slot_only_when_free_and_no_review_waits() {
        assert!(may_take_slot(0, 1));
        assert!(!may_take_slot(1, 4));
        assert!(!may_take_slot(0, 0));
    }

    #[test]
    fn the_token_bucket_allows_its_burst_then_its_rate() {
        let start = Duration::from_secs(100);
        let mut bucket = TokenBucket::new(10.0, 2, start);
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        let wait = bucket.take(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
        // Idle for long: never more than the burst.
        let later = start + Duration::from_secs(60);
        assert!(bucket.take(later).is_ok() && bucket.take(later).is_ok());
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn the_interval_is_0_or_a_duration_within_bounds_and_a_bad_one_says_what_is_accepted() {
        assert_eq!(parse_interval("0"), Ok(None));
        assert_eq!(parse_interval("1h"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(parse_interval("1h30m"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(parse_interval("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(parse_interval("168h"), Ok(Some(MAX_INTERVAL)));
        for (bad, why) in [
            ("30s", "shorter than the minimum of 1m"),
            ("169h", "longer than the maximum of 168h"),
            ("1d", "'d' is not a unit"),
            ("60", "every number needs a unit"),
            ("h", "every unit needs a number"),
            ("", "every number needs a unit"),
            ("-1h", "'-' is not a unit"),
        ] {
            let error = parse_interval(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.starts_with(&format!("{bad:?}: ")), "{error}");
            assert!(error.contains("give 0 to turn the audit off"), "{error}");
        }
    }
}
