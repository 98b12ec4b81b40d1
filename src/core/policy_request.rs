//! The request a policy receives: the AdmissionRequest as the API server sent it, with `object`
//! (and `oldObject`) replaced by the StatefulSets the policies judge: the expanded object on
//! CREATE and UPDATE, the parent StatefulSet with the requested replicas on a scale. A
//! [`PolicyInput`] carries it in both forms the policy worlds take: the view (objects cut to
//! [`StatefulSetView`]) that `policy@0.2.0` components receive, and the whole request that
//! `policy@0.1.0` components receive and 0.2.0 ones may ask for.

use std::sync::{Arc, LazyLock};

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::view::{StatefulSetView, view_of_request};

/// `{group, version, kind}` (and `resource` uses the same shape with `resource`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gvk<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

/// The StatefulSet kind, as `check` reports it.
pub const STATEFULSET: Gvk<'static> = Gvk { group: "apps", version: "v1", kind: "StatefulSet" };

/// The request, with its objects whole (`O` = [`StatefulSet`]) or as views.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRequest<'a, O = StatefulSet> {
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
    pub object: &'a O,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_object: Option<&'a O>,
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

    /// The request with its objects cut to their views, as JSON.
    pub fn view_json(&self) -> String {
        let object = StatefulSetView::of(self.object);
        let old_object = self.old_object.map(StatefulSetView::of);
        self.view_with(&object, old_object.as_ref())
    }

    /// The request about the views `object` and `old_object` (made already), as JSON.
    pub fn view_with(&self, object: &StatefulSetView, old_object: Option<&StatefulSetView>) -> String {
        serde_json::to_string(&self.with_objects(object, old_object))
            .expect("Kubernetes types and strings always serialise")
    }

    /// Both forms, made now: for requests judged once (`check`, the audit, tests).
    pub fn input(&self) -> PolicyInput {
        let whole = self.to_json();
        PolicyInput::new(self.view_json(), move || whole)
    }
}

impl<'a, O> PolicyRequest<'a, O> {
    /// The same request about other objects.
    fn with_objects<'b, P>(&self, object: &'b P, old_object: Option<&'b P>) -> PolicyRequest<'b, P>
    where
        'a: 'b,
    {
        PolicyRequest {
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object,
            old_object,
            dry_run: self.dry_run,
        }
    }
}

type MakeWhole = Box<dyn FnOnce() -> String + Send>;

/// What every policy of one admission receives, shared by the calls (cheap to clone): the view
/// request, made at once, and the whole request, made on first use (a `policy@0.1.0` component,
/// or a 0.2.0 one asking), at most once.
#[derive(Clone)]
pub struct PolicyInput(Arc<Forms>);

struct Forms {
    view: String,
    whole: LazyLock<String, MakeWhole>,
}

impl PolicyInput {
    /// `view` now, the whole request from `whole` when first asked.
    pub fn new(view: String, whole: impl FnOnce() -> String + Send + 'static) -> PolicyInput {
        PolicyInput(Arc::new(Forms { view, whole: LazyLock::new(Box::new(whole)) }))
    }

    /// A request that exists as JSON: its view is cut from it. A request the view can't be cut
    /// from (not an object, an object that is no StatefulSet) is passed whole in both forms, so
    /// every policy reports what is wrong with it.
    pub fn from_json(whole: String) -> PolicyInput {
        let view = view_of_request(&whole).unwrap_or_else(|_| whole.clone());
        PolicyInput::new(view, move || whole)
    }

    /// The request with its objects as views (JSON).
    pub fn view(&self) -> &str {
        &self.0.view
    }

    /// The whole request (JSON), made now if it wasn't.
    pub fn whole(&self) -> &str {
        &self.0.whole
    }
}

impl std::fmt::Debug for PolicyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyInput").field("view", &self.0.view).finish_non_exhaustive()
    }
}
