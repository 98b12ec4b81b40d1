//! `policies.yaml` (policies/README.md): which policies run, from which module, in which mode, with what
//! failure handling, timeout and settings. Parsing and checking only; no IO but what the caller
//! reads. Every error names the policy (by name, or by position when it has none) and the field.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use mysql_webhook_core::names::NameRule;
use mysql_webhook_core::scope::{ExceptionRule, PolicyScope, check_selector};
use serde::Deserialize;

use super::builtin;

/// Per evaluation, when a policy sets none: well under the webhook's 5 s `timeoutSeconds`, with
/// room for several policies in a row.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest `timeout` accepted: the API server gives up on the webhook after `timeoutSeconds`
/// (5 s in `deploy/`), and the policies of one request run one after another.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// Prefix of a built-in module reference.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// What a policy's verdict does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A deny denies the request.
    #[default]
    Enforce,
    /// A deny is turned into a warning: for rolling a rule out.
    Warn,
}

/// What a policy that fails (trap, timeout, memory cap, oversized result) does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// Fail closed: the request is denied, with a message naming the policy.
    #[default]
    Deny,
    /// Fail open: the request is allowed, with a warning naming the policy.
    Allow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
        }
    }
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Deny => "deny",
            Failure::Allow => "allow",
        }
    }
}

/// Where a policy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Module {
    /// One of [`builtin::NAMES`], carried by the binary.
    Builtin(&'static str),
    /// A `.wasm` file; relative paths are resolved against the directory of `policies.yaml`.
    File(PathBuf),
}

impl std::fmt::Display for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Module::Builtin(name) => write!(f, "{BUILTIN_PREFIX}{name}"),
            Module::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One policy, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    pub module: Module,
    pub mode: Mode,
    pub failure: Failure,
    pub timeout: Duration,
    /// The settings as JSON text, exactly what the component's functions receive.
    pub settings: String,
    /// Which StatefulSets the policy judges, and where it may be excepted from.
    pub scope: PolicyScope,
}

/// A `policies.yaml` that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{path}: policy {policy}: {problem}")]
    Policy { path: String, policy: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    policies: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    module: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    failure: Failure,
    timeout: Option<String>,
    #[serde(default)]
    settings: serde_json::Value,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(rename = "namespaceSelector")]
    namespace_selector: Option<LabelSelector>,
    #[serde(rename = "objectSelector")]
    object_selector: Option<LabelSelector>,
    exceptions: Option<ExceptionsEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionsEntry {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(rename = "namespaceSelector")]
    namespace_selector: Option<LabelSelector>,
}

/// The set used without a `policies.yaml`: every built-in policy, enforced, failing closed, with
/// its default settings.
pub fn defaults() -> Vec<PolicyConfig> {
    builtin::NAMES
        .iter()
        .map(|name| PolicyConfig {
            name: (*name).to_owned(),
            module: Module::Builtin(name),
            mode: Mode::Enforce,
            failure: Failure::Deny,
            timeout: DEFAULT_TIMEOUT,
            settings: "{}".to_owned(),
            scope: PolicyScope::default(),
        })
        .collect()
}

/// Parses `text`, the content of the file at `path` (named in errors; relative module paths are
/// resolved against its directory).
pub fn parse(text: &str, path: &Path) -> Result<Vec<PolicyConfig>, ConfigError> {
    let shown = path.display().to_string();
    let file_error = |problem: String| ConfigError::File { path: shown.clone(), problem };
    let file: File = serde_yaml_ng::from_str(text).map_err(|e| {
        file_error(format!(
            "not a policy configuration ({e}); expected `policies:` with a list of \
             {{name, module, mode, failure, timeout, settings, namespaces, namespaceSelector, \
             objectSelector, exceptions}}"
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut seen = HashSet::new();
    let mut policies = Vec::with_capacity(file.policies.len());
    for (index, entry) in file.policies.into_iter().enumerate() {
        let label = entry.name.clone().unwrap_or_else(|| format!("#{}", index + 1));
        let fail =
            |problem: String| ConfigError::Policy { path: shown.clone(), policy: label.clone(), problem };
        let name = entry.name.clone().ok_or_else(|| fail("`name` is required".into()))?;
        check_name(&name).map_err(fail)?;
        if !seen.insert(name.clone()) {
            return Err(fail("the name is used by an earlier policy; names must be unique".into()));
        }
        let module = entry.module.as_deref().ok_or_else(|| fail("`module` is required".into()))?;
        let module = parse_module(module, base).map_err(fail)?;
        let timeout = match entry.timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(text) => parse_timeout(text).map_err(fail)?,
        };
        let settings = match entry.settings {
            serde_json::Value::Null => "{}".to_owned(),
            settings @ serde_json::Value::Object(_) => settings.to_string(),
            other => return Err(fail(format!("`settings` must be a mapping, not {other}"))),
        };
        let scope = PolicyScope {
            namespaces: check_namespaces("namespaces", entry.namespaces).map_err(fail)?,
            namespace_selector: check_optional_selector("namespaceSelector", entry.namespace_selector)
                .map_err(fail)?,
            object_selector: check_optional_selector("objectSelector", entry.object_selector)
                .map_err(fail)?,
            exceptions: entry.exceptions.map(check_exceptions).transpose().map_err(fail)?,
        };
        policies.push(PolicyConfig {
            name,
            module,
            mode: entry.mode,
            failure: entry.failure,
            timeout,
            settings,
            scope,
        });
    }
    Ok(policies)
}

/// Names appear in messages, metric labels and logs: a DNS label keeps them readable and safe.
fn check_name(name: &str) -> Result<(), String> {
    let rule = NameRule::Dns1123Label;
    match rule.accepts(name) {
        true => Ok(()),
        false => Err(format!("`name` {name:?} is not accepted: {}", rule.description())),
    }
}

fn check_namespaces(field: &str, names: Vec<String>) -> Result<Vec<String>, String> {
    let rule = NameRule::Dns1123Label;
    match names.iter().find(|name| !rule.accepts(name)) {
        Some(name) => Err(format!("`{field}`: {name:?} is not a namespace name ({})", rule.description())),
        None => Ok(names),
    }
}

fn check_optional_selector(
    field: &str,
    selector: Option<LabelSelector>,
) -> Result<Option<LabelSelector>, String> {
    if let Some(selector) = &selector {
        check_selector(selector).map_err(|problem| format!("`{field}`: {problem}"))?;
    }
    Ok(selector)
}

/// An `exceptions` entry must say where: an empty one would allow nothing and look as if it
/// allowed everything.
fn check_exceptions(entry: ExceptionsEntry) -> Result<ExceptionRule, String> {
    if entry.namespaces.is_empty() && entry.namespace_selector.is_none() {
        return Err("`exceptions` names no place: give `namespaces` and/or `namespaceSelector`".into());
    }
    Ok(ExceptionRule {
        namespaces: check_namespaces("exceptions.namespaces", entry.namespaces)?,
        namespace_selector: check_optional_selector(
            "exceptions.namespaceSelector",
            entry.namespace_selector,
        )?,
    })
}

fn parse_module(module: &str, base: &Path) -> Result<Module, String> {
    if let Some(name) = module.strip_prefix(BUILTIN_PREFIX) {
        return builtin::NAMES
            .iter()
            .find(|builtin| **builtin == name)
            .map(|n| Module::Builtin(n))
            .ok_or_else(|| {
                format!("`module` {module:?}: no such built-in policy; built-ins are {}", builtin_list())
            });
    }
    if module.is_empty() {
        return Err(format!("`module` is empty: give a .wasm path or one of {}", builtin_list()));
    }
    let path = Path::new(module);
    Ok(Module::File(if path.is_absolute() { path.to_path_buf() } else { base.join(path) }))
}

fn builtin_list() -> String {
    builtin::NAMES.iter().map(|n| format!("{BUILTIN_PREFIX}{n}")).collect::<Vec<_>>().join(", ")
}

/// `250ms`, `1s`, `1.5s`: between 1 ms and [`MAX_TIMEOUT`].
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let refuse = || {
        format!(
            "`timeout` {text:?} is not accepted: give milliseconds or seconds, e.g. 250ms or 1s, \
             from 1ms to {}ms",
            MAX_TIMEOUT.as_millis()
        )
    };
    let trimmed = text.trim();
    let (number, scale) = if let Some(ms) = trimmed.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = trimmed.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(refuse());
    };
    let seconds: f64 = number.trim().parse().map_err(|_| refuse())?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(refuse());
    }
    let timeout = Duration::from_secs_f64(seconds * scale);
    if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
        return Err(refuse());
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<PolicyConfig>, ConfigError> {
        parse(text, Path::new("/etc/mysql-webhook/policies.yaml"))
    }

    #[test]
    fn reads_the_design_example_with_defaults_filled_in() {
        let policies = parse_text(
            "policies:\n- name: replica-quorum\n  module: builtin:replica-quorum\n  mode: warn\n  \
             settings: {min: 3, max: 7, odd: true}\n- name: mine\n  module: mine.wasm\n  failure: allow\n  timeout: 1.5s\n",
        )
        .unwrap();
        assert_eq!(policies[0].module, Module::Builtin("replica-quorum"));
        assert_eq!(policies[0].mode, Mode::Warn);
        assert_eq!(policies[0].failure, Failure::Deny);
        assert_eq!(policies[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(policies[0].settings, r#"{"min":3,"max":7,"odd":true}"#);
        assert_eq!(policies[1].module, Module::File("/etc/mysql-webhook/mine.wasm".into()));
        assert_eq!(policies[1].failure, Failure::Allow);
        assert_eq!(policies[1].timeout, Duration::from_millis(1500));
        assert_eq!(policies[1].settings, "{}");
    }

    #[test]
    fn refuses_an_unknown_builtin_and_lists_the_real_ones() {
        let error = parse_text("policies:\n- name: q\n  module: builtin:quorum\n").unwrap_err().to_string();
        assert!(error.contains("policy q: `module` \"builtin:quorum\": no such built-in policy"), "{error}");
        assert!(error.contains("builtin:replica-quorum, builtin:spread"), "{error}");
    }

    #[test]
    fn refuses_duplicate_names() {
        let error = parse_text(
            "policies:\n- {name: a, module: builtin:spread}\n- {name: a, module: builtin:storage}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("policy a: the name is used by an earlier policy"), "{error}");
    }

    #[test]
    fn refuses_a_timeout_over_the_limit_or_without_a_unit() {
        for bad in ["3s", "250", "0ms", "-1s", "fast"] {
            let text = format!("policies:\n- {{name: a, module: builtin:spread, timeout: {bad}}}\n");
            let error = parse_text(&text).unwrap_err().to_string();
            assert!(error.contains("`timeout`") && error.contains("from 1ms to 2000ms"), "{bad}: {error}");
        }
    }

    #[test]
    fn refuses_unknown_fields_and_bad_modes_naming_them() {
        let error = parse_text("policies:\n- {name: a, module: builtin:spread, mdoe: warn}\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `mdoe`"), "{error}");
        let error = parse_text("policies:\n- {name: a, module: builtin:spread, mode: audit}\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant `audit`, expected `enforce` or `warn`"), "{error}");
    }

    #[test]
    fn names_a_nameless_policy_by_its_position() {
        let error =
            parse_text("policies:\n- {name: a, module: builtin:spread}\n- {module: builtin:storage}\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("policy #2: `name` is required"), "{error}");
    }

    #[test]
    fn refuses_settings_that_are_not_a_mapping() {
        let error = parse_text("policies:\n- {name: a, module: builtin:spread, settings: [1]}\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`settings` must be a mapping"), "{error}");
    }

    #[test]
    fn reads_scopes_and_exceptions() {
        let policies = parse_text(
            "policies:\n- name: spread\n  module: builtin:spread\n  namespaces: [shop, blog]\n  \
             namespaceSelector: {matchLabels: {tier: prod}}\n  objectSelector:\n    matchExpressions:\n    \
             - {key: critical, operator: In, values: [\"true\"]}\n  exceptions:\n    namespaces: [legacy]\n    \
             namespaceSelector: {matchLabels: {exceptions: allowed}}\n- {name: storage, module: builtin:storage}\n",
        )
        .unwrap();
        let scope = &policies[0].scope;
        assert_eq!(scope.namespaces, ["shop", "blog"]);
        assert_eq!(scope.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["tier"], "prod");
        assert_eq!(
            scope.object_selector.as_ref().unwrap().match_expressions.as_ref().unwrap()[0].key,
            "critical"
        );
        let exceptions = scope.exceptions.as_ref().unwrap();
        assert_eq!(exceptions.namespaces, ["legacy"]);
        assert!(exceptions.namespace_selector.is_some());
        assert_eq!(policies[1].scope, PolicyScope::default());
    }

    #[test]
    fn refuses_bad_scopes_and_exceptions_naming_policy_and_field() {
        let cases = [
            ("namespaces: [Shop]", "policy a: `namespaces`: \"Shop\" is not a namespace name"),
            (
                "objectSelector: {matchExpressions: [{key: tier, operator: Equals, values: [a]}]}",
                "policy a: `objectSelector`: matchExpressions: key \"tier\": operator \"Equals\" is not accepted",
            ),
            ("exceptions: {}", "policy a: `exceptions` names no place"),
            ("exceptions: {namespace: [x]}", "unknown field `namespace`"),
            (
                "exceptions: {namespaceSelector: {matchExpressions: [{key: x, operator: In}]}}",
                "policy a: `exceptions.namespaceSelector`: matchExpressions: key \"x\": operator In needs values",
            ),
        ];
        for (field, expected) in cases {
            let text = format!("policies:\n- {{name: a, module: builtin:spread, {field}}}\n");
            let error = parse_text(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{field}: {error}");
        }
    }

    #[test]
    fn defaults_are_every_builtin_enforced() {
        let names: Vec<_> = defaults().into_iter().map(|p| (p.name, p.mode)).collect();
        assert_eq!(names.len(), builtin::NAMES.len());
        assert!(names.iter().all(|(_, mode)| *mode == Mode::Enforce));
    }
}
