//! The part of a StatefulSet that topology policies read, parsed without the rest.
//!
//! An expanded StatefulSet is mostly its containers' scripts, probes and environment (about
//! 15 KB of JSON); no built-in policy reads them, and building them into k8s-openapi types was
//! most of a policy's time per request (`benches/policies.rs`). These types keep the field
//! paths of k8s-openapi (`object.spec.template.spec.containers`, ...) and k8s-openapi's own
//! types below them, so policy code reads the same; the JSON they skip is scanned, not built.
//! A policy that needs a field left out here asks [`crate::Request::statefulset`] for the whole
//! object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PersistentVolumeClaim, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;

/// A StatefulSet: its metadata and [`StatefulSetSpecView`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetView {
    /// `apps/v1` when given (checked by [`crate::Request::from_json`]).
    #[serde(default)]
    pub api_version: Option<String>,
    /// `StatefulSet` when given (checked by [`crate::Request::from_json`]).
    #[serde(default)]
    pub kind: Option<String>,
    /// Name, namespace, labels, annotations (the host has removed `managedFields` and kubectl's
    /// last-applied copy).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: Option<StatefulSetSpecView>,
}

impl StatefulSetView {
    /// Refuses an object that says it is something else than an apps/v1 StatefulSet, as
    /// k8s-openapi's own parser does.
    pub(crate) fn check_kind(&self) -> Result<(), String> {
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpecView {
    /// `spec.replicas`; Kubernetes defaults an absent one to 1 (see [`crate::Request::replicas`]).
    #[serde(default)]
    pub replicas: Option<i32>,
    /// `spec.selector`.
    #[serde(default)]
    pub selector: LabelSelector,
    /// `spec.serviceName`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// `spec.template`.
    #[serde(default)]
    pub template: PodTemplateView,
    /// `spec.volumeClaimTemplates`, whole.
    #[serde(default)]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
}

/// `spec.template`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateView {
    /// The pods' labels and annotations.
    #[serde(default)]
    pub metadata: Option<ObjectMeta>,
    /// `spec.template.spec`.
    #[serde(default)]
    pub spec: Option<PodSpecView>,
}

/// `spec.template.spec`: the containers' names, images and resources, and where the pods may
/// be scheduled.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    /// `containers`.
    #[serde(default)]
    pub containers: Vec<ContainerView>,
    /// `initContainers`.
    #[serde(default)]
    pub init_containers: Option<Vec<ContainerView>>,
    /// `ephemeralContainers`.
    #[serde(default)]
    pub ephemeral_containers: Option<Vec<ContainerView>>,
    /// `affinity`, whole.
    #[serde(default)]
    pub affinity: Option<Affinity>,
    /// `topologySpreadConstraints`, whole.
    #[serde(default)]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// `nodeSelector`.
    #[serde(default)]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// `tolerations`.
    #[serde(default)]
    pub tolerations: Option<Vec<Toleration>>,
    /// `priorityClassName`.
    #[serde(default)]
    pub priority_class_name: Option<String>,
}

/// A container's name, image and resources.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    /// `name`.
    pub name: String,
    /// `image`.
    #[serde(default)]
    pub image: Option<String>,
    /// `resources`, whole.
    #[serde(default)]
    pub resources: Option<ResourceRequirements>,
}
