//! The request a policy receives: the AdmissionRequest as the API server sent it, with `object`
//! (and `oldObject`) replaced by the StatefulSets the policies judge: the expanded object on
//! CREATE and UPDATE, the parent StatefulSet with the requested replicas on a scale.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Serialize;
use serde_json::value::RawValue;

/// `{group, version, kind}` (and `resource` uses the same shape with `resource`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gvk<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

/// The StatefulSet kind, as `check` reports it.
pub const STATEFULSET: Gvk<'static> = Gvk { group: "apps", version: "v1", kind: "StatefulSet" };

/// Serialised once per admission and given to every policy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRequest<'a> {
    pub uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Gvk<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<Gvk<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    pub operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_info: Option<&'a RawValue>,
    pub object: &'a StatefulSet,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_object: Option<&'a StatefulSet>,
    pub dry_run: bool,
}

impl<'a> PolicyRequest<'a> {
    /// A CREATE of `object` without an API server (`check`, tests, benchmarks): no resource, no
    /// subresource, a dry run.
    pub fn create(
        uid: &'a str,
        object: &'a StatefulSet,
        user_info: Option<&'a RawValue>,
    ) -> PolicyRequest<'a> {
        PolicyRequest {
            uid,
            kind: Some(STATEFULSET),
            resource: None,
            sub_resource: None,
            request_kind: Some(STATEFULSET),
            name: object.metadata.name.as_deref(),
            namespace: object.metadata.namespace.as_deref(),
            operation: "CREATE",
            user_info,
            object,
            old_object: None,
            dry_run: true,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("Kubernetes types and strings always serialise")
    }
}
