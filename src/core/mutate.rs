//! The engine's entry point, shared by the webhook and the CLI: an object as JSON in, the
//! expansion and the minimal JSON Patch that produces it out.
//!
//! The patch is the difference between the submitted object *as Kubernetes types* and the
//! expansion. Comparing typed forms (not the raw JSON) matters: the API server sends
//! `creationTimestamp: null` and other serialisation noise that a raw diff would turn into
//! spurious operations, and then an expanded object would never yield an empty patch. The
//! patch is written as the expansion is serialised ([`crate::patch`]).

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Deserialize;
use serde_json::Value;

use crate::consts::{ANNOTATION_RESTORE_FROM, ANNOTATION_RESTORE_TO_TIME, ANNOTATION_STORAGE, VOLUME_DATA};
use crate::expand::expand;
use crate::patch::{self, JsonPatch};
use crate::plan::{Plan, PlanError, parse_restore_from, parse_rfc3339, plan};
use crate::view::StatefulSetView;

/// What the request does to the object.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    Create,
    /// An update, with the object as it is stored.
    Update {
        old: &'a Value,
    },
}

/// The result of expanding one StatefulSet.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub plan: Plan,
    pub expanded: StatefulSet,
    /// Empty when the object is already expanded.
    pub patch: JsonPatch,
    /// Defaults filled in and edits that can't take effect, for the user.
    pub warnings: Vec<String>,
}

/// Why an object can't be mutated.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// The object doesn't have the shape of a StatefulSet: the request is malformed.
    #[error("the object is not a valid apps/v1 StatefulSet: {0}")]
    Malformed(#[source] serde_json::Error),
    /// A well-formed StatefulSet that can't be expanded as asked: the user's mistake, denied.
    #[error(transparent)]
    Refused(#[from] PlanError),
}

/// Expands `object` (a StatefulSet as JSON), or `None` when it isn't opted in.
/// `namespace` is the request's, used when the object carries none.
pub fn mutate(
    object: &Value,
    operation: Operation<'_>,
    namespace: Option<&str>,
) -> Result<Option<Mutation>, MutateError> {
    let old = match operation {
        Operation::Update { old } => Some(StatefulSetView::deserialize(old).map_err(MutateError::Malformed)?),
        Operation::Create => None,
    };
    mutate_statefulset(&parse(object)?, old.as_ref(), namespace)
}

/// [`mutate`] on objects already parsed (the webhook parses the review's object straight into
/// a StatefulSet); `old` is the stored object of an update, of which only what the view holds is
/// read (its service name, annotations and claim templates), so it is parsed as one: building
/// its scripts was a fifth of an UPDATE's cost.
pub fn mutate_statefulset(
    submitted: &StatefulSet,
    old: Option<&StatefulSetView>,
    namespace: Option<&str>,
) -> Result<Option<Mutation>, MutateError> {
    let Some(plan) = plan(submitted, namespace)? else { return Ok(None) };
    let mut expanded = expand(submitted, &plan);
    let mut warnings = Vec::new();
    if let Some(old) = old {
        check_update(old, &plan, &mut warnings)?;
        keep_immutable_fields(&mut expanded, submitted);
    }
    // Every update of an expanded StatefulSet, and the reinvocation after another webhook's
    // patch, arrives already expanded: equal typed forms serialise equally, so the JSON diff
    // (most of a review's cost, the scripts being most of the bytes) would find nothing.
    let patch = if expanded == *submitted {
        JsonPatch::empty()
    } else {
        patch::diff(submitted, &expanded).map_err(MutateError::Malformed)?
    };
    if !patch.is_empty() {
        warnings.extend(plan.defaults.iter().cloned());
    }
    Ok(Some(Mutation { plan, expanded, patch, warnings }))
}

fn parse(object: &Value) -> Result<StatefulSet, MutateError> {
    StatefulSet::deserialize(object).map_err(MutateError::Malformed)
}

/// An update can't add what only a create can: the claim template and the service name are
/// immutable, so a StatefulSet created without the expansion can't be converted in place.
fn check_update(old: &StatefulSetView, plan: &Plan, warnings: &mut Vec<String>) -> Result<(), PlanError> {
    let spec = old.spec.as_ref();
    if spec.and_then(|s| s.service_name.as_deref()).is_none_or(str::is_empty) {
        return Err(PlanError::NoServiceNameOnUpdate);
    }
    // Only a new StatefulSet's first member starts from a backup: one that runs has its data.
    if let Some(restore) = &plan.backups.restore {
        let before = old.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_RESTORE_FROM));
        let before = before.and_then(|value| parse_restore_from(value).ok());
        let annotations = old.metadata.annotations.as_ref();
        let time_before = annotations.and_then(|a| a.get(ANNOTATION_RESTORE_TO_TIME));
        let time_before = time_before.and_then(|value| parse_rfc3339(value).ok());
        if before != Some((restore.source.clone(), restore.id.clone())) || time_before != restore.to_time {
            return Err(PlanError::RestoreOnUpdate);
        }
    }
    let claims = spec.and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default();
    let Some(data) = claims.iter().find(|c| c.metadata.name.as_deref() == Some(VOLUME_DATA)) else {
        return Err(PlanError::NotExpandedAtCreation);
    };
    let size = data.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
    let size = size.and_then(|r| r.get("storage")).map(|q| q.0.as_str());
    if size.is_some_and(|size| size != plan.storage) {
        warnings.push(format!(
            "annotation {ANNOTATION_STORAGE} is {:?} but the claims were made with {:?}; \
             volumeClaimTemplates can't change: resize each PersistentVolumeClaim instead",
            plan.storage,
            size.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Fields Kubernetes refuses to change after creation stay as submitted, so an edit of replicas
/// or image is never turned into a rejected update.
fn keep_immutable_fields(expanded: &mut StatefulSet, submitted: &StatefulSet) {
    let (Some(out), Some(input)) = (expanded.spec.as_mut(), submitted.spec.as_ref()) else { return };
    out.selector = input.selector.clone();
    out.service_name = input.service_name.clone();
    out.pod_management_policy = input.pod_management_policy.clone();
    out.volume_claim_templates = input.volume_claim_templates.clone();
}
