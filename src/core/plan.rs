//! From an annotated StatefulSet to a [`Plan`]: every annotation parsed and validated, every
//! default resolved, every name decided. Pure: the webhook, the controller and the CLI all start
//! here, and a bad value is refused here with a message naming the annotation, the value and what
//! is accepted.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar};

use crate::consts::*;
use crate::flavor::{Flavor, ImageFlavorError, flavor_from_image};
use crate::image;
use crate::names::NameRule;
use crate::quantity::Quantity;

/// Why a StatefulSet can't be expanded. Each message names what was wrong and what is accepted;
/// the webhook returns it as the denial, the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("annotation {key}: {value:?} is not accepted; use \"true\" or \"false\"")]
    NotBoolean { key: &'static str, value: String },
    #[error("annotation {key} is not known; known annotations: {}", KNOWN_ANNOTATIONS.join(", "))]
    UnknownAnnotation { key: String },
    #[error(
        "annotation {ANNOTATION_STORAGE}: {value:?} is not a Kubernetes quantity; use a size such as 10Gi, 500Mi or 1Ti"
    )]
    BadStorage { value: String },
    #[error("annotation {ANNOTATION_STORAGE}: {value:?} is not a positive size; use a size such as 10Gi")]
    StorageNotPositive { value: String },
    #[error("annotation {key}: {value:?} is not a valid {what}; {rule}")]
    BadName { key: &'static str, value: String, what: &'static str, rule: &'static str },
    #[error(
        "annotation {ANNOTATION_FLAVOR}: {value:?} is not a flavor; accepted: mysql-8.4, mysql-8.0, mysql-5.7, mariadb"
    )]
    UnknownFlavor { value: String },
    #[error(
        "cannot derive the flavor: {source}; set annotation {ANNOTATION_FLAVOR} to one of mysql-8.4, mysql-8.0, mysql-5.7, mariadb"
    )]
    FlavorNotDerivable { source: ImageFlavorError },
    #[error(
        "annotation {ANNOTATION_BACKUP_IMAGE}: {value:?} is not an image reference; use e.g. percona/percona-xtrabackup:8.4"
    )]
    BadImage { value: String },
    #[error(
        "annotation {ANNOTATION_READ_SERVICE}: {value:?} is the headless Service's name; the read Service needs a name of its own"
    )]
    ReadServiceClash { value: String },
    #[error(
        "annotation {ANNOTATION_POLICY_EXCEPTIONS}: {value:?} is not accepted: {problem}; use policy names separated by commas, e.g. \"replica-quorum,spread\""
    )]
    BadPolicyExceptions { value: String, problem: String },
    #[error(
        "metadata.name is required: every peer and companion is named after the StatefulSet (generateName is not supported)"
    )]
    NoName,
    #[error("{what} {value:?} is not a valid Service name ({rule}); {hint}")]
    BadServiceName { what: &'static str, value: String, rule: &'static str, hint: String },
    #[error("spec.template.spec.containers is empty; add the mysql container")]
    NoContainers,
    #[error("no container is named \"mysql\" among {names:?}; name the database container \"mysql\"")]
    NoMysqlContainer { names: Vec<String> },
    #[error("container \"mysql\" has no image; set e.g. image: mysql:8.4")]
    NoImage,
    #[error(
        "spec.selector.matchLabels is empty; the Services and the PodDisruptionBudget select members by these labels"
    )]
    NoSelectorLabels,
    #[error(
        "spec.podManagementPolicy Parallel is not supported: each member clones from the previous one, so they must start in order (OrderedReady)"
    )]
    ParallelPods,
    #[error(
        "container \"mysql\" sets {name}, which leaves root without a known password; remove it: the password comes from Secret {secret:?}"
    )]
    InsecurePassword { name: String, secret: String },
    #[error(
        "container \"mysql\" sets {name} to a literal value; remove it: the password comes from Secret {secret:?} (annotation {ANNOTATION_ROOT_PASSWORD_SECRET})"
    )]
    LiteralPassword { name: String, secret: String },
    #[error(
        "{ANNOTATION_REPLICATED} was added to an existing StatefulSet that has no \"data\" volumeClaimTemplate; volumeClaimTemplates can't change after creation: delete the StatefulSet with --cascade=orphan and apply it again"
    )]
    NotExpandedAtCreation,
    #[error(
        "{ANNOTATION_REPLICATED} was added to an existing StatefulSet without spec.serviceName; serviceName can't change after creation: delete it with --cascade=orphan and apply it again"
    )]
    NoServiceNameOnUpdate,
}

/// Where the flavor came from; said back to the user as a warning when it was derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlavorSource {
    Annotation,
    Image,
}

/// Everything the expansion and the companions need, decided once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub namespace: Option<String>,
    /// The headless Service: the StatefulSet's `serviceName`, `<name>` when absent.
    pub service_name: String,
    pub read_service: String,
    pub config_map: String,
    pub secret: String,
    pub flavor: Flavor,
    pub flavor_source: FlavorSource,
    /// Index of the mysql container in the pod template.
    pub mysql_container: usize,
    pub mysql_image: String,
    pub backup_image: String,
    pub storage: String,
    pub storage_class: Option<String>,
    pub metrics: bool,
    /// `spec.selector.matchLabels`: what Services and the PDB select.
    pub selector: BTreeMap<String, String>,
    /// `spec.ordinals.start`.
    pub first_ordinal: i32,
    /// Defaults the plan filled in, said back to the user as warnings.
    pub defaults: Vec<String>,
}

/// Is this StatefulSet opted in? `Ok(false)` for no annotation or `"false"`.
pub fn is_replicated(sts: &StatefulSet) -> Result<bool, PlanError> {
    match annotation(sts, ANNOTATION_REPLICATED) {
        None => Ok(false),
        Some(value) => parse_bool(ANNOTATION_REPLICATED, value),
    }
}

/// Plans the expansion of `sts`, or `None` when it isn't opted in. `namespace` is the request's
/// namespace, used when the object doesn't carry one.
pub fn plan(sts: &StatefulSet, namespace: Option<&str>) -> Result<Option<Plan>, PlanError> {
    if !is_replicated(sts)? {
        return Ok(None);
    }
    for key in annotations(sts).keys() {
        if key.starts_with(PREFIX) && !KNOWN_ANNOTATIONS.contains(&key.as_str()) {
            return Err(PlanError::UnknownAnnotation { key: key.clone() });
        }
    }
    let name = sts.metadata.name.clone().filter(|n| !n.is_empty()).ok_or(PlanError::NoName)?;
    let mut defaults = Vec::new();

    let spec = sts.spec.as_ref();
    let service_name = match spec.and_then(|s| s.service_name.as_deref()).filter(|s| !s.is_empty()) {
        Some(service) => service.to_owned(),
        None => {
            defaults.push(format!("spec.serviceName set to {name:?} (the headless Service)"));
            name.clone()
        }
    };
    check_service_name(
        "the headless Service name (spec.serviceName or metadata.name)",
        &service_name,
        || "set spec.serviceName to a short name".into(),
    )?;

    let read_service = match annotation(sts, ANNOTATION_READ_SERVICE) {
        Some(value) => {
            check_service_name("annotation mysql-webhook.io/read-service", value, || {
                "use a name such as orders-read".into()
            })?;
            value.to_owned()
        }
        None => {
            let value = format!("{name}-read");
            check_service_name("the read Service name", &value, || {
                format!("set annotation {ANNOTATION_READ_SERVICE} to a shorter name")
            })?;
            value
        }
    };
    if read_service == service_name {
        return Err(PlanError::ReadServiceClash { value: read_service });
    }

    let storage = match annotation(sts, ANNOTATION_STORAGE) {
        Some(value) => match Quantity::parse(value) {
            Err(_) => return Err(PlanError::BadStorage { value: value.into() }),
            Ok(size) if size < Quantity::from_units(1) => {
                return Err(PlanError::StorageNotPositive { value: value.into() });
            }
            Ok(_) => value.to_owned(),
        },
        None => DEFAULT_STORAGE.to_owned(),
    };
    let storage_class = annotation(sts, ANNOTATION_STORAGE_CLASS)
        .map(|value| check_subdomain(ANNOTATION_STORAGE_CLASS, "StorageClass name", value))
        .transpose()?;
    let secret = match annotation(sts, ANNOTATION_ROOT_PASSWORD_SECRET) {
        Some(value) => check_subdomain(ANNOTATION_ROOT_PASSWORD_SECRET, "Secret name", value)?,
        None => check_subdomain("metadata.name", "Secret name", &format!("{name}-credentials"))?,
    };
    let metrics = match annotation(sts, ANNOTATION_METRICS) {
        Some(value) => parse_bool(ANNOTATION_METRICS, value)?,
        None => false,
    };

    let pod = spec.and_then(|s| s.template.spec.as_ref());
    let containers = pod.map(|p| p.containers.as_slice()).unwrap_or_default();
    let mysql_container = mysql_container_index(containers)?;
    let mysql = &containers[mysql_container];
    let mysql_image = mysql.image.clone().filter(|i| !i.trim().is_empty()).ok_or(PlanError::NoImage)?;

    let (flavor, flavor_source) = match annotation(sts, ANNOTATION_FLAVOR) {
        Some(value) => (
            Flavor::parse(value).ok_or_else(|| PlanError::UnknownFlavor { value: value.into() })?,
            FlavorSource::Annotation,
        ),
        None => {
            let flavor =
                flavor_from_image(&mysql_image).map_err(|source| PlanError::FlavorNotDerivable { source })?;
            defaults.push(format!("flavor {flavor} derived from image {mysql_image:?}"));
            (flavor, FlavorSource::Image)
        }
    };
    let backup_image = match annotation(sts, ANNOTATION_BACKUP_IMAGE) {
        Some(value) if image::is_plausible(value) => value.to_owned(),
        Some(value) => return Err(PlanError::BadImage { value: value.into() }),
        None => flavor.default_backup_image(&mysql_image),
    };
    check_password_env(&mysql.env, flavor, &secret)?;

    let selector = spec
        .and_then(|s| s.selector.match_labels.clone())
        .filter(|labels| !labels.is_empty())
        .ok_or(PlanError::NoSelectorLabels)?;
    if spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel") {
        return Err(PlanError::ParallelPods);
    }
    if annotation(sts, ANNOTATION_STORAGE).is_none() {
        defaults.push(format!("storage {DEFAULT_STORAGE} per member"));
    }
    policy_exceptions(sts)?;
    let first_ordinal = spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0);

    Ok(Some(Plan {
        namespace: sts.metadata.namespace.clone().or_else(|| namespace.map(str::to_owned)),
        config_map: name.clone(),
        name,
        service_name,
        read_service,
        secret,
        flavor,
        flavor_source,
        mysql_container,
        mysql_image,
        backup_image,
        storage,
        storage_class,
        metrics,
        selector,
        first_ordinal,
        defaults,
    }))
}

/// The policies named by annotation `mysql-webhook.io/policy-exceptions`, in order; empty
/// without it. Whether each exception is allowed is the policy set's decision (`scope`).
pub fn policy_exceptions(sts: &StatefulSet) -> Result<Vec<String>, PlanError> {
    let Some(value) = annotation(sts, ANNOTATION_POLICY_EXCEPTIONS) else { return Ok(Vec::new()) };
    let refuse = |problem: String| PlanError::BadPolicyExceptions { value: value.into(), problem };
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim) {
        let rule = NameRule::Dns1123Label;
        if !rule.accepts(name) {
            return Err(refuse(format!("{name:?} is not a policy name ({})", rule.description())));
        }
        if names.iter().any(|seen| seen == name) {
            return Err(refuse(format!("{name:?} is named twice")));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// The mysql container: the one named `mysql`, or the only one.
pub fn mysql_container_index(containers: &[Container]) -> Result<usize, PlanError> {
    if let Some(index) = containers.iter().position(|c| c.name == CONTAINER_MYSQL) {
        return Ok(index);
    }
    match containers.len() {
        0 => Err(PlanError::NoContainers),
        1 => Ok(0),
        _ => Err(PlanError::NoMysqlContainer { names: containers.iter().map(|c| c.name.clone()).collect() }),
    }
}

fn annotations(sts: &StatefulSet) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    sts.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

fn annotation<'a>(sts: &'a StatefulSet, key: &str) -> Option<&'a str> {
    annotations(sts).get(key).map(String::as_str)
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, PlanError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(PlanError::NotBoolean { key, value: value.into() }),
    }
}

/// The root password must come from the Secret: an empty, random or literal one would leave the
/// probes, the sidecar and the operators without it.
fn check_password_env(env: &Option<Vec<EnvVar>>, flavor: Flavor, secret: &str) -> Result<(), PlanError> {
    for var in env.iter().flatten() {
        if flavor.insecure_password_envs().contains(&var.name.as_str()) {
            return Err(PlanError::InsecurePassword { name: var.name.clone(), secret: secret.into() });
        }
        let is_root_password = var.name == "MYSQL_ROOT_PASSWORD" || var.name == "MARIADB_ROOT_PASSWORD";
        if is_root_password && var.value_from.is_none() {
            return Err(PlanError::LiteralPassword { name: var.name.clone(), secret: secret.into() });
        }
    }
    Ok(())
}

/// A ConfigMap, Secret or StorageClass name.
fn check_subdomain(key: &'static str, what: &'static str, value: &str) -> Result<String, PlanError> {
    let rule = NameRule::Dns1123Subdomain;
    if rule.accepts(value) {
        Ok(value.to_owned())
    } else {
        Err(PlanError::BadName { key, value: value.into(), what, rule: rule.description() })
    }
}

/// A Service name: the DNS names peers use depend on it.
fn check_service_name(
    what: &'static str,
    value: &str,
    hint: impl FnOnce() -> String,
) -> Result<(), PlanError> {
    let rule = NameRule::Dns1035Label;
    if rule.accepts(value) {
        Ok(())
    } else {
        Err(PlanError::BadServiceName { what, value: value.into(), rule: rule.description(), hint: hint() })
    }
}
