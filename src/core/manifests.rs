//! Offline expansion of manifest files, for `mysql-webhook mutate`: multi-document YAML or JSON
//! in, every opted-in StatefulSet expanded with its companions after it, everything else as it
//! was. All documents are checked before anything is returned, so bad input produces no output.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use k8s_openapi::api::core::v1::Secret;

use crate::companions::Companions;
use crate::consts::ANNOTATION_REPLICATED;
use crate::mutate::{MutateError, Operation, mutate};
use crate::plan::Plan;

/// Makes the Secrets `--with-secret` adds for a StatefulSet (the pure core has no randomness).
pub type SecretMaker<'a> = &'a mut dyn FnMut(&Plan) -> Result<Vec<Secret>, String>;

/// Bad input: names the document (1-based index, kind/name) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input is not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("document {index} ({label}): {problem}")]
    Document { index: usize, label: String, problem: String },
}

/// What `mutate` prints, and the notes it says on stderr.
#[derive(Debug)]
pub struct Output {
    pub documents: Vec<Value>,
    pub notes: Vec<String>,
}

/// Reads every document of `text`: a stream of JSON values when it starts like JSON, otherwise
/// multi-document YAML. Empty documents are skipped.
pub fn read_documents(text: &str) -> Result<Vec<Value>, InputError> {
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| InputError::Syntax(e.to_string()))?
    } else {
        serde_yaml_ng::Deserializer::from_str(text)
            .map(Value::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| InputError::Syntax(e.to_string()))?
    };
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Expands every opted-in StatefulSet in `documents` (a `v1 List`'s items too). With `secrets`,
/// the Secrets it makes (credentials, TLS identity) follow each one; an object already present in
/// the input (the output of an earlier run) is kept, so running twice changes nothing.
pub fn expand_documents(
    documents: Vec<Value>,
    mut secrets: Option<SecretMaker<'_>>,
) -> Result<Output, InputError> {
    let present: HashSet<Identity> = documents.iter().flat_map(objects).filter_map(identity).collect();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (position, mut document) in documents.into_iter().enumerate() {
        let index = position + 1;
        let is_new = |generated: &Value| identity(generated).is_none_or(|id| !present.contains(&id));
        if is_list(&document) {
            // A List keeps its shape: each item's companions follow it inside the List.
            let items = std::mem::take(&mut document["items"]).as_array().cloned().unwrap_or_default();
            let mut expanded = Vec::with_capacity(items.len());
            for mut item in items {
                let generated = expand_object(&mut item, index, &mut secrets, &mut notes)?;
                expanded.push(item);
                expanded.extend(generated.into_iter().filter(is_new));
            }
            document["items"] = Value::Array(expanded);
            out.push(document);
        } else {
            let generated = expand_object(&mut document, index, &mut secrets, &mut notes)?;
            out.push(document);
            out.extend(generated.into_iter().filter(is_new));
        }
    }
    Ok(Output { documents: out, notes })
}

/// Expands one object in place when it is an opted-in StatefulSet; returns its companions.
fn expand_object(
    object: &mut Value,
    index: usize,
    secrets: &mut Option<SecretMaker<'_>>,
    notes: &mut Vec<String>,
) -> Result<Vec<Value>, InputError> {
    let label = label(object);
    let fail = |problem: String| InputError::Document { index, label: label.clone(), problem };
    if !object.is_object() {
        return Err(fail("not a Kubernetes object (a mapping with apiVersion and kind)".into()));
    }
    let kind = object.get("kind").and_then(Value::as_str);
    if kind.is_none() || object.get("apiVersion").and_then(Value::as_str).is_none() {
        return Err(fail("apiVersion and kind are required".into()));
    }
    if kind != Some("StatefulSet") {
        return Ok(Vec::new());
    }
    if object.get("apiVersion").and_then(Value::as_str) != Some("apps/v1") {
        let replicated = object.pointer("/metadata/annotations").and_then(|a| a.get(ANNOTATION_REPLICATED));
        return match replicated {
            Some(_) => Err(fail("only apps/v1 StatefulSets can be expanded; set apiVersion: apps/v1".into())),
            None => Ok(Vec::new()),
        };
    }
    let mutation = match mutate(object, Operation::Create, None) {
        Ok(Some(mutation)) => mutation,
        Ok(None) => return Ok(Vec::new()),
        Err(MutateError::Refused(invalid)) => return Err(fail(invalid.to_string())),
        Err(MutateError::Malformed(e)) => return Err(fail(format!("not a valid apps/v1 StatefulSet: {e}"))),
    };
    json_patch::patch(object, &mutation.patch.operations())
        .map_err(|e| fail(format!("internal error applying the expansion: {e}")))?;

    let plan = &mutation.plan;
    let companions = Companions::for_plan(plan);
    let mut generated = vec![
        to_value(&companions.config_map),
        to_value(&companions.headless_service),
        to_value(&companions.read_service),
        to_value(&companions.pod_disruption_budget),
        to_value(&companions.network_policy),
    ];
    generated.extend(companions.certificate);
    generated.extend(companions.backup_cron_job.as_ref().map(to_value));
    match secrets {
        Some(make) => generated.extend(make(plan).map_err(fail)?.iter().map(to_value)),
        None => notes.push(format!(
            "document {index} ({label}): Secrets {:?} and {:?} not emitted: secrets don't belong in Git; \
             the controller creates them in the cluster, or pass --with-secret",
            plan.secret, plan.tls_secret
        )),
    }
    Ok(generated)
}

/// Renders documents as multi-document YAML.
pub fn to_yaml(documents: &[Value]) -> String {
    documents.iter().map(crate::yaml::to_string).collect::<Vec<_>>().join("---\n")
}

fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("Kubernetes types always serialise")
}

fn is_list(document: &Value) -> bool {
    document.get("kind").and_then(Value::as_str) == Some("List")
        && document.get("items").is_some_and(Value::is_array)
}

/// The objects of a document: itself, or a List's items.
pub fn objects(document: &Value) -> Vec<&Value> {
    if is_list(document) {
        document["items"].as_array().map(|items| items.iter().collect()).unwrap_or_default()
    } else {
        vec![document]
    }
}

type Identity = (String, String, String, String);

fn identity(object: &Value) -> Option<Identity> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    Some((
        text("/apiVersion")?,
        text("/kind")?,
        text("/metadata/namespace").unwrap_or_default(),
        text("/metadata/name")?,
    ))
}

/// `Kind/name` for messages, as far as the document says.
pub fn label(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("object");
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind}/{name}"),
        None => format!("{kind} without a name"),
    }
}
