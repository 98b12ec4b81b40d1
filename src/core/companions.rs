//! The objects an expanded StatefulSet needs beside it: the ConfigMap of server configuration,
//! the headless and read Services, the PodDisruptionBudget and the credentials Secret. Pure
//! functions of the [`Plan`]; the controller adds the owner reference and applies them, `mutate`
//! prints them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, Secret, SecretKeySelector, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::consts::*;
use crate::plan::{Plan, Target};
use crate::scripts;

/// The companions applied for every managed StatefulSet (the Secret is separate: it is created
/// only when missing and never printed by default).
#[derive(Debug, Clone, PartialEq)]
pub struct Companions {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub read_service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
    /// `<name>-backup`, when `backup-schedule` is set.
    pub backup_cron_job: Option<CronJob>,
}

impl Companions {
    pub fn for_plan(plan: &Plan) -> Companions {
        Companions {
            config_map: config_map(plan),
            headless_service: service(plan, &plan.service_name, true),
            read_service: service(plan, &plan.read_service, false),
            pod_disruption_budget: pod_disruption_budget(plan),
            backup_cron_job: backup_cron_job(plan),
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

/// The backup CronJob `<name>-backup`: one backup at a time (`Forbid`), each Job bounded by a
/// deadline and retried once. `kubectl create job --from=cronjob/<name>-backup <job>` takes one
/// now. Its pods carry only the backup label, never the StatefulSet's selector labels, so the
/// Services and the PodDisruptionBudget never pick them.
pub fn backup_cron_job(plan: &Plan) -> Option<CronJob> {
    let schedule = plan.backups.schedule.clone()?;
    let target = plan.backups.target.as_ref()?;
    let name = format!("{}{BACKUP_JOB_SUFFIX}", plan.name);
    let labels = BTreeMap::from([
        (LABEL_BACKUP.to_owned(), plan.name.clone()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ]);
    let names = scripts::Names {
        statefulset: &plan.name,
        service: &plan.service_name,
        first_ordinal: plan.first_ordinal,
    };
    let take = Container {
        name: CONTAINER_TAKE_BACKUP.into(),
        image: Some(plan.backup_image.clone()),
        command: Some(vec![
            "bash".into(),
            "-c".into(),
            scripts::take_backup(plan.flavor, names, plan.replicas),
        ]),
        env: Some(vec![EnvVar {
            name: scripts::ENV_ROOT_PASSWORD.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: plan.secret.clone(),
                    key: SECRET_KEY_ROOT_PASSWORD.into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        volume_mounts: Some(vec![
            VolumeMount { name: VOLUME_SCRATCH.into(), mount_path: SCRATCH_DIR.into(), ..Default::default() },
            VolumeMount {
                name: VOLUME_TLS.into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        security_context: plan.flavor.clone_run_as().map(|uid| SecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut publish = client_container(plan, target, CONTAINER_PUBLISH_BACKUP, false);
    publish.command =
        Some(vec!["sh".into(), "-c".into(), scripts::publish_backup(target, plan.backups.keep)]);
    publish.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
        name: VOLUME_SCRATCH.into(),
        mount_path: SCRATCH_DIR.into(),
        ..Default::default()
    });
    let mut volumes = vec![
        Volume {
            name: VOLUME_SCRATCH.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: VOLUME_TLS.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(format!("{}{TLS_SECRET_SUFFIX}", plan.name)),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    volumes.extend(target_volume(target, false));
    Some(CronJob {
        metadata: metadata(plan, &name),
        spec: Some(CronJobSpec {
            schedule,
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                spec: Some(JobSpec {
                    backoff_limit: Some(1),
                    active_deadline_seconds: Some(BACKUP_DEADLINE_SECONDS),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                        spec: Some(PodSpec {
                            restart_policy: Some("Never".into()),
                            init_containers: Some(vec![take]),
                            containers: vec![publish],
                            volumes: Some(volumes),
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A container of the client image that reaches `target`: the S3 remote configured from the
/// `backup-secret` Secret by rclone's environment variables, or the claim mounted (read-only
/// for a restore).
pub fn client_container(plan: &Plan, target: &Target, name: &str, read_only: bool) -> Container {
    let mut env = Vec::new();
    let mut mounts = Vec::new();
    match target {
        Target::S3 { .. } => {
            env.push(EnvVar {
                name: "RCLONE_CONFIG_TARGET_TYPE".into(),
                value: Some("s3".into()),
                ..Default::default()
            });
            env.push(EnvVar {
                name: "RCLONE_CONFIG_TARGET_PROVIDER".into(),
                value: Some("Other".into()),
                ..Default::default()
            });
            let secret = plan.backups.secret.clone().unwrap_or_default();
            for (variable, key, optional) in [
                ("RCLONE_CONFIG_TARGET_ENDPOINT", BACKUP_SECRET_KEYS[0], false),
                ("RCLONE_CONFIG_TARGET_ACCESS_KEY_ID", BACKUP_SECRET_KEYS[1], false),
                ("RCLONE_CONFIG_TARGET_SECRET_ACCESS_KEY", BACKUP_SECRET_KEYS[2], false),
                ("RCLONE_CONFIG_TARGET_REGION", BACKUP_SECRET_KEYS[3], true),
            ] {
                env.push(EnvVar {
                    name: variable.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.clone(),
                            key: key.into(),
                            optional: optional.then_some(true),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        Target::Pvc { .. } => mounts.push(VolumeMount {
            name: VOLUME_BACKUP_TARGET.into(),
            mount_path: BACKUP_TARGET_DIR.into(),
            read_only: read_only.then_some(true),
            ..Default::default()
        }),
    }
    Container {
        name: name.into(),
        image: Some(plan.backups.client_image.clone()),
        env: (!env.is_empty()).then_some(env),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// The volume of a `pvc://` target's claim; none for S3.
pub fn target_volume(target: &Target, read_only: bool) -> Option<Volume> {
    let Target::Pvc { claim, .. } = target else { return None };
    Some(Volume {
        name: VOLUME_BACKUP_TARGET.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.clone(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    })
}
