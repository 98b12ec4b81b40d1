//! What a finished backup Job means for its StatefulSet: succeeded or failed, when, and whether
//! it was reported already. The controller watches the Jobs of the backup CronJobs (by the
//! `mysql-webhook.io/backup-of` label), and for each finished one records the last good backup
//! time and, once per Job, an Event on the StatefulSet (README "Backups and restore"). The
//! decisions are here, pure; the controller only carries them out.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;

use crate::consts::{ANNOTATION_BACKUP_REPORTED, LABEL_BACKUP};

/// A finished backup Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJobOutcome {
    pub namespace: String,
    /// The StatefulSet the backup is of (the Job's `mysql-webhook.io/backup-of` label).
    pub statefulset: String,
    pub job: String,
    pub succeeded: bool,
    /// When it finished (Unix seconds): the completion time, or when it was marked failed.
    pub finished: i64,
    /// The same instant, RFC 3339.
    pub finished_at: String,
    /// Why it failed, from the Job's `Failed` condition (`BackoffLimitExceeded: …`).
    pub reason: Option<String>,
    /// An Event was recorded for it already (by this or another replica, before a restart).
    pub reported: bool,
}

impl BackupJobOutcome {
    /// The value of the Job's reported annotation, and the Event's reason.
    pub fn event_reason(&self) -> &'static str {
        if self.succeeded { "BackupSucceeded" } else { "BackupFailed" }
    }

    /// The Event's note: the Job, the instant, and for a failure why and where to look.
    pub fn event_note(&self) -> String {
        if self.succeeded {
            format!(
                "backup Job {} succeeded at {}: the backup is published and complete (kubectl logs job/{} --all-containers)",
                self.job, self.finished_at, self.job
            )
        } else {
            format!(
                "backup Job {} failed at {}: {}; no backup was published by it (kubectl logs job/{} --all-containers)",
                self.job,
                self.finished_at,
                self.reason.as_deref().unwrap_or("no reason given"),
                self.job
            )
        }
    }

    /// The merge patch that marks the Job reported, conditional on the resourceVersion it was
    /// read at: of two controllers (replicas, or one restarted) racing, one gets a 409 and
    /// records nothing, so each Job gets one Event.
    pub fn reported_patch(&self, job: &Job) -> serde_json::Value {
        serde_json::json!({
            "metadata": {
                "resourceVersion": job.metadata.resource_version,
                "annotations": {ANNOTATION_BACKUP_REPORTED: self.event_reason()}
            }
        })
    }
}

/// The outcome of `job` when it is a backup Job that finished; `None` while it runs, or when it
/// is not a backup Job.
pub fn backup_job_outcome(job: &Job) -> Option<BackupJobOutcome> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let statefulset = job.metadata.labels.as_ref()?.get(LABEL_BACKUP)?.clone();
    let namespace = job.metadata.namespace.clone()?;
    let name = job.metadata.name.clone()?;
    let status = job.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let holds = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    let (succeeded, time, reason) = if let Some(complete) = holds("Complete") {
        let time = status.completion_time.as_ref().or(complete.last_transition_time.as_ref());
        (true, time, None)
    } else if let Some(failed) = holds("Failed") {
        let reason = match (failed.reason.as_deref(), failed.message.as_deref()) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(text), None) | (None, Some(text)) => text.to_owned(),
            (None, None) => "the Job failed".to_owned(),
        };
        (false, failed.last_transition_time.as_ref(), Some(reason))
    } else {
        return None;
    };
    // A finished Job without a time (not seen from a real API server): its creation instead.
    let time = time.or(job.metadata.creation_timestamp.as_ref())?;
    let annotations = job.metadata.annotations.as_ref().unwrap_or(&EMPTY);
    Some(BackupJobOutcome {
        namespace,
        statefulset,
        job: name,
        succeeded,
        finished: time.0.as_second(),
        finished_at: time.0.to_string(),
        reason,
        reported: annotations.contains_key(ANNOTATION_BACKUP_REPORTED),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value, annotations: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {
                "name": "orders-backup-29412180", "namespace": "shop", "resourceVersion": "77",
                "labels": {"mysql-webhook.io/backup-of": "orders"}, "annotations": annotations,
                "creationTimestamp": "2026-12-02T03:00:00Z"
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_complete_job_is_a_success_at_its_completion_time() {
        let status = json!({
            "completionTime": "2026-12-02T03:00:41Z",
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]
        });
        let outcome = backup_job_outcome(&job(status, json!({}))).unwrap();
        assert!(outcome.succeeded && !outcome.reported);
        assert_eq!(outcome.finished, 1_796_180_441);
        assert_eq!(outcome.finished_at, "2026-12-02T03:00:41Z");
        assert_eq!((outcome.statefulset.as_str(), outcome.namespace.as_str()), ("orders", "shop"));
        assert_eq!(outcome.event_reason(), "BackupSucceeded");
    }

    #[test]
    fn a_failed_job_says_why_and_when() {
        let status = json!({"conditions": [{
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit", "lastTransitionTime": "2026-12-02T03:02:00Z"
        }]});
        let outcome = backup_job_outcome(&job(status, json!({}))).unwrap();
        assert!(!outcome.succeeded);
        assert_eq!(outcome.finished_at, "2026-12-02T03:02:00Z");
        assert_eq!(
            outcome.event_note(),
            "backup Job orders-backup-29412180 failed at 2026-12-02T03:02:00Z: BackoffLimitExceeded: Job has \
             reached the specified backoff limit; no backup was published by it (kubectl logs \
             job/orders-backup-29412180 --all-containers)"
        );
    }

    #[test]
    fn a_running_job_or_another_job_has_no_outcome() {
        let running = json!({"active": 1, "conditions": [{"type": "Failed", "status": "False"}]});
        assert_eq!(backup_job_outcome(&job(running, json!({}))), None);
        let mut other = job(json!({"conditions": [{"type": "Complete", "status": "True"}]}), json!({}));
        other.metadata.labels = None;
        assert_eq!(backup_job_outcome(&other), None);
    }

    #[test]
    fn a_reported_job_is_known_and_the_mark_is_conditional_on_its_version() {
        let status = json!({"completionTime": "2026-12-02T03:00:41Z", "conditions": [{"type": "Complete", "status": "True"}]});
        let reported = job(status.clone(), json!({"mysql-webhook.io/backup-reported": "BackupSucceeded"}));
        assert!(backup_job_outcome(&reported).unwrap().reported);
        let fresh = job(status, json!({}));
        let patch = backup_job_outcome(&fresh).unwrap().reported_patch(&fresh);
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "77", "annotations": {"mysql-webhook.io/backup-reported": "BackupSucceeded"}}})
        );
    }
}
