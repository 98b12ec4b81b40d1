//! The objects an expanded StatefulSet needs beside it: the ConfigMap of server configuration,
//! the headless and read Services, the PodDisruptionBudget and the credentials Secret. Pure
//! functions of the [`Plan`]; the controller adds the owner reference and applies them, `mutate`
//! prints them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::consts::*;
use crate::plan::Plan;
use crate::scripts;

/// The companions applied for every managed StatefulSet (the Secret is separate: it is created
/// only when missing and never printed by default).
#[derive(Debug, Clone, PartialEq)]
pub struct Companions {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub read_service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
}

impl Companions {
    pub fn for_plan(plan: &Plan) -> Companions {
        Companions {
            config_map: config_map(plan),
            headless_service: service(plan, &plan.service_name, true),
            read_service: service(plan, &plan.read_service, false),
            pod_disruption_budget: pod_disruption_budget(plan),
        }
    }
}

/// The root and replication passwords of a new credentials Secret. The caller brings the
/// random generator (the core does no IO); see [`Credentials::generate`].
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub root_password: String,
    pub replication_password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Two independent 32-character alphanumeric passwords (about 190 bits each) from `rng`,
    /// which must be a cryptographic generator (the shells pass the OS's). Alphanumeric: safe in
    /// SQL, shell and YAML without quoting.
    pub fn generate(rng: &mut impl rand::Rng) -> Credentials {
        use rand::distr::{Alphanumeric, Distribution};
        let mut password = || Alphanumeric.sample_iter(&mut *rng).take(32).map(char::from).collect();
        Credentials { root_password: password(), replication_password: password() }
    }
}

fn metadata(plan: &Plan, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: plan.namespace.clone(),
        labels: Some(BTreeMap::from([
            (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
            (LABEL_STATEFULSET.into(), plan.name.clone()),
        ])),
        ..Default::default()
    }
}

pub fn config_map(plan: &Plan) -> ConfigMap {
    ConfigMap {
        metadata: metadata(plan, &plan.config_map),
        data: Some(
            scripts::config(plan.flavor).into_iter().map(|(key, value)| (key.into(), value)).collect(),
        ),
        ..Default::default()
    }
}

/// The headless Service gives members their stable DNS names (`<sts>-N.<service>`); the read
/// Service spreads reads over ready members.
fn service(plan: &Plan, name: &str, headless: bool) -> Service {
    Service {
        metadata: metadata(plan, name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".into()),
            selector: Some(plan.selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME_MYSQL.into()),
                port: PORT_MYSQL,
                target_port: Some(IntOrString::Int(PORT_MYSQL)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod_disruption_budget(plan: &Plan) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(plan, &plan.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(plan.selector.clone()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The credentials Secret with the given passwords.
pub fn credentials_secret(plan: &Plan, credentials: &Credentials) -> Secret {
    Secret {
        metadata: metadata(plan, &plan.secret),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (SECRET_KEY_ROOT_PASSWORD.into(), ByteString(credentials.root_password.clone().into_bytes())),
            (
                SECRET_KEY_REPLICATION_PASSWORD.into(),
                ByteString(credentials.replication_password.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}
