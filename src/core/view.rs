//! The part of a StatefulSet that topology policies read: what the host hands a
//! `policy@0.2.0` component (policies/README.md), and what the policy SDK parses it into.
//!
//! An expanded StatefulSet is mostly its containers' scripts, probes and environment (about
//! 10 KB of JSON, twice that on an UPDATE); no built-in policy reads them, yet scanning them was
//! three quarters of a built-in's call, five times per review (callgrind,
//! `benches/instructions.sh`). The host, which has parsed the object already, makes the view
//! once per review ([`StatefulSetView::of`]) and every policy reads a fifth of the bytes. These
//! types keep the field paths of k8s-openapi (`object.spec.template.spec.containers`, ...) and
//! k8s-openapi's own types below them, so policy code reads the same. A policy that needs a
//! field left out here asks the SDK's `Request::statefulset` for the whole object, which the
//! host makes only then.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Affinity, Container, EphemeralContainer, PersistentVolumeClaim, PodSpec, ResourceRequirements,
    Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::{Map, Value};

use crate::consts::LAST_APPLIED_ANNOTATION;

/// A StatefulSet: its metadata and [`StatefulSetSpecView`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetView {
    /// `apps/v1` when given (checked by [`StatefulSetView::check_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `StatefulSet` when given (checked by [`StatefulSetView::check_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, namespace, labels, annotations (the host has removed `managedFields` and kubectl's
    /// last-applied copy; `managedFields` are skipped when a view is read as well).
    #[serde(default, deserialize_with = "metadata_without_managed_fields")]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<StatefulSetSpecView>,
}

impl StatefulSetView {
    /// The view of `sts`, without the API server's and kubectl's bookkeeping (`managedFields`,
    /// the last-applied copy), as the host hands it to policies.
    pub fn of(sts: &StatefulSet) -> StatefulSetView {
        let spec = sts.spec.as_ref().map(|spec| StatefulSetSpecView {
            replicas: spec.replicas,
            selector: spec.selector.clone(),
            service_name: spec.service_name.clone(),
            template: PodTemplateView {
                metadata: spec.template.metadata.clone(),
                spec: spec.template.spec.as_ref().map(PodSpecView::of),
            },
            volume_claim_templates: spec.volume_claim_templates.clone(),
        });
        StatefulSetView {
            api_version: Some("apps/v1".into()),
            kind: Some("StatefulSet".into()),
            metadata: without_bookkeeping(&sts.metadata),
            spec,
        }
    }

    /// This view without the API server's and kubectl's bookkeeping, for a view parsed from an
    /// object as it came.
    pub fn without_bookkeeping(self) -> StatefulSetView {
        StatefulSetView { metadata: without_bookkeeping(&self.metadata), ..self }
    }

    /// Refuses an object that says it is something else than an apps/v1 StatefulSet, as
    /// k8s-openapi's own parser does.
    pub fn check_kind(&self) -> Result<(), String> {
        let api_version = self.api_version.as_deref().unwrap_or("apps/v1");
        let kind = self.kind.as_deref().unwrap_or("StatefulSet");
        if (api_version, kind) == ("apps/v1", "StatefulSet") {
            Ok(())
        } else {
            Err(format!("the object is a {api_version} {kind}, not an apps/v1 StatefulSet"))
        }
    }
}

/// `spec` of a StatefulSet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpecView {
    /// `spec.replicas`; Kubernetes defaults an absent one to 1 (the SDK's `Request::replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// `spec.selector`.
    #[serde(default)]
    pub selector: LabelSelector,
    /// `spec.serviceName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `spec.template`.
    #[serde(default)]
    pub template: PodTemplateView,
    /// `spec.volumeClaimTemplates`, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
}

/// `spec.template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateView {
    /// The pods' labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    /// `spec.template.spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpecView>,
}

/// `spec.template.spec`: the containers' names, images and resources, and where the pods may
/// be scheduled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    /// `containers`.
    #[serde(default)]
    pub containers: Vec<ContainerView>,
    /// `initContainers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<ContainerView>>,
    /// `ephemeralContainers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Option<Vec<ContainerView>>,
    /// `affinity`, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// `topologySpreadConstraints`, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// `nodeSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// `tolerations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// `priorityClassName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

impl PodSpecView {
    fn of(pod: &PodSpec) -> PodSpecView {
        PodSpecView {
            containers: pod.containers.iter().map(ContainerView::of).collect(),
            init_containers: pod.init_containers.as_ref().map(|c| c.iter().map(ContainerView::of).collect()),
            ephemeral_containers: pod
                .ephemeral_containers
                .as_ref()
                .map(|c| c.iter().map(ContainerView::of_ephemeral).collect()),
            affinity: pod.affinity.clone(),
            topology_spread_constraints: pod.topology_spread_constraints.clone(),
            node_selector: pod.node_selector.clone(),
            tolerations: pod.tolerations.clone(),
            priority_class_name: pod.priority_class_name.clone(),
        }
    }
}

/// A container's name, image and resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    /// `name`.
    pub name: String,
    /// `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `resources`, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl ContainerView {
    fn of(container: &Container) -> ContainerView {
        ContainerView {
            name: container.name.clone(),
            image: container.image.clone(),
            resources: container.resources.clone(),
        }
    }

    fn of_ephemeral(container: &EphemeralContainer) -> ContainerView {
        ContainerView {
            name: container.name.clone(),
            image: container.image.clone(),
            resources: container.resources.clone(),
        }
    }
}

/// `metadata` without `managedFields` and kubectl's last-applied annotation, copied field by
/// field so that the bookkeeping (most of the API server's bytes) is never cloned; naming every
/// field makes a new one in k8s-openapi a compile error here rather than a field lost.
fn without_bookkeeping(metadata: &ObjectMeta) -> ObjectMeta {
    let ObjectMeta {
        annotations,
        creation_timestamp,
        deletion_grace_period_seconds,
        deletion_timestamp,
        finalizers,
        generate_name,
        generation,
        labels,
        managed_fields: _,
        name,
        namespace,
        owner_references,
        resource_version,
        self_link,
        uid,
    } = metadata;
    let annotations = annotations.as_ref().map(|annotations| {
        annotations
            .iter()
            .filter(|(key, _)| key.as_str() != LAST_APPLIED_ANNOTATION)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    });
    ObjectMeta {
        annotations,
        creation_timestamp: creation_timestamp.clone(),
        deletion_grace_period_seconds: *deletion_grace_period_seconds,
        deletion_timestamp: deletion_timestamp.clone(),
        finalizers: finalizers.clone(),
        generate_name: generate_name.clone(),
        generation: *generation,
        labels: labels.clone(),
        managed_fields: None,
        name: name.clone(),
        namespace: namespace.clone(),
        owner_references: owner_references.clone(),
        resource_version: resource_version.clone(),
        self_link: self_link.clone(),
        uid: uid.clone(),
    }
}

/// The view request of a whole policy request (JSON): `object` and `oldObject` cut to their
/// [`StatefulSetView`]s, everything else as it is. For requests that exist only as JSON (the
/// SDK's native tests, a host given JSON); the webhook makes the view from its parsed objects.
///
/// # Errors
///
/// The request is not a JSON object, or an object is not shaped like a StatefulSet.
pub fn view_of_request(whole: &str) -> Result<String, serde_json::Error> {
    let mut request: Map<String, Value> = serde_json::from_str(whole)?;
    for key in ["object", "oldObject"] {
        if let Some(object) = request.get_mut(key).filter(|object| !object.is_null()) {
            let view = StatefulSetView::deserialize(&*object)?.without_bookkeeping();
            *object = serde_json::to_value(view)?;
        }
    }
    serde_json::to_string(&request)
}

/// `ObjectMeta` read without `managedFields` (skipped unread): nothing admission reads needs
/// them, and they are a large part of the API server's bytes (README "Performance").
pub(crate) fn metadata_without_managed_fields<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ObjectMeta, D::Error> {
    struct Metadata;
    impl<'de> de::Visitor<'de> for Metadata {
        type Value = ObjectMeta;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ObjectMeta")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<ObjectMeta, A::Error> {
            ObjectMeta::deserialize(de::value::MapAccessDeserializer::new(SkipManagedFields(map)))
        }
    }
    deserializer.deserialize_map(Metadata)
}

/// The members of a map but `managedFields`, whose value is skipped unread.
struct SkipManagedFields<A>(A);

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for SkipManagedFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.0.next_key::<String>()? {
            if key == "managedFields" {
                self.0.next_value::<de::IgnoredAny>()?;
                continue;
            }
            return seed.deserialize(de::value::StringDeserializer::<A::Error>::new(key)).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}
