//! The admission request as policies see it: the view the host sends (the AdmissionRequest JSON
//! with its StatefulSets as [`StatefulSetView`]s, what topology policies read), the whole
//! objects on demand, and accessors for what MySQL policies keep asking about.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::UserInfo;
use serde::Deserialize;

use crate::view::{ContainerView, PodSpecView, StatefulSetView};

/// What the user is doing to the StatefulSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// A new StatefulSet.
    Create,
    /// A change to a stored StatefulSet, including `kubectl scale`.
    Update,
    /// A deletion.
    Delete,
    /// A connect (exec, attach, port-forward); not sent for StatefulSets in practice.
    Connect,
}

/// One admission request about a StatefulSet.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request's UID, for correlating logs.
    pub uid: String,
    /// What is being done.
    pub operation: Operation,
    /// `Some("scale")` for `kubectl scale`; `None` for the StatefulSet itself.
    pub sub_resource: Option<String>,
    /// The StatefulSet's name ("" on a CREATE with `generateName`).
    pub name: String,
    /// The StatefulSet's namespace.
    pub namespace: Option<String>,
    /// The StatefulSet as it will be stored, already expanded by the webhook. On a scale it is the
    /// stored StatefulSet with `spec.replicas` set to the requested count; on a DELETE (which
    /// carries no object) it is the stored one. The fields topology policies read; the whole
    /// object is [`Request::statefulset`].
    pub object: StatefulSetView,
    /// The stored StatefulSet, on UPDATE and scale; the whole is [`Request::old_statefulset`].
    pub old_object: Option<StatefulSetView>,
    /// Who is asking.
    pub user_info: UserInfo,
    /// True for `--dry-run=server`: nothing will be persisted.
    pub dry_run: bool,
    /// Where the whole request comes from, for [`Request::statefulset`].
    whole: Whole,
}

/// Where a [`Request`]'s whole AdmissionRequest (JSON) comes from.
#[derive(Debug, Clone)]
pub enum Whole {
    /// At hand: a request parsed from the whole JSON, or a native test's.
    Json(String),
    /// Asked for when needed: in the host, the world's `request` import, which makes it once per
    /// review and copies it into the policy's memory on each call.
    Host(fn() -> String),
}

/// Only the fields policies use; unknown ones (kind, resource, options, ...) are ignored so the
/// host may send the full AdmissionRequest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionRequest<Object> {
    #[serde(default)]
    uid: String,
    operation: Operation,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Option<Object>,
    #[serde(default)]
    old_object: Option<Object>,
    #[serde(default)]
    user_info: Option<UserInfo>,
    #[serde(default)]
    dry_run: Option<bool>,
}

impl Request {
    /// Parses a whole AdmissionRequest (JSON), as `policy@0.1.0` components received it.
    ///
    /// # Errors
    ///
    /// As [`Request::from_view`].
    pub fn from_json(json: impl Into<String>) -> Result<Self, String> {
        let json = json.into();
        Self::from_view(&json.clone(), Whole::Json(json))
    }

    /// Parses the view the host passes to `validate` (an AdmissionRequest whose objects are
    /// [`StatefulSetView`]s); the whole request, when asked for, comes from `whole`.
    ///
    /// # Errors
    ///
    /// A message naming what was wrong: not JSON, a field of the wrong shape, an object that is
    /// not an apps/v1 StatefulSet, or no object at all outside a DELETE.
    pub fn from_view(view: &str, whole: Whole) -> Result<Self, String> {
        let wire: AdmissionRequest<StatefulSetView> =
            serde_json::from_str(view).map_err(|e| e.to_string())?;
        let (object, old_object) = objects(wire.operation, wire.object, wire.old_object)?;
        object.check_kind()?;
        old_object.as_ref().map(StatefulSetView::check_kind).transpose()?;
        Ok(Self {
            uid: wire.uid,
            operation: wire.operation,
            sub_resource: wire.sub_resource.filter(|s| !s.is_empty()),
            name: wire.name.unwrap_or_default(),
            namespace: wire.namespace,
            object,
            old_object,
            user_info: wire.user_info.unwrap_or_default(),
            dry_run: wire.dry_run.unwrap_or(false),
            whole,
        })
    }

    /// The whole of [`Request::object`] as k8s-openapi types, asked of the host and parsed at
    /// each call: for the fields [`StatefulSetView`] leaves out (commands, probes, security
    /// contexts, ...).
    ///
    /// # Errors
    ///
    /// What of the object does not fit the k8s-openapi types.
    pub fn statefulset(&self) -> Result<StatefulSet, String> {
        self.whole().map(|(object, _)| object)
    }

    /// The whole of [`Request::old_object`], like [`Request::statefulset`].
    ///
    /// # Errors
    ///
    /// What of the object does not fit the k8s-openapi types.
    pub fn old_statefulset(&self) -> Result<Option<StatefulSet>, String> {
        self.whole().map(|(_, old)| old)
    }

    fn whole(&self) -> Result<(StatefulSet, Option<StatefulSet>), String> {
        let json = match &self.whole {
            Whole::Json(json) => std::borrow::Cow::Borrowed(json.as_str()),
            Whole::Host(request) => std::borrow::Cow::Owned(request()),
        };
        let wire: AdmissionRequest<StatefulSet> = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        objects(wire.operation, wire.object, wire.old_object)
    }

    /// Whether this is `kubectl scale` (the `statefulsets/scale` subresource).
    pub fn is_scale(&self) -> bool {
        self.sub_resource.as_deref() == Some("scale")
    }

    /// The StatefulSet's name, from the request or else its metadata.
    pub fn statefulset_name(&self) -> &str {
        if self.name.is_empty() { self.object.metadata.name.as_deref().unwrap_or("") } else { &self.name }
    }

    /// The requested replica count; Kubernetes defaults an absent `spec.replicas` to 1.
    pub fn replicas(&self) -> i32 {
        replicas(&self.object)
    }

    /// The stored replica count, on UPDATE and scale.
    pub fn old_replicas(&self) -> Option<i32> {
        self.old_object.as_ref().map(replicas)
    }

    /// The pod template's spec.
    pub fn pod_spec(&self) -> Option<&PodSpecView> {
        self.object.spec.as_ref()?.template.spec.as_ref()
    }

    /// The pod template's labels (empty when it has none).
    pub fn pod_labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.object
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    /// Init containers, then containers, in order. Ephemeral containers are a different type
    /// (and may not declare resources); their images are in [`Request::images`].
    pub fn containers(&self) -> impl Iterator<Item = (ContainerKind, &ContainerView)> {
        let spec = self.pod_spec();
        let init = spec.into_iter().flat_map(|s| s.init_containers.iter().flatten());
        let regular = spec.into_iter().flat_map(|s| s.containers.iter());
        init.map(|c| (ContainerKind::Init, c)).chain(regular.map(|c| (ContainerKind::Regular, c)))
    }

    /// Every container's image, including ephemeral containers'; containers without an image
    /// are skipped (the API server refuses them anyway).
    pub fn images(&self) -> impl Iterator<Item = ContainerImage<'_>> {
        let ephemeral = self.pod_spec().into_iter().flat_map(|s| s.ephemeral_containers.iter().flatten());
        let containers = self.containers().map(|(kind, c)| (kind, c.name.as_str(), c.image.as_deref()));
        let ephemeral = ephemeral.map(|c| (ContainerKind::Ephemeral, c.name.as_str(), c.image.as_deref()));
        containers
            .chain(ephemeral)
            .filter_map(|(kind, name, image)| Some(ContainerImage { kind, name, image: image? }))
    }
}

/// The object judged (the stored one on a DELETE, which carries none) and the stored one.
fn objects<T: Clone>(
    operation: Operation,
    object: Option<T>,
    old: Option<T>,
) -> Result<(T, Option<T>), String> {
    match (object, operation) {
        (Some(object), _) => Ok((object, old)),
        (None, Operation::Delete) => Ok((old.clone().ok_or("a DELETE without oldObject")?, old)),
        (None, _) => Err("object is missing".into()),
    }
}

fn replicas(sts: &StatefulSetView) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Which list of the pod spec a container is in; its `Display` reads well in messages
/// ("init container clone-mysql: ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `initContainers`.
    Init,
    /// `containers`.
    Regular,
    /// `ephemeralContainers`.
    Ephemeral,
}

impl fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Init => "init container",
            Self::Regular => "container",
            Self::Ephemeral => "ephemeral container",
        })
    }
}

/// A container's image reference, with where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerImage<'a> {
    /// The container's list.
    pub kind: ContainerKind,
    /// The container's name.
    pub name: &'a str,
    /// The image reference as written.
    pub image: &'a str,
}
