//! A loaded policy set: every policy of a configuration compiled, pre-instantiated and with its
//! settings accepted; and the evaluation of a request against all of them, merged into one
//! decision (policies/README.md): an enforce-mode deny denies, with the policy's name before its message;
//! warn-mode denies and policies' warnings become warnings; a failing policy is handled per its
//! `failure` setting.

use std::time::{Duration, Instant};

use mysql_webhook_core::consts::ANNOTATION_POLICY_EXCEPTIONS;
use mysql_webhook_core::policy_request::PolicyInput;
use mysql_webhook_core::scope::{Decision, Labels, Subject, decide};

use super::config::{Failure, Mode, Module, PolicyConfig};
use super::host::{Compiled, Fault, Host};
use crate::metrics::Metrics;

/// A set that can't be loaded: names the policy and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy}: {reason}")]
pub struct SetError {
    pub policy: String,
    pub reason: String,
}

struct Loaded {
    config: PolicyConfig,
    compiled: Compiled,
}

/// Policies ready to evaluate, in configuration order.
pub struct PolicySet {
    policies: Vec<Loaded>,
}

/// What one policy said about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub policy: String,
    pub mode: Mode,
    pub result: FindingResult,
    /// The policy's own warnings.
    pub warnings: Vec<String>,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FindingResult {
    Allowed,
    Denied(String),
    /// No verdict: the fault, and what the policy's `failure` setting makes of it.
    Failed {
        fault: Fault,
        failure: Failure,
    },
    /// Not run: the object is excepted from the policy where the policy allows it.
    Excepted,
    /// Not run: the object asked for an exception the policy doesn't allow; the reason. Denies
    /// in either mode: the annotation claims what the platform didn't grant.
    ExceptionRefused(String),
}

/// What a scoped evaluation judges: the StatefulSet and its namespace's labels (`None` when
/// unknown).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub subject: &'a Subject,
    pub namespace_labels: Option<&'a Labels>,
}

impl Finding {
    /// The metric label: allowed, denied, or the fault.
    pub fn outcome(&self) -> &'static str {
        match &self.result {
            FindingResult::Allowed => "allowed",
            FindingResult::Denied(_) => "denied",
            FindingResult::Failed { fault, .. } => fault.as_str(),
            FindingResult::Excepted => "excepted",
            FindingResult::ExceptionRefused(_) => "exception_refused",
        }
    }

    /// The message that denies the request, if this finding denies it.
    pub fn denial(&self) -> Option<String> {
        match (&self.result, self.mode) {
            (FindingResult::Denied(message), Mode::Enforce) => Some(format!("{}: {message}", self.policy)),
            (FindingResult::Failed { fault, failure: Failure::Deny }, Mode::Enforce) => {
                Some(format!("{}: policy failed: {fault}", self.policy))
            }
            (FindingResult::ExceptionRefused(why), _) => Some(format!("{}: {why}", self.policy)),
            _ => None,
        }
    }

    /// The warnings this finding returns to the user.
    pub fn user_warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.warnings.iter().map(|w| format!("{}: {w}", self.policy)).collect();
        match (&self.result, self.mode) {
            (FindingResult::Denied(message), Mode::Warn) => {
                out.push(format!("{}: (warn mode, not enforced) {message}", self.policy))
            }
            (FindingResult::Failed { fault, failure: Failure::Allow }, _) => {
                out.push(format!("{}: policy failed and was skipped (failure: allow): {fault}", self.policy))
            }
            // Warn mode never denies, so a rule can be rolled out without risk.
            (FindingResult::Failed { fault, failure: Failure::Deny }, Mode::Warn) => {
                out.push(format!("{}: (warn mode, not enforced) policy failed: {fault}", self.policy))
            }
            (FindingResult::Excepted, _) => out.push(format!(
                "{}: not evaluated: excepted by annotation {ANNOTATION_POLICY_EXCEPTIONS}",
                self.policy
            )),
            _ => {}
        }
        out
    }
}

/// Every policy's finding on one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
}

impl Evaluation {
    pub fn denials(&self) -> Vec<String> {
        self.findings.iter().filter_map(Finding::denial).collect()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.findings.iter().flat_map(Finding::user_warnings).collect()
    }

    pub fn allowed(&self) -> bool {
        self.findings.iter().all(|finding| finding.denial().is_none())
    }

    /// The findings of `self`'s policies followed by those of `next`'s, which come after them in
    /// the set.
    pub fn join(mut self, next: Evaluation) -> Evaluation {
        self.findings.extend(next.findings);
        self
    }
}

impl PolicySet {
    /// Reads, compiles and pre-instantiates every policy and has each accept its settings.
    /// Blocking: module files are read and components compiled.
    pub fn load(host: &Host, configs: &[PolicyConfig]) -> Result<PolicySet, SetError> {
        let total: Duration = configs.iter().map(|c| c.timeout).sum();
        if total > Duration::from_secs(4) {
            tracing::warn!(
                total_ms = total.as_millis() as u64,
                "the policies' timeouts add up to more than 4 s; the webhook's timeoutSeconds is 5 s"
            );
        }
        let mut policies = Vec::with_capacity(configs.len());
        for config in configs {
            let fail = |reason: String| SetError { policy: config.name.clone(), reason };
            let compiled = match &config.module {
                Module::Builtin(name) => {
                    host.compile_builtin(name).expect("config only accepts built-in names that exist")
                }
                Module::File(path) => host.compile(
                    &config.module.to_string(),
                    &std::fs::read(path)
                        .map_err(|e| fail(format!("cannot read module {}: {e}", path.display())))?,
                ),
            }
            .map_err(|e| fail(e.to_string()))?;
            match host.validate_settings(&compiled, config.timeout, &config.settings) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(fail(format!("settings refused: {reason}"))),
                Err(fault) => return Err(fail(format!("validate-settings failed: {fault}"))),
            }
            policies.push(Loaded { config: config.clone(), compiled });
        }
        Ok(PolicySet { policies })
    }

    /// The digests of the components the set runs.
    pub fn digests(&self) -> std::collections::HashSet<&str> {
        self.policies.iter().map(|p| p.compiled.digest.as_str()).collect()
    }

    /// The policies' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.config.name.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Runs every policy on `request` (an AdmissionRequest, object expanded), one after
    /// another, each in a fresh store, whatever the policies' scopes. Blocking.
    pub fn evaluate(&self, host: &Host, request: &PolicyInput, metrics: Option<&Metrics>) -> Evaluation {
        self.evaluate_scoped(host, request, None, metrics)
    }

    /// Runs the policies whose scope takes in `target` on `request`; a policy out of scope
    /// leaves no finding, an exception leaves one without running the policy. `None` runs
    /// every policy. Blocking.
    pub fn evaluate_scoped(
        &self,
        host: &Host,
        request: &PolicyInput,
        target: Option<Target<'_>>,
        metrics: Option<&Metrics>,
    ) -> Evaluation {
        self.evaluate_part(host, request, target, metrics, 0..self.len())
    }

    /// The policies in the set.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// [`PolicySet::evaluate_scoped`] of the policies at `part` (positions in configuration
    /// order), so that one review's policies can run on several threads: the findings of
    /// consecutive parts, joined in order ([`Evaluation::join`]), are those of the whole set.
    pub fn evaluate_part(
        &self,
        host: &Host,
        request: &PolicyInput,
        target: Option<Target<'_>>,
        metrics: Option<&Metrics>,
        part: std::ops::Range<usize>,
    ) -> Evaluation {
        let findings = self.policies[part]
            .iter()
            .filter_map(|policy| {
                let config = &policy.config;
                let decision = target.map_or(Decision::Run, |target| {
                    decide(&config.name, &config.scope, target.subject, target.namespace_labels)
                });
                let skipped = |result| Finding {
                    policy: config.name.clone(),
                    mode: config.mode,
                    result,
                    warnings: Vec::new(),
                    duration: Duration::ZERO,
                };
                let finding = match decision {
                    Decision::OutOfScope => return None,
                    Decision::Excepted => skipped(FindingResult::Excepted),
                    Decision::ExceptionRefused(why) => skipped(FindingResult::ExceptionRefused(why)),
                    Decision::Run => self.run(host, policy, request),
                };
                if let Some(metrics) = metrics {
                    match &finding.result {
                        FindingResult::Excepted => metrics.record_policy_exception(&finding.policy, "used"),
                        FindingResult::ExceptionRefused(_) => {
                            metrics.record_policy_exception(&finding.policy, "refused")
                        }
                        _ => metrics.record_policy_evaluation(
                            &finding.policy,
                            finding.outcome(),
                            finding.duration,
                        ),
                    }
                }
                Some(finding)
            })
            .collect();
        Evaluation { findings }
    }

    fn run(&self, host: &Host, policy: &Loaded, request: &PolicyInput) -> Finding {
        let started = Instant::now();
        let verdict =
            host.validate(&policy.compiled, policy.config.timeout, request, &policy.config.settings);
        let duration = started.elapsed();
        let (result, warnings) = match verdict {
            Ok(verdict) if verdict.allowed => (FindingResult::Allowed, verdict.warnings),
            Ok(verdict) => (
                FindingResult::Denied(
                    verdict.message.unwrap_or_else(|| "denied (the policy gave no reason)".into()),
                ),
                verdict.warnings,
            ),
            Err(fault) => {
                tracing::warn!(policy = %policy.config.name, %fault, "policy failed");
                (FindingResult::Failed { fault, failure: policy.config.failure }, Vec::new())
            }
        };
        Finding { policy: policy.config.name.clone(), mode: policy.config.mode, result, warnings, duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(mode: Mode, result: FindingResult) -> Finding {
        Finding {
            policy: "quorum".into(),
            mode,
            result,
            warnings: vec!["odd is safer".into()],
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn an_enforced_deny_denies_with_the_policy_name_first() {
        let evaluation =
            Evaluation { findings: vec![finding(Mode::Enforce, FindingResult::Denied("2 replicas".into()))] };
        assert!(!evaluation.allowed());
        assert_eq!(evaluation.denials(), ["quorum: 2 replicas"]);
        assert_eq!(evaluation.warnings(), ["quorum: odd is safer"]);
    }

    #[test]
    fn a_warn_mode_deny_is_only_a_warning() {
        let evaluation =
            Evaluation { findings: vec![finding(Mode::Warn, FindingResult::Denied("2 replicas".into()))] };
        assert!(evaluation.allowed());
        assert_eq!(evaluation.warnings()[1], "quorum: (warn mode, not enforced) 2 replicas");
    }

    #[test]
    fn a_failure_follows_the_failure_setting_and_never_denies_in_warn_mode() {
        let failed =
            |failure| FindingResult::Failed { fault: Fault::Timeout(Duration::from_millis(250)), failure };
        let closed = Evaluation { findings: vec![finding(Mode::Enforce, failed(Failure::Deny))] };
        assert_eq!(closed.denials(), ["quorum: policy failed: did not finish within its timeout of 250ms"]);
        let rolled_out = Evaluation { findings: vec![finding(Mode::Warn, failed(Failure::Deny))] };
        assert!(rolled_out.allowed());
        assert!(rolled_out.warnings()[1].starts_with("quorum: (warn mode, not enforced) policy failed"));
        let open = Evaluation { findings: vec![finding(Mode::Enforce, failed(Failure::Allow))] };
        assert!(open.allowed());
        assert!(open.warnings()[1].starts_with("quorum: policy failed and was skipped (failure: allow)"));
    }

    #[test]
    fn an_exception_used_warns_and_a_refused_one_denies_even_in_warn_mode() {
        let used = Evaluation { findings: vec![finding(Mode::Enforce, FindingResult::Excepted)] };
        assert!(used.allowed());
        assert_eq!(
            used.warnings()[1],
            "quorum: not evaluated: excepted by annotation mysql-webhook.io/policy-exceptions"
        );
        let refused = Evaluation {
            findings: vec![finding(
                Mode::Warn,
                FindingResult::ExceptionRefused("exception refused: no".into()),
            )],
        };
        assert_eq!(refused.denials(), ["quorum: exception refused: no"]);
    }
}
