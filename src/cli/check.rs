//! `mysql-webhook check` (README.md): the policies, offline, on the expanded manifests, as the
//! webhook's `/validate` would run them on a CREATE. For CI: exit 0 when everything passes, 1
//! when an enforced policy denies, 2 on bad input; findings per object and policy, as aligned
//! text or JSON.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use mysql_webhook_core::consts::LABEL_MANAGED;
use mysql_webhook_core::manifests::{self, InputError};
use mysql_webhook_core::policy_request::PolicyRequest;

use crate::policy::{Evaluation, Failure, FindingResult, Mode, Policies};

/// The user `check` evaluates as, so policies that look at `userInfo` see someone.
const CHECK_USER: &str = r#"{"username":"mysql-webhook-check"}"#;

/// The findings on every opted-in StatefulSet of the input.
#[derive(Debug)]
pub struct Report {
    pub objects: Vec<Checked>,
}

#[derive(Debug)]
pub struct Checked {
    pub namespace: Option<String>,
    pub name: String,
    pub evaluation: Evaluation,
}

/// Expands `text` (multi-document YAML or JSON) and runs `policies` on each StatefulSet the
/// expansion manages. Blocking.
pub fn check(text: &str, policies: &Policies) -> Result<Report, InputError> {
    let documents = manifests::read_documents(text)?;
    let output = manifests::expand_documents(documents, None)?;
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
        let namespace = statefulset.metadata.namespace.clone();
        let name = statefulset.metadata.name.clone().unwrap_or_default();
        let uid = format!("check-{}", index + 1);
        let request = PolicyRequest::create(&uid, &statefulset, Some(&user));
        let evaluation = policies.evaluate(&request.to_json(), None);
        objects.push(Checked { namespace, name, evaluation });
    }
    Ok(Report { objects })
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
    /// pass, deny, warn (a warn-mode deny), error (the policy failed), or warning.
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
        let policies = self.objects.first().map_or(0, |object| object.evaluation.findings.len());
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
        let mut json = serde_json::to_string_pretty(&Json { denied: self.denied(), objects })
            .expect("strings serialise");
        json.push('\n');
        json
    }
}
