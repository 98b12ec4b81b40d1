//! The expansion: a planned StatefulSet becomes the replicated pattern (init containers, the
//! mysql container completed, the backup sidecar, volumes, claim template, ordering, spread).
//!
//! Rules that make it safe to run on every admission call:
//! - idempotent: everything is an upsert keyed by a name or a path, so expanding an expanded
//!   object changes nothing, also after the API server filled in its defaults;
//! - the user wins: a field they set on their containers, pod or claim is kept; only the
//!   containers, volumes and env the pattern owns (by name) are rewritten to the planned state.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction,
    KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, Probe,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::companions::{client_container, target_volume};
use crate::consts::*;
use crate::plan::Plan;
use crate::scripts::{self, Names};

/// Expands `sts` according to `plan`.
pub fn expand(sts: &StatefulSet, plan: &Plan) -> StatefulSet {
    let mut out = sts.clone();
    out.metadata.labels.get_or_insert_with(BTreeMap::new).insert(LABEL_MANAGED.into(), "true".into());
    let spec = out.spec.get_or_insert_with(Default::default);
    spec.service_name = Some(plan.service_name.clone());
    spec.pod_management_policy.get_or_insert_with(|| "OrderedReady".into());
    let claims = spec.volume_claim_templates.get_or_insert_with(Vec::new);
    if !claims.iter().any(|c| c.metadata.name.as_deref() == Some(VOLUME_DATA)) {
        claims.push(data_claim(plan));
    }

    let names =
        Names { statefulset: &plan.name, service: &plan.service_name, first_ordinal: plan.first_ordinal };
    let pod = spec.template.spec.get_or_insert_with(Default::default);
    complete_mysql_container(&mut pod.containers[plan.mysql_container], plan);

    let init_containers = pod.init_containers.get_or_insert_with(Vec::new);
    upsert_at(init_containers, 0, init_container(plan, names));
    match restore_container(plan, names) {
        Some(fetch) => upsert_at(init_containers, 1, fetch),
        None => init_containers.retain(|c| c.name != CONTAINER_FETCH_BACKUP),
    }
    let clone_position = if plan.backups.restore.is_some() { 2 } else { 1 };
    upsert_at(init_containers, clone_position, clone_container(plan, names));
    match replay_container(plan, names) {
        Some(replay) => upsert_at(init_containers, clone_position + 1, replay),
        None => init_containers.retain(|c| c.name != CONTAINER_REPLAY_BINLOGS),
    }

    let sidecar_position = plan.mysql_container + 1;
    upsert_owned(&mut pod.containers, sidecar_position, sidecar_container(plan, names));
    if plan.metrics {
        upsert_owned(&mut pod.containers, sidecar_position + 1, exporter_container());
    } else {
        pod.containers.retain(|c| c.name != CONTAINER_EXPORTER);
    }
    match shipper_container(plan, names) {
        Some(shipper) => {
            upsert_at(&mut pod.containers, sidecar_position + 1 + usize::from(plan.metrics), shipper)
        }
        None => pod.containers.retain(|c| c.name != CONTAINER_SHIP_BINLOGS),
    }

    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    upsert_by_name(
        volumes,
        Volume {
            name: VOLUME_CONF.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        |v| &v.name,
    );
    upsert_by_name(
        volumes,
        Volume {
            name: VOLUME_CONFIG_MAP.into(),
            config_map: Some(ConfigMapVolumeSource { name: plan.config_map.clone(), ..Default::default() }),
            ..Default::default()
        },
        |v| &v.name,
    );

    upsert_by_name(volumes, tls_volume(plan), |v| &v.name);
    upsert_by_name(volumes, credentials_volume(plan), |v| &v.name);
    if plan.metrics {
        let in_memory = EmptyDirVolumeSource { medium: Some("Memory".into()), ..Default::default() };
        let config =
            Volume { name: VOLUME_EXPORTER_CONFIG.into(), empty_dir: Some(in_memory), ..Default::default() };
        upsert_by_name(volumes, config, |v| &v.name);
    } else {
        volumes.retain(|v| v.name != VOLUME_EXPORTER_CONFIG);
    }
    match plan.backups.restore.as_ref().and_then(|r| target_volume(&r.source, true)) {
        Some(volume) => upsert_by_name(volumes, volume, |v| &v.name),
        None => volumes.retain(|v| v.name != VOLUME_BACKUP_TARGET),
    }
    let archive_claim = plan.backups.binlog_archive.and(plan.backups.target.as_ref());
    match archive_claim.and_then(|target| target_volume(target, false)) {
        Some(volume) => {
            upsert_by_name(volumes, Volume { name: VOLUME_BINLOG_TARGET.into(), ..volume }, |v| &v.name)
        }
        None => volumes.retain(|v| v.name != VOLUME_BINLOG_TARGET),
    }

    let affinity = pod.affinity.get_or_insert_with(Affinity::default);
    affinity.pod_anti_affinity.get_or_insert_with(|| default_anti_affinity(plan));
    out
}

/// Puts `item` at `position` unless an item of the same name exists (a previous expansion put
/// it there), which converges to `item` in place.
fn upsert_at(items: &mut Vec<Container>, position: usize, item: Container) {
    match items.iter().position(|c| c.name == item.name) {
        Some(index) => converge(&mut items[index], item),
        None => items.insert(position.min(items.len()), item),
    }
}

/// As [`upsert_at`], for a container the pattern owns whole: its command, args and env are
/// exactly the planned ones, so what an earlier version set and this one doesn't (a password
/// variable, the exporter's old flags) goes instead of being kept as an API server default would.
/// They are set after the rest converges rather than converged themselves: the script is most
/// of the container, and comparing it as JSON only to overwrite it was a tenth of an UPDATE's
/// expansion (callgrind).
fn upsert_owned(items: &mut Vec<Container>, position: usize, mut item: Container) {
    let owned = (item.command.take(), item.args.take(), item.env.take());
    let name = item.name.clone();
    upsert_at(items, position, item);
    let container = items.iter_mut().find(|c| c.name == name).expect("upserted just above");
    (container.command, container.args, container.env) = owned;
}

fn upsert_by_name<T: Serialize + DeserializeOwned>(
    items: &mut Vec<T>,
    item: T,
    name: impl Fn(&T) -> &String,
) {
    match items.iter().position(|existing| name(existing) == name(&item)) {
        Some(index) => converge(&mut items[index], item),
        None => items.push(item),
    }
}

/// Brings `existing` to say everything `desired` says, changing nothing else. The API server
/// fills defaults into what the webhook added (`imagePullPolicy`, `terminationMessagePath`, a
/// port's `protocol`, a ConfigMap volume's `defaultMode`…): replacing the item would strip them,
/// and the patch of an expanded object would never be empty or minimal.
fn converge<T: Serialize + DeserializeOwned>(existing: &mut T, desired: T) {
    let (Ok(mut current), Ok(wanted)) = (serde_json::to_value(&*existing), serde_json::to_value(&desired))
    else {
        *existing = desired;
        return;
    };
    if is_covered(&wanted, &current) {
        return;
    }
    overlay(&mut current, wanted);
    *existing = serde_json::from_value(current).unwrap_or(desired);
}

/// Writes every field of `desired` into `target`: objects merge key by key, arrays of the same
/// length element by element, anything else is replaced.
fn overlay(target: &mut Value, desired: Value) {
    match (target, desired) {
        (Value::Object(target), Value::Object(desired)) => {
            for (key, value) in desired {
                match target.get_mut(&key) {
                    Some(existing) => overlay(existing, value),
                    None => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(desired)) if target.len() == desired.len() => {
            for (existing, value) in target.iter_mut().zip(desired) {
                overlay(existing, value);
            }
        }
        (target, desired) => *target = desired,
    }
}

/// Is every field of `desired` present in `actual` with the same value? Arrays must match
/// element by element (order matters for commands, env and containers).
fn is_covered(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(desired), Value::Object(actual)) => {
            desired.iter().all(|(key, value)| actual.get(key).is_some_and(|a| is_covered(value, a)))
        }
        (Value::Array(desired), Value::Array(actual)) => {
            desired.len() == actual.len() && desired.iter().zip(actual).all(|(d, a)| is_covered(d, a))
        }
        _ => desired == actual,
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() }
}

fn data_mount() -> VolumeMount {
    VolumeMount { sub_path: Some(DATA_SUB_PATH.into()), ..mount(VOLUME_DATA, DATA_DIR) }
}

/// The members' TLS identity (Secret `<name>-tls`), for every container that serves or fetches
/// clones and backups. Only the CA bundle, certificate and key are projected: the CA's private
/// key, in the Secrets the controller makes, never reaches a pod.
pub fn tls_volume(plan: &Plan) -> Volume {
    let item = |key: &str| KeyToPath { key: key.into(), path: key.into(), mode: None };
    Volume {
        name: VOLUME_TLS.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(plan.tls_secret.clone()),
            items: Some(vec![item(TLS_CA_FILE), item(TLS_CERT_FILE), item(TLS_KEY_FILE)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where [`tls_volume`] is mounted, read-only.
pub fn tls_mount() -> VolumeMount {
    VolumeMount { read_only: Some(true), ..mount(VOLUME_TLS, TLS_DIR) }
}

/// The credentials Secret, every key (the exporter's may be missing from a Secret of yours: a
/// missing file is reported by the scripts, where a projected missing key would keep the pod from
/// starting). Mounted read-only at [`CREDENTIALS_DIR`] wherever a password is needed: passwords
/// are files, never environment variables (README "Credentials as files").
pub fn credentials_volume(plan: &Plan) -> Volume {
    Volume {
        name: VOLUME_CREDENTIALS.into(),
        secret: Some(SecretVolumeSource { secret_name: Some(plan.secret.clone()), ..Default::default() }),
        ..Default::default()
    }
}

/// Where [`credentials_volume`] is mounted, read-only.
pub fn credentials_mount() -> VolumeMount {
    VolumeMount { read_only: Some(true), ..mount(VOLUME_CREDENTIALS, CREDENTIALS_DIR) }
}

fn bash(script: String) -> Option<Vec<String>> {
    Some(vec!["bash".into(), "-c".into(), script])
}

fn exec_probe(command: String, period: i32, timeout: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: bash(command) }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        ..Default::default()
    }
}

fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        ..Default::default()
    }
}

fn run_as(uid: Option<i64>) -> Option<SecurityContext> {
    uid.map(|uid| SecurityContext { run_as_user: Some(uid), run_as_group: Some(uid), ..Default::default() })
}

fn init_container(plan: &Plan, names: Names<'_>) -> Container {
    Container {
        name: CONTAINER_INIT.into(),
        image: Some(plan.mysql_image.clone()),
        command: bash(scripts::init(names)),
        volume_mounts: Some(vec![
            mount(VOLUME_CONF, INIT_CONF_DIR),
            mount(VOLUME_CONFIG_MAP, INIT_CONFIG_MAP_DIR),
        ]),
        ..Default::default()
    }
}

/// `fetch-backup` of a StatefulSet annotated `restore-from`: the client image downloads and
/// verifies the backup into the data volume, where `clone-mysql` (the backup image, which has no
/// S3 client) prepares it.
fn restore_container(plan: &Plan, names: Names<'_>) -> Option<Container> {
    let restore = plan.backups.restore.as_ref()?;
    let mut container = client_container(plan, &restore.source, CONTAINER_FETCH_BACKUP, true);
    container.command = Some(vec!["sh".into(), "-c".into(), scripts::fetch_backup(names, restore)]);
    container.volume_mounts.get_or_insert_with(Vec::new).push(data_mount());
    Some(container)
}

/// `replay-binlogs`, after `clone-mysql`, when `restore-to-time` is set: the mysql image has the
/// server and the binlog tool the replay needs; root's password opens the restored data.
fn replay_container(plan: &Plan, names: Names<'_>) -> Option<Container> {
    plan.backups.restore.as_ref()?.to_time.as_ref()?;
    Some(Container {
        name: CONTAINER_REPLAY_BINLOGS.into(),
        image: Some(plan.mysql_image.clone()),
        command: bash(scripts::replay_binlogs(plan.flavor, names)),
        volume_mounts: Some(vec![data_mount(), credentials_mount()]),
        ..Default::default()
    })
}

/// `ship-binlogs`, when `binlog-archive` is set: the client image (the database images carry
/// no S3 client), the data volume read-only, the target (a claim as volume `binlog-target`).
fn shipper_container(plan: &Plan, names: Names<'_>) -> Option<Container> {
    plan.backups.binlog_archive?;
    let target = plan.backups.target.as_ref()?;
    let mut container = client_container(plan, target, CONTAINER_SHIP_BINLOGS, false);
    container.command = Some(vec!["sh".into(), "-c".into(), scripts::ship_binlogs(names, target)]);
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    for mount in mounts.iter_mut().filter(|m| m.name == VOLUME_BACKUP_TARGET) {
        mount.name = VOLUME_BINLOG_TARGET.into();
    }
    mounts.push(VolumeMount { read_only: Some(true), ..data_mount() });
    container.resources = Some(requests("10m", "32Mi"));
    Some(container)
}

fn clone_container(plan: &Plan, names: Names<'_>) -> Container {
    let script = if plan.backups.restore.is_some() {
        scripts::clone_restoring(plan.flavor, names)
    } else {
        scripts::clone(plan.flavor, names)
    };
    Container {
        name: CONTAINER_CLONE.into(),
        image: Some(plan.backup_image.clone()),
        command: bash(script),
        volume_mounts: Some(vec![data_mount(), mount(VOLUME_CONF, CONF_DIR), tls_mount()]),
        security_context: run_as(plan.flavor.clone_run_as()),
        ..Default::default()
    }
}

fn sidecar_container(plan: &Plan, names: Names<'_>) -> Container {
    Container {
        name: plan.flavor.sidecar_name().into(),
        image: Some(plan.backup_image.clone()),
        command: bash(match plan.backups.binlog_archive {
            Some(archive) => scripts::archiving_sidecar(plan.flavor, names, archive.flush_interval),
            None => scripts::sidecar(plan.flavor, names),
        }),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME_CLONE.into()),
            container_port: PORT_CLONE,
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction { command: bash(scripts::clone_port_listening()) }),
            period_seconds: Some(2),
            ..Default::default()
        }),
        resources: Some(requests("100m", "100Mi")),
        volume_mounts: Some(vec![
            data_mount(),
            mount(VOLUME_CONF, CONF_DIR),
            tls_mount(),
            credentials_mount(),
        ]),
        security_context: run_as(plan.flavor.sidecar_run_as()),
        ..Default::default()
    }
}

/// mysqld-exporter as the `exporter` account, its password from the Secret's file through a
/// configuration file it writes at start (`scripts::exporter`).
fn exporter_container() -> Container {
    // Never more connections than the account allows.
    let args = [
        format!("--mysqld.address=127.0.0.1:{PORT_MYSQL}"),
        format!("--exporter.max-open-conns={EXPORTER_MAX_CONNECTIONS}"),
        "--tls.insecure-skip-verify".into(),
    ];
    Container {
        name: CONTAINER_EXPORTER.into(),
        image: Some(EXPORTER_IMAGE.into()),
        command: Some(vec!["sh".into(), "-c".into(), scripts::exporter(EXPORTER_BINARY, &args)]),
        volume_mounts: Some(vec![
            credentials_mount(),
            mount(VOLUME_EXPORTER_CONFIG, EXPORTER_CONFIG_DIR),
            tls_mount(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME_METRICS.into()),
            container_port: PORT_METRICS,
            ..Default::default()
        }]),
        resources: Some(requests("50m", "64Mi")),
        ..Default::default()
    }
}

/// Completes the user's mysql container. Their fields win; the pattern adds what is missing and
/// owns only the root password: the image reads it from the Secret's file (`*_ROOT_PASSWORD_FILE`,
/// which must match the Secret the sidecar and probes use), and a `*_ROOT_PASSWORD` variable,
/// which an earlier version set from the Secret and the image refuses beside the file, goes.
fn complete_mysql_container(container: &mut Container, plan: &Plan) {
    let flavor = plan.flavor;
    let env = container.env.get_or_insert_with(Vec::new);
    env.retain(|e| !ROOT_PASSWORD_ENVS.contains(&e.name.as_str()));
    let file = EnvVar {
        name: flavor.root_password_file_env().into(),
        value: Some(scripts::credential_file(SECRET_KEY_ROOT_PASSWORD)),
        ..Default::default()
    };
    upsert_by_name(env, file, |e| &e.name);

    let ports = container.ports.get_or_insert_with(Vec::new);
    if !ports.iter().any(|p| p.container_port == PORT_MYSQL) {
        ports.push(ContainerPort {
            name: Some(PORT_NAME_MYSQL.into()),
            container_port: PORT_MYSQL,
            ..Default::default()
        });
    }

    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    for wanted in [data_mount(), mount(VOLUME_CONF, CONF_DIR), tls_mount(), credentials_mount()] {
        if !mounts.iter().any(|m| m.mount_path == wanted.mount_path) {
            mounts.push(wanted);
        }
    }

    // A startup probe covers first initialisation and crash recovery, so liveness can stay strict.
    let alive = scripts::mysql_alive(flavor);
    let ready = scripts::mysql_ready(flavor, plan.first_ordinal, plan.max_lag);
    set_probe(
        &mut container.startup_probe,
        Probe { failure_threshold: Some(60), ..exec_probe(alive.clone(), 5, 5) },
    );
    set_probe(&mut container.liveness_probe, exec_probe(alive, 10, 5));
    set_probe(
        &mut container.readiness_probe,
        Probe { initial_delay_seconds: Some(5), ..exec_probe(ready, 2, 2) },
    );

    // Default requests only for resources the user left open: a request above a user's limit
    // would be invalid.
    let resources = container.resources.get_or_insert_with(Default::default);
    let limits = resources.limits.clone().unwrap_or_default();
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (resource, amount) in [("cpu", "500m"), ("memory", "1Gi")] {
        if !requests.contains_key(resource) && !limits.contains_key(resource) {
            requests.insert(resource.into(), Quantity(amount.into()));
        }
    }
}

/// The root password variables an earlier version set on the mysql container from the Secret.
const ROOT_PASSWORD_ENVS: [&str; 2] = ["MYSQL_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD"];

/// Sets `probe` to `desired` unless it is the user's: a probe of the expansion, this version's
/// or an earlier one's (a `bash -c` script that starts by setting `MYSQL_PWD`), is brought to
/// `desired`, so that an upgrade doesn't keep a probe reading a variable that is gone.
fn set_probe(probe: &mut Option<Probe>, desired: Probe) {
    let ours = probe.as_ref().is_none_or(|existing| {
        let command = existing.exec.as_ref().and_then(|e| e.command.as_deref()).unwrap_or_default();
        matches!(command, [shell, flag, script] if shell == "bash" && flag == "-c" && script.starts_with("MYSQL_PWD="))
    });
    if ours {
        match probe {
            Some(existing) => converge(existing, desired),
            None => *probe = Some(desired),
        }
    }
}

fn data_claim(plan: &Plan) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(VOLUME_DATA.into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: plan.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(plan.storage.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Soft: a cluster with fewer nodes than members still schedules them all. The spread policy
/// can require a hard rule.
fn default_anti_affinity(plan: &Plan) -> PodAntiAffinity {
    PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(plan.selector.clone()),
                    ..Default::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..Default::default()
            },
        }]),
        ..Default::default()
    }
}
