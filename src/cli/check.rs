//! `mysql-webhook check` (README.md): the policies, offline, on the expanded manifests, as the
//! webhook's `/validate` would run them on a CREATE. For CI: exit 0 when everything passes, 1
//! when an enforced policy denies, 2 on bad input; findings per object and policy, as aligned
//! text or JSON.
//!
//! Policies are scoped as the webhook scopes them (`scope` in the core). Without a cluster, a
//! namespace's labels come from `--namespace-labels`, else from a Namespace in the input, else
//! they are assumed to be only `kubernetes.io/metadata.name`; the report says which.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use mysql_webhook_core::consts::LABEL_MANAGED;
use mysql_webhook_core::manifests::{self, InputError};
use mysql_webhook_core::policy_request::PolicyRequest;
use mysql_webhook_core::scope::{Labels, Subject, namespace_labels};

use crate::policy::{Evaluation, Failure, FindingResult, Mode, Policies, Target};

/// The user `check` evaluates as, so policies that look at `userInfo` see someone.
const CHECK_USER: &str = r#"{"username":"mysql-webhook-check"}"#;

/// The findings on every opted-in StatefulSet of the input.
#[derive(Debug)]
pub struct Report {
    pub objects: Vec<Checked>,
    /// The labels used for each namespace of the objects, in order of appearance.
    pub namespaces: Vec<AssumedNamespace>,
}

/// Where `check` took a namespace's labels from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelSource {
    /// `--namespace-labels`.
    Flag,
    /// A Namespace document in the input.
    Manifests,
    /// Neither: only the label the API server sets.
    Assumed,
}

#[derive(Debug, Serialize)]
pub struct AssumedNamespace {
    pub name: String,
    pub labels: Labels,
    pub source: LabelSource,
}

impl AssumedNamespace {
    /// What `check` says on stderr about this namespace.
    pub fn note(&self) -> String {
        let labels = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let from = match self.source {
            LabelSource::Flag => "from --namespace-labels",
            LabelSource::Manifests => "from its Namespace in the input",
            LabelSource::Assumed => {
                "assumed: no Namespace in the input and no --namespace-labels, so only the label the API server sets"
            }
        };
        format!("namespace {}: labels {labels} ({from})", self.name)
    }
}

/// Parses `--namespace-labels` values: `NAMESPACE=KEY=VALUE[,KEY=VALUE…]`, or `NAMESPACE=` for
/// a namespace without labels.
pub fn parse_namespace_labels(text: &str) -> Result<(String, Labels), String> {
    let usage = "use NAMESPACE=KEY=VALUE[,KEY=VALUE…], e.g. shop=team=payments,tier=prod";
    let (namespace, pairs) =
        text.split_once('=').ok_or_else(|| format!("{text:?} names no namespace; {usage}"))?;
    if !mysql_webhook_core::names::NameRule::Dns1123Label.accepts(namespace) {
        return Err(format!("{namespace:?} is not a namespace name; {usage}"));
    }
    let mut labels = Labels::new();
    for pair in pairs.split(',').filter(|pair| !pair.is_empty()) {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| format!("label {pair:?} has no value; {usage}"))?;
        if key.is_empty() {
            return Err(format!("label {pair:?} has no key; {usage}"));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok((namespace.to_owned(), labels))
}

#[derive(Debug)]
pub struct Checked {
    pub namespace: Option<String>,
    pub name: String,
    pub evaluation: Evaluation,
}

/// Expands `text` (multi-document YAML or JSON) and runs `policies` on each StatefulSet the
/// expansion manages, scoped with namespace labels from `given` (`--namespace-labels`), else
/// the input's Namespaces, else assumed. Blocking.
pub fn check(
    text: &str,
    policies: &Policies,
    given: &BTreeMap<String, Labels>,
) -> Result<Report, InputError> {
    let documents = manifests::read_documents(text)?;
    let output = manifests::expand_documents(documents, None)?;
    let in_input: BTreeMap<&str, Option<&Value>> = output
        .documents
        .iter()
        .flat_map(manifests::objects)
        .filter(|object| {
            object.get("kind").and_then(Value::as_str) == Some("Namespace")
                && object.get("apiVersion").and_then(Value::as_str) == Some("v1")
        })
        .filter_map(|object| {
            let name = object.pointer("/metadata/name").and_then(Value::as_str)?;
            Some((name, object.pointer("/metadata/labels")))
        })
        .collect();
    let mut namespaces: Vec<AssumedNamespace> = Vec::new();
    let user: Box<RawValue> = RawValue::from_string(CHECK_USER.to_owned()).expect("a JSON object");
    let mut objects = Vec::new();
    let documents = output.documents.iter().enumerate();
    let statefulsets = documents
        .flat_map(|(position, document)| {
            manifests::objects(document).into_iter().map(move |object| (position, object))
        })
        .filter(|(_, object)| is_managed_statefulset(object));
    for (index, (position, object)) in statefulsets.enumerate() {
        // Labelled as managed by hand, or by an earlier run, without being opted in: it was
        // not expanded, so it may not even be a StatefulSet the policies can read.
        let statefulset = StatefulSet::deserialize(object).map_err(|e| InputError::Document {
            index: position + 1,
            label: manifests::label(object),
            problem: format!("labelled {LABEL_MANAGED}=true but not a valid apps/v1 StatefulSet: {e}"),
        })?;
        let invalid = |problem: String| InputError::Document {
            index: position + 1,
            label: manifests::label(object),
            problem,
        };
        let subject = Subject::of(&statefulset, None).map_err(|e| invalid(e.to_string()))?;
        if !namespaces.iter().any(|known| known.name == subject.namespace) {
            let name = subject.namespace.clone();
            let assumed = match (given.get(&name), in_input.get(name.as_str())) {
                (Some(labels), _) => {
                    AssumedNamespace { labels: labels.clone(), name, source: LabelSource::Flag }
                }
                (None, Some(labels)) => {
                    let labels =
                        labels.map(|labels| serde_json::from_value::<Labels>(labels.clone())).transpose();
                    let labels = labels
                        .map_err(|e| invalid(format!("the labels of Namespace {name} can't be read: {e}")))?;
                    AssumedNamespace {
                        labels: labels.unwrap_or_default(),
                        name,
                        source: LabelSource::Manifests,
                    }
                }
                (None, None) => {
                    AssumedNamespace { labels: Labels::new(), name, source: LabelSource::Assumed }
                }
            };
            namespaces.push(AssumedNamespace {
                labels: namespace_labels(&assumed.name, Some(&assumed.labels)),
                ..assumed
            });
        }
        let labels =
            namespaces.iter().find(|known| known.name == subject.namespace).map(|known| &known.labels);
        let name = statefulset.metadata.name.clone().unwrap_or_default();
        let uid = format!("check-{}", index + 1);
        let request = PolicyRequest::create(&uid, &statefulset, Some(&user));
        let target = Target { subject: &subject, namespace_labels: labels };
        let evaluation = policies.evaluate_scoped(&request.input(), target, None);
        objects.push(Checked { namespace: statefulset.metadata.namespace.clone(), name, evaluation });
    }
    Ok(Report { objects, namespaces })
}

fn is_managed_statefulset(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("StatefulSet")
        && object.get("apiVersion").and_then(Value::as_str) == Some("apps/v1")
        && object
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(LABEL_MANAGED))
            .and_then(Value::as_str)
            == Some("true")
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Line<'a> {
    policy: &'a str,
    mode: &'static str,
    /// pass, deny, warn (a warn-mode deny), error (the policy failed), excepted (not run: an
    /// allowed exception), or warning.
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    denies: bool,
}

impl Checked {
    /// `StatefulSet/name` or `StatefulSet/namespace/name`.
    fn label(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("StatefulSet/{namespace}/{}", self.name),
            None => format!("StatefulSet/{}", self.name),
        }
    }

    fn lines(&self) -> Vec<Line<'_>> {
        self.evaluation
            .findings
            .iter()
            .map(|finding| {
                let (verdict, message) = match (&finding.result, finding.mode) {
                    (FindingResult::Allowed, _) => ("pass", None),
                    (FindingResult::Denied(message), Mode::Enforce) => ("deny", Some(message.clone())),
                    (FindingResult::Denied(message), Mode::Warn) => ("warn", Some(message.clone())),
                    (FindingResult::Failed { fault, failure }, mode) => {
                        let effect = match (failure, mode) {
                            (Failure::Deny, Mode::Enforce) => "denies",
                            _ => "allowed",
                        };
                        ("error", Some(format!("policy failed ({effect}): {fault}")))
                    }
                    (FindingResult::Excepted, _) => (
                        "excepted",
                        Some(
                            "not evaluated: excepted by annotation mysql-webhook.io/policy-exceptions"
                                .to_owned(),
                        ),
                    ),
                    (FindingResult::ExceptionRefused(why), _) => ("deny", Some(why.clone())),
                };
                Line {
                    policy: &finding.policy,
                    mode: finding.mode.as_str(),
                    verdict,
                    message,
                    warnings: finding.warnings.iter().map(String::as_str).collect(),
                    denies: finding.denial().is_some(),
                }
            })
            .collect()
    }
}

impl Report {
    /// Does an enforced policy deny (exit 1)?
    pub fn denied(&self) -> bool {
        self.objects.iter().any(|object| !object.evaluation.allowed())
    }

    /// Aligned columns: object, policy, verdict, message; a policy's warnings on lines of their
    /// own; a summary last.
    pub fn to_text(&self) -> String {
        if self.objects.is_empty() {
            return "no opted-in StatefulSets (annotation mysql-webhook.io/replicated: \"true\") in the input\n".into();
        }
        let mut rows: Vec<[String; 4]> = Vec::new();
        for object in &self.objects {
            let label = object.label();
            for line in object.lines() {
                let verdict = if line.denies { "DENY" } else { line.verdict };
                rows.push([
                    label.clone(),
                    line.policy.to_owned(),
                    verdict.to_owned(),
                    line.message.unwrap_or_default(),
                ]);
                for warning in line.warnings {
                    rows.push([label.clone(), line.policy.to_owned(), "warning".into(), warning.to_owned()]);
                }
            }
        }
        let width = |column: usize| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0);
        let (object_width, policy_width, verdict_width) = (width(0), width(1), width(2));
        let mut text = String::new();
        for [object, policy, verdict, message] in &rows {
            let line = format!(
                "{object:object_width$}  {policy:policy_width$}  {verdict:verdict_width$}  {message}"
            );
            text.push_str(line.trim_end());
            text.push('\n');
        }
        let denied = self.objects.iter().filter(|object| !object.evaluation.allowed()).count();
        // Scopes differ per object: count the policies that judged at least one.
        let policies = self
            .objects
            .iter()
            .flat_map(|object| object.evaluation.findings.iter().map(|finding| finding.policy.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        text.push_str(&format!(
            "{} StatefulSet(s), {policies} policies: {}\n",
            self.objects.len(),
            match denied {
                0 => "all pass".to_owned(),
                n => format!("{n} denied"),
            }
        ));
        text
    }

    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Object<'a> {
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            namespace: Option<&'a str>,
            name: &'a str,
            allowed: bool,
            findings: Vec<Line<'a>>,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            denied: bool,
            objects: Vec<Object<'a>>,
            namespaces: &'a [AssumedNamespace],
        }
        let objects = self
            .objects
            .iter()
            .map(|object| Object {
                kind: "StatefulSet",
                namespace: object.namespace.as_deref(),
                name: &object.name,
                allowed: object.evaluation.allowed(),
                findings: object.lines(),
            })
            .collect();
        let mut json = serde_json::to_string_pretty(&Json {
            denied: self.denied(),
            objects,
            namespaces: &self.namespaces,
        })
        .expect("strings serialise");
        json.push('\n');
        json
    }
}
