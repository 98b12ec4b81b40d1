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
        "annotation {ANNOTATION_TLS_ISSUER}: {value:?} is not an issuer; use <name> or Issuer/<name> (an Issuer in the namespace) or ClusterIssuer/<name>, where <name> is a Kubernetes name"
    )]
    BadTlsIssuer { value: String },
    #[error(
        "flavor mysql-5.7 needs annotation {ANNOTATION_BACKUP_IMAGE}: clones travel over mutual TLS with socat, and no public XtraBackup 2.4 image carries socat (the tutorial's ncat can't verify client certificates); build one FROM percona/percona-xtrabackup:2.4 with bash, socat and the mysql client"
    )]
    BackupImageRequired,
    #[error(
        "{ANNOTATION_REPLICATED} was added to an existing StatefulSet without spec.serviceName; serviceName can't change after creation: delete it with --cascade=orphan and apply it again"
    )]
    NoServiceNameOnUpdate,
    #[error(
        "annotation {ANNOTATION_BACKUP_SCHEDULE}: {value:?} is not a cron schedule: {reason}; use five fields (minute hour day-of-month month day-of-week) such as \"0 3 * * *\", or @hourly, @daily, @weekly, @monthly, @yearly"
    )]
    BadSchedule { value: String, reason: String },
    #[error(
        "annotation {key}: {value:?} is not a backup target: {reason}; use pvc://<claim>/<prefix> or s3://<bucket>/<prefix>"
    )]
    BadTarget { key: &'static str, value: String, reason: String },
    #[error(
        "annotation {ANNOTATION_RESTORE_FROM}: {value:?} does not name a backup: {reason}; use <target>/<backup-id> such as s3://backups/orders/20261202T030000Z, or <target>/latest"
    )]
    BadRestoreFrom { value: String, reason: String },
    #[error(
        "annotation {ANNOTATION_BACKUP_KEEP}: {value:?} is not accepted; use a positive integer such as 7"
    )]
    BadKeep { value: String },
    #[error("annotation {key} needs annotation {needs}: {why}")]
    Requires { key: &'static str, needs: &'static str, why: &'static str },
    #[error(
        "annotation {ANNOTATION_RESTORE_TO_TIME}: {value:?} is not an RFC 3339 time; use e.g. 2026-12-02T14:30:00Z or 2026-12-02T15:30:00+01:00"
    )]
    BadRestoreTime { value: String },
    #[error(
        "annotation {ANNOTATION_RESTORE_TO_TIME}: {value} is before backup {id}, taken at {taken}; name a later time, or an earlier backup in {ANNOTATION_RESTORE_FROM}"
    )]
    RestoreTimeBeforeBackup { value: String, id: String, taken: String },
    #[error(
        "annotation {ANNOTATION_BINLOG_FLUSH_INTERVAL}: {value:?} is not accepted; use a duration from 10s to 24h such as 30s, 5m or 1h"
    )]
    BadFlushInterval { value: String },
    #[error(
        "annotation {ANNOTATION_BACKUP_CLIENT_IMAGE}: {value:?} is not an image reference; use e.g. {BACKUP_CLIENT_IMAGE}"
    )]
    BadClientImage { value: String },
    #[error(
        "annotation {ANNOTATION_RESTORE_FROM} (and {ANNOTATION_RESTORE_TO_TIME}) can only be set when the StatefulSet is created (its first member is made from the backup then); to restore, create a new StatefulSet with it"
    )]
    RestoreOnUpdate,
    #[error(
        "annotation {ANNOTATION_MAX_LAG}: {value:?} is not accepted; use a duration from 1s to 24h such as 30s, 5m or 1h30m"
    )]
    BadMaxLag { value: String },
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
    /// The members' TLS identity: Secret `<name>-tls`.
    pub tls_secret: String,
    /// The cert-manager issuer that provides it, instead of the controller.
    pub tls_issuer: Option<IssuerRef>,
    pub flavor: Flavor,
    pub flavor_source: FlavorSource,
    /// Index of the mysql container in the pod template.
    pub mysql_container: usize,
    pub mysql_image: String,
    pub backup_image: String,
    pub storage: String,
    pub storage_class: Option<String>,
    pub metrics: bool,
    /// `require-tls`: mysqld runs with `require_secure_transport`.
    pub require_tls: bool,
    /// `max-lag`, in seconds: a replica further behind is not ready.
    pub max_lag: Option<u64>,
    /// `spec.selector.matchLabels`: what Services and the PDB select.
    pub selector: BTreeMap<String, String>,
    /// `spec.ordinals.start`.
    pub first_ordinal: i32,
    /// `spec.replicas` (1 when absent): the members a backup may be taken from.
    pub replicas: i32,
    /// Backups, restore and binary log archiving (README "Backups and restore").
    pub backups: Backups,
    /// Defaults the plan filled in, said back to the user as warnings.
    pub defaults: Vec<String>,
}

/// A cert-manager issuer, from annotation `tls-issuer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRef {
    /// `Issuer` (in the StatefulSet's namespace) or `ClusterIssuer`.
    pub kind: &'static str,
    pub name: String,
}

/// Where backups and archived binary logs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A PersistentVolumeClaim in the StatefulSet's namespace, and a directory in it.
    Pvc { claim: String, prefix: String },
    /// An S3-compatible bucket (endpoint and keys from the `backup-secret` Secret), and a key prefix.
    S3 { bucket: String, prefix: String },
}

impl Target {
    /// Parses `pvc://<claim>/<prefix>` or `s3://<bucket>/<prefix>`; the prefix may be empty.
    pub fn parse(key: &'static str, value: &str) -> Result<Target, PlanError> {
        let bad = |reason: &str| PlanError::BadTarget { key, value: value.into(), reason: reason.into() };
        let (scheme, rest) = value.split_once("://").ok_or_else(|| bad("it has no scheme"))?;
        let (root, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !prefix.is_empty() && !prefix.split('/').all(segment_ok) {
            return Err(bad(
                "the prefix must be path segments of letters, digits, '-', '_' and '.' (no empty, . or .. segment)",
            ));
        }
        let prefix = prefix.to_owned();
        match scheme {
            "pvc" => {
                check_subdomain(key, "PersistentVolumeClaim name", root)
                    .map_err(|_| bad("the claim name is not a valid PersistentVolumeClaim name"))?;
                Ok(Target::Pvc { claim: root.into(), prefix })
            }
            "s3" => {
                let ok = (3..=63).contains(&root.len())
                    && root
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                    && root.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && root.ends_with(|c: char| c.is_ascii_alphanumeric());
                if !ok {
                    return Err(bad(
                        "the bucket name must be 3 to 63 lowercase letters, digits, '-' and '.'",
                    ));
                }
                Ok(Target::S3 { bucket: root.into(), prefix })
            }
            other => Err(bad(&format!("the scheme {other:?} is not known"))),
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Target::S3 { .. })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, root, prefix) = match self {
            Target::Pvc { claim, prefix } => ("pvc", claim, prefix),
            Target::S3 { bucket, prefix } => ("s3", bucket, prefix),
        };
        write!(f, "{scheme}://{root}")?;
        if !prefix.is_empty() {
            write!(f, "/{prefix}")?;
        }
        Ok(())
    }
}

/// `restore-from` (and `restore-to-time`): the first member starts from this backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub source: Target,
    /// A backup id (`YYYYMMDDTHHMMSSZ`, the UTC time it started) or `latest`.
    pub id: String,
    /// `restore-to-time`, in UTC to the second (`2026-12-02T03:00:00Z`): the binary logs archived
    /// in `source` are replayed on top of the backup up to this instant, excluded.
    pub to_time: Option<String>,
}

/// The backup annotations, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backups {
    /// `backup-target`: where scheduled backups and archived binary logs go.
    pub target: Option<Target>,
    /// `backup-schedule`, validated; a CronJob `<name>-backup` exists when set.
    pub schedule: Option<String>,
    /// `backup-keep`: how many complete backups retention keeps.
    pub keep: u32,
    /// `backup-secret`: the S3 endpoint and keys.
    pub secret: Option<String>,
    /// The image the S3 client (and every copy to or from a target) runs from.
    pub client_image: String,
    pub restore: Option<Restore>,
    /// `binlog-archive`: the primary ships its closed binary logs to `target`.
    pub binlog_archive: Option<BinlogArchive>,
}

/// `binlog-archive: "true"`, with `binlog-flush-interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinlogArchive {
    /// At most this many seconds between rotations of a binary log that has changes: the most
    /// a lost primary can take with it that is not archived yet, plus one shipping round.
    pub flush_interval: u64,
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
    let tls_secret = check_subdomain("metadata.name", "Secret name", &format!("{name}{TLS_SECRET_SUFFIX}"))?;
    let tls_issuer = annotation(sts, ANNOTATION_TLS_ISSUER).map(parse_issuer).transpose()?;
    let metrics = match annotation(sts, ANNOTATION_METRICS) {
        Some(value) => parse_bool(ANNOTATION_METRICS, value)?,
        None => false,
    };
    let require_tls = match annotation(sts, ANNOTATION_REQUIRE_TLS) {
        Some(value) => parse_bool(ANNOTATION_REQUIRE_TLS, value)?,
        None => false,
    };
    let max_lag = annotation(sts, ANNOTATION_MAX_LAG)
        .map(|value| {
            parse_duration(value)
                .filter(|seconds| (1..=86_400).contains(seconds))
                .ok_or_else(|| PlanError::BadMaxLag { value: value.into() })
        })
        .transpose()?;

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
        None => flavor.default_backup_image(&mysql_image).ok_or(PlanError::BackupImageRequired)?,
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
    let backups = plan_backups(sts)?;
    if backups.restore.is_some() && annotation(sts, ANNOTATION_ROOT_PASSWORD_SECRET).is_none() {
        defaults.push(format!(
            "restore-from: the restored members keep the backup's accounts and passwords; Secret {secret:?} \
             must hold the backed-up cluster's root and replication passwords (or set {ANNOTATION_ROOT_PASSWORD_SECRET})"
        ));
    }

    if let (Some(_), Some(Target::Pvc { claim, .. })) = (backups.binlog_archive, &backups.target) {
        defaults.push(format!(
            "binlog-archive to pvc://{claim}: every member mounts the claim (only the primary writes to it), \
             so it must be ReadWriteMany, or the members must share a node; s3:// has no such limit"
        ));
    }

    Ok(Some(Plan {
        namespace: sts.metadata.namespace.clone().or_else(|| namespace.map(str::to_owned)),
        config_map: name.clone(),
        name,
        service_name,
        read_service,
        secret,
        tls_secret,
        tls_issuer,
        flavor,
        flavor_source,
        mysql_container,
        mysql_image,
        backup_image,
        storage,
        storage_class,
        metrics,
        require_tls,
        max_lag,
        selector,
        first_ordinal,
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        backups,
        defaults,
    }))
}

/// The backup, restore and archiving annotations: each value checked, and the combinations that
/// can't work (a schedule without a target, S3 without its Secret…) refused.
fn plan_backups(sts: &StatefulSet) -> Result<Backups, PlanError> {
    let target = annotation(sts, ANNOTATION_BACKUP_TARGET)
        .map(|value| Target::parse(ANNOTATION_BACKUP_TARGET, value))
        .transpose()?;
    let schedule = annotation(sts, ANNOTATION_BACKUP_SCHEDULE)
        .map(|value| {
            check_cron(value)
                .map(|()| value.trim().to_owned())
                .map_err(|reason| PlanError::BadSchedule { value: value.into(), reason })
        })
        .transpose()?;
    let keep = match annotation(sts, ANNOTATION_BACKUP_KEEP) {
        Some(value) => match value.parse::<u32>() {
            Ok(keep) if keep >= 1 && value.bytes().all(|b| b.is_ascii_digit()) => keep,
            _ => return Err(PlanError::BadKeep { value: value.into() }),
        },
        None => DEFAULT_BACKUP_KEEP,
    };
    let secret = annotation(sts, ANNOTATION_BACKUP_SECRET)
        .map(|value| check_subdomain(ANNOTATION_BACKUP_SECRET, "Secret name", value))
        .transpose()?;
    let client_image = match annotation(sts, ANNOTATION_BACKUP_CLIENT_IMAGE) {
        Some(value) if image::is_plausible(value) => value.to_owned(),
        Some(value) => return Err(PlanError::BadClientImage { value: value.into() }),
        None => BACKUP_CLIENT_IMAGE.to_owned(),
    };
    let archive = match annotation(sts, ANNOTATION_BINLOG_ARCHIVE) {
        Some(value) => parse_bool(ANNOTATION_BINLOG_ARCHIVE, value)?,
        None => false,
    };
    let flush = annotation(sts, ANNOTATION_BINLOG_FLUSH_INTERVAL)
        .map(|value| parse_interval(value).ok_or_else(|| PlanError::BadFlushInterval { value: value.into() }))
        .transpose()?;
    let restore = annotation(sts, ANNOTATION_RESTORE_FROM).map(parse_restore_from).transpose()?;
    let to_time = annotation(sts, ANNOTATION_RESTORE_TO_TIME).map(parse_rfc3339).transpose()?;

    let requires = |key, needs, why| Err(PlanError::Requires { key, needs, why });
    if schedule.is_some() && target.is_none() {
        return requires(ANNOTATION_BACKUP_SCHEDULE, ANNOTATION_BACKUP_TARGET, "it says where backups go");
    }
    if archive && target.is_none() {
        return requires(ANNOTATION_BINLOG_ARCHIVE, ANNOTATION_BACKUP_TARGET, "it says where binary logs go");
    }
    if flush.is_some() && !archive {
        return requires(
            ANNOTATION_BINLOG_FLUSH_INTERVAL,
            ANNOTATION_BINLOG_ARCHIVE,
            "the interval bounds how much archiving can lose; set binlog-archive: \"true\"",
        );
    }
    let s3_user = if target.as_ref().is_some_and(Target::is_s3) {
        Some(ANNOTATION_BACKUP_TARGET)
    } else {
        restore.as_ref().is_some_and(|(source, _)| source.is_s3()).then_some(ANNOTATION_RESTORE_FROM)
    };
    if let Some(key) = s3_user
        && secret.is_none()
    {
        return requires(
            key,
            ANNOTATION_BACKUP_SECRET,
            "an s3:// target needs a Secret with the keys endpoint, access-key-id and secret-access-key (and optionally region)",
        );
    }
    let restore = match (restore, to_time) {
        (None, Some(_)) => {
            return requires(
                ANNOTATION_RESTORE_TO_TIME,
                ANNOTATION_RESTORE_FROM,
                "binary logs are replayed on top of a backup",
            );
        }
        (None, None) => None,
        (Some((source, id)), to_time) => {
            // A backup id is its start time: a time before it is refused now. Whether the time is
            // before the backup's end, or beyond the archived logs, only the target knows: the
            // restore checks it (README "Backups and restore").
            if let (Some(time), Some(taken)) = (&to_time, backup_id_time(&id))
                && *time < taken
            {
                return Err(PlanError::RestoreTimeBeforeBackup { value: time.clone(), id, taken });
            }
            Some(Restore { source, id, to_time })
        }
    };
    let binlog_archive = archive
        .then(|| BinlogArchive { flush_interval: flush.unwrap_or(DEFAULT_BINLOG_FLUSH_INTERVAL_SECONDS) });
    Ok(Backups { target, schedule, keep, secret, client_image, restore, binlog_archive })
}

/// `<target>/<backup-id>` or `<target>/latest`.
pub fn parse_restore_from(value: &str) -> Result<(Target, String), PlanError> {
    let bad = |reason: &str| PlanError::BadRestoreFrom { value: value.into(), reason: reason.into() };
    let (target, id) = value.trim_end_matches('/').rsplit_once('/').ok_or_else(|| bad("no backup id"))?;
    if id != "latest" && backup_id_time(id).is_none() {
        return Err(bad(&format!("{id:?} is neither a backup id (YYYYMMDDTHHMMSSZ) nor latest")));
    }
    if !target.contains("://") || target.ends_with(":/") {
        return Err(bad("no target before the backup id"));
    }
    let target = Target::parse(ANNOTATION_RESTORE_FROM, target)?;
    Ok((target, id.to_owned()))
}

/// The UTC time a backup id names (`20261202T030000Z` → `2026-12-02T03:00:00Z`), or `None` when
/// `id` is not one.
pub fn backup_id_time(id: &str) -> Option<String> {
    let b = id.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
        return None;
    }
    let time =
        format!("{}-{}-{}T{}:{}:{}Z", &id[0..4], &id[4..6], &id[6..8], &id[9..11], &id[11..13], &id[13..15]);
    parse_rfc3339(&time).ok()
}

/// An RFC 3339 time, normalised to UTC with whole seconds (`2026-12-02T03:00:00Z`, a fraction
/// dropped): what the scripts compare as strings and give `mariadb-binlog --stop-datetime`.
pub fn parse_rfc3339(value: &str) -> Result<String, PlanError> {
    use time::format_description::well_known::Rfc3339;
    let bad = || PlanError::BadRestoreTime { value: value.into() };
    let time = time::OffsetDateTime::parse(value, &Rfc3339).map_err(|_| bad())?;
    let utc = time.to_offset(time::UtcOffset::UTC);
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    ))
}

/// `30s`, `5m`, `1h`, `1h30m`: seconds, from 10 s to 24 h.
fn parse_interval(value: &str) -> Option<u64> {
    parse_duration(value).filter(|seconds| (10..=86_400).contains(seconds))
}

/// `30s`, `5m`, `1h`, `1h30m`: seconds (numbers each followed by a unit).
fn parse_duration(value: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && !value.is_empty()).then_some(total)
}

/// A schedule Kubernetes' CronJob accepts: five fields of numbers, names (months and weekdays),
/// `*`, ranges, steps and lists, or a macro. `TZ=` is refused here as the API server does (it
/// belongs in `spec.timeZone`). The reason names the field that is wrong.
pub fn check_cron(value: &str) -> Result<(), String> {
    const MACROS: [&str; 7] =
        ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    const MONTHS: [&str; 12] =
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let value = value.trim();
    if value.starts_with('@') {
        return if MACROS.contains(&value) { Ok(()) } else { Err(format!("{value} is not a known macro")) };
    }
    if value.starts_with("TZ=") || value.starts_with("CRON_TZ=") {
        return Err("a time zone in the schedule is not supported; the schedule is in the controller manager's time zone".into());
    }
    let fields: Vec<&str> = value.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("it has {} fields, not 5", fields.len()));
    }
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day of month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day of week", 0, 7, &DAYS, 0),
    ];
    for (field, (name, min, max, names, name_base)) in fields.iter().zip(specs) {
        let number = |text: &str| -> Result<u32, String> {
            if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
                return Ok(index as u32 + name_base);
            }
            match text.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => Err(format!("{name} {text:?} is not a value from {min} to {max}")),
            }
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            if let Some(step) = step
                && !step.parse::<u32>().is_ok_and(|s| s >= 1 && s <= max)
            {
                return Err(format!("{name} step {step:?} is not a positive number up to {max}"));
            }
            match range {
                "*" => {}
                "?" if name.starts_with("day") => {}
                _ => match range.split_once('-') {
                    Some((low, high)) => {
                        if number(low)? > number(high)? {
                            return Err(format!("{name} range {range:?} runs backwards"));
                        }
                    }
                    None => {
                        number(range)?;
                    }
                },
            }
        }
    }
    Ok(())
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

/// `<name>`, `Issuer/<name>` or `ClusterIssuer/<name>`.
fn parse_issuer(value: &str) -> Result<IssuerRef, PlanError> {
    let (kind, name) = match value.split_once('/') {
        None => ("Issuer", value),
        Some(("Issuer", name)) => ("Issuer", name),
        Some(("ClusterIssuer", name)) => ("ClusterIssuer", name),
        Some(_) => return Err(PlanError::BadTlsIssuer { value: value.into() }),
    };
    check_subdomain(ANNOTATION_TLS_ISSUER, "issuer name", name)
        .map(|name| IssuerRef { kind, name })
        .map_err(|_| PlanError::BadTlsIssuer { value: value.into() })
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
