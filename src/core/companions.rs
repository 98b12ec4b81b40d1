//! The objects an expanded StatefulSet needs beside it: the ConfigMap of server configuration,
//! the headless and read Services, the PodDisruptionBudget, the credentials Secret and the
//! members' TLS identity (a Secret, or a cert-manager Certificate that makes it). Pure
//! functions of the [`Plan`]; the controller adds the owner reference and applies them, `mutate`
//! prints them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, Secret, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::consts::*;
use crate::plan::{IssuerRef, Plan, Target};
use crate::scripts;

/// The companions applied for every managed StatefulSet (the Secrets are separate: they are
/// created only when missing and never printed by default).
#[derive(Debug, Clone, PartialEq)]
pub struct Companions {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub read_service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
    /// Ingress to the clone port from the StatefulSet's own pods (and its backup Jobs) only.
    pub network_policy: NetworkPolicy,
    /// The cert-manager Certificate, with annotation `tls-issuer`.
    pub certificate: Option<serde_json::Value>,
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
            network_policy: network_policy(plan),
            certificate: plan.tls_issuer.as_ref().map(|issuer| certificate(plan, issuer)),
            backup_cron_job: backup_cron_job(plan),
        }
    }
}

/// The root, replication and exporter passwords of a new credentials Secret. The caller brings
/// the random generator (the core does no IO); see [`Credentials::generate`].
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub root_password: String,
    pub replication_password: String,
    pub exporter_password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Three independent passwords from `rng`, which must be a cryptographic generator (the
    /// shells pass the OS's); see [`generate_password`].
    pub fn generate(rng: &mut impl rand::Rng) -> Credentials {
        Credentials {
            root_password: generate_password(rng),
            replication_password: generate_password(rng),
            exporter_password: generate_password(rng),
        }
    }
}

/// One 32-character alphanumeric password (about 190 bits) from `rng`. Alphanumeric: safe in
/// SQL, shell, YAML and the exporter's configuration file without quoting.
pub fn generate_password(rng: &mut impl rand::Rng) -> String {
    use rand::distr::{Alphanumeric, Distribution};
    Alphanumeric.sample_iter(rng).take(32).map(char::from).collect()
}

/// The keys a credentials Secret must hold, with a new password for each one it lacks: the
/// exporter's, for a Secret made before that account existed. The existing keys are never
/// part of the answer (README "Companion objects and the controller").
pub fn missing_credentials(secret: &Secret, rng: &mut impl rand::Rng) -> BTreeMap<String, ByteString> {
    let data = secret.data.as_ref();
    [SECRET_KEY_EXPORTER_PASSWORD]
        .into_iter()
        .filter(|key| !data.is_some_and(|data| data.contains_key(*key)))
        .map(|key| (key.to_owned(), ByteString(generate_password(rng).into_bytes())))
        .collect()
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
            scripts::config(plan.flavor, plan.require_tls)
                .into_iter()
                .map(|(key, value)| (key.into(), value))
                .collect(),
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

/// The NetworkPolicy `<name>`, defence in depth for the clone port (mutual TLS is what keeps
/// outsiders out; this needs a CNI that enforces NetworkPolicy): TCP 3307 of the members admits
/// only the members themselves (the StatefulSet's selector labels) and its backup Jobs' pods
/// (label `backup-of`), which stream from it. Everything else stays open as without the policy:
/// a policy that selects a pod denies what it doesn't allow, so every other TCP port (1-3306,
/// 3308-65535, by `endPort`) and all of UDP and SCTP are allowed from anywhere.
pub fn network_policy(plan: &Plan) -> NetworkPolicy {
    let port = |protocol: &str, range: Option<(i32, i32)>| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: range.map(|(from, _)| IntOrString::Int(from)),
        end_port: range.map(|(_, to)| to),
    };
    let pods = |labels: BTreeMap<String, String>| NetworkPolicyPeer {
        pod_selector: Some(LabelSelector { match_labels: Some(labels), ..Default::default() }),
        ..Default::default()
    };
    let backup_jobs = BTreeMap::from([(LABEL_BACKUP.to_owned(), plan.name.clone())]);
    NetworkPolicy {
        metadata: metadata(plan, &plan.name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(plan.selector.clone()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![pods(plan.selector.clone()), pods(backup_jobs)]),
                    ports: Some(vec![NetworkPolicyPort {
                        protocol: Some("TCP".into()),
                        port: Some(IntOrString::Int(PORT_CLONE)),
                        end_port: None,
                    }]),
                },
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![
                        port("TCP", Some((1, PORT_CLONE - 1))),
                        port("TCP", Some((PORT_CLONE + 1, 65535))),
                        port("UDP", None),
                        port("SCTP", None),
                    ]),
                },
            ]),
            ..Default::default()
        }),
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
            (
                SECRET_KEY_EXPORTER_PASSWORD.into(),
                ByteString(credentials.exporter_password.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}

/// The members' TLS identity, PEM-encoded: what Secret `<name>-tls` holds. Made and renewed by
/// the caller (the pure core has no randomness or clock); see `certs::member_identity`.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The CA bundle members verify each other against: the signing CA first, then, during a
    /// rollover, the CA it replaces.
    pub ca_bundle: String,
    /// The signing CA's private key; `None` in a Secret someone else made (cert-manager).
    pub ca_key: Option<String>,
    /// During a CA rollover, the key of the next CA (the bundle's last), not signing yet.
    pub ca_next_key: Option<String>,
    /// The members' certificate (server and client authentication) and its key.
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for TlsIdentity {
    // Never print a private key, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity { .. }")
    }
}

impl TlsIdentity {
    /// Reads the identity from a TLS Secret's data; `None` when a key of the contract is missing
    /// or not UTF-8.
    pub fn from_secret(secret: &Secret) -> Option<TlsIdentity> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|value| String::from_utf8(value.0.clone()).ok());
        Some(TlsIdentity {
            ca_bundle: text(TLS_CA_FILE)?,
            ca_key: text(TLS_CA_KEY_FILE),
            ca_next_key: text(TLS_CA_NEXT_KEY_FILE),
            cert: text(TLS_CERT_FILE)?,
            key: text(TLS_KEY_FILE)?,
        })
    }
}

/// The DNS names the members' certificate carries: every member through the headless Service
/// (`*.<service>`, and with the namespace `*.<service>.<namespace>.svc` and the cluster-local
/// form), the primary's name (`<sts>-<first>.<service>`, which replicas verify: OpenSSL, hence
/// MySQL and MariaDB, refuses a wildcard over a single label such as `*.<service>`), and both
/// Services' own names, so a client may verify whichever it connects to.
pub fn member_dns_names(plan: &Plan) -> Vec<String> {
    let forms = |name: String| {
        let mut forms = vec![name.clone()];
        if let Some(namespace) = &plan.namespace {
            forms.push(format!("{name}.{namespace}.svc"));
            forms.push(format!("{name}.{namespace}.svc.cluster.local"));
        }
        forms
    };
    let primary = format!("{}-{}.{}", plan.name, plan.first_ordinal, plan.service_name);
    [format!("*.{}", plan.service_name), primary, plan.service_name.clone(), plan.read_service.clone()]
        .into_iter()
        .flat_map(forms)
        .collect()
}

/// Secret `<name>-tls` holding `identity`, typed `kubernetes.io/tls` like cert-manager's.
pub fn tls_secret(plan: &Plan, identity: &TlsIdentity) -> Secret {
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    let mut data = BTreeMap::from([
        (TLS_CA_FILE.to_owned(), bytes(&identity.ca_bundle)),
        (TLS_CERT_FILE.to_owned(), bytes(&identity.cert)),
        (TLS_KEY_FILE.to_owned(), bytes(&identity.key)),
    ]);
    for (key, value) in [(TLS_CA_KEY_FILE, &identity.ca_key), (TLS_CA_NEXT_KEY_FILE, &identity.ca_next_key)] {
        if let Some(value) = value {
            data.insert(key.into(), bytes(value));
        }
    }
    Secret {
        metadata: metadata(plan, &plan.tls_secret),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
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
        volume_mounts: Some(vec![
            VolumeMount { name: VOLUME_SCRATCH.into(), mount_path: SCRATCH_DIR.into(), ..Default::default() },
            crate::expand::tls_mount(),
            crate::expand::credentials_mount(),
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
        // The member certificate: the clone port serves only its holders (never the CA key).
        crate::expand::tls_volume(plan),
        // Root's password, as a file (scripts::root_password).
        crate::expand::credentials_volume(plan),
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

/// The cert-manager Certificate that provides Secret `<name>-tls` when annotation `tls-issuer`
/// names an issuer: the members' names, server and client authentication (the clone port and
/// replication verify both ends). The issuer must fill `ca.crt` (a CA or Vault issuer does).
pub fn certificate(plan: &Plan, issuer: &IssuerRef) -> serde_json::Value {
    let metadata = serde_json::to_value(metadata(plan, &plan.tls_secret)).expect("ObjectMeta serialises");
    serde_json::json!({
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": metadata,
        "spec": {
            "secretName": plan.tls_secret,
            "commonName": plan.service_name,
            "dnsNames": member_dns_names(plan),
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": issuer.kind, "name": issuer.name},
        }
    })
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
