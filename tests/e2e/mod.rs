//! A pod runner for the end-to-end test: runs what `mysql-webhook mutate --with-secret` emits as
//! local processes, the way the kubelet and the StatefulSet controller would, with real MariaDB
//! servers. This module owns the StatefulSet's side: the emitted manifests, the pods' network,
//! names, volumes, environment and images, OrderedReady start, pod deletion, and SQL against the
//! members; `container` owns the processes of one container.
//!
//! Each pod gets its own network namespace, with a veth on a bridge in a private "switch"
//! namespace: there is no default route and nothing is added to the host's network namespace.
//! A hosts file bound over `/etc/hosts` resolves `<sts>-N.<service>`. Init containers run in order
//! with retries; containers are restarted when they exit; pods start in ordinal order, each Ready
//! before the next. Images map to host programs through [`IMAGES`]; an image not in the table
//! fails the test. Everything is torn down on drop, also when a test fails.

// Each test crate (replication, backups) uses a different subset.
#![allow(dead_code)]

mod container;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use container::{Bind, ContainerSpec, Supervisor};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};

/// The images the runner can run, as host programs: the image's ENTRYPOINT and CMD. The host has
/// Debian's MariaDB 10.11, its tools under the names the mariadb images use (`mariadb`,
/// `mariadb-admin`, `mariadb-backup`, `mbstream`, `socat`), and a stand-in for the image's
/// entrypoint.
const IMAGES: [(&str, &[&str], &[&str]); 3] = [
    ("mariadb:11.4", &[ENTRYPOINT], &["mariadbd"]),
    ("mariadb:10.11", &[ENTRYPOINT], &["mariadbd"]),
    // The backup client image: Debian's rclone, and its scripts run by the host's POSIX sh
    // (dash), stricter than the image's BusyBox sh.
    ("rclone/rclone:1.69.1", &["rclone"], &[]),
];

/// Where every container finds `tests/e2e/image/`, the images' stand-ins: a path of its own, so
/// it stays visible when the checkout is under /tmp (hidden by the container's private /tmp).
const IMAGE_DIR: &str = "/run/e2e-image";
const ENTRYPOINT: &str = "/run/e2e-image/docker-entrypoint.sh";

/// The client's address on the pods' network (the pods have 10 and up).
const CLIENT_ADDRESS: &str = "10.244.0.2";

/// Grace period of a pod deletion before SIGKILL (terminationGracePeriodSeconds, shortened).
pub const GRACE: Duration = Duration::from_secs(10);

/// How long a pod may take to be Ready, an init container to finish, a row to replicate.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const INIT_TIMEOUT: Duration = Duration::from_secs(90);
const INIT_ATTEMPTS: u64 = 3;
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Namespaces and directories are named `<NAMESPACE_PREFIX><pid>-<cluster>-…`, so runs in
/// parallel never collide and the leftovers of a killed run can be recognised.
const NAMESPACE_PREFIX: &str = "mwe2e";

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Fails with what to do when the runner can't work here; never passes silently. Creates the
/// mount points the pods need that a host lacks: the TLS and credentials Secrets' directories
/// (empty; containers mount their own volumes over them).
fn require_environment() {
    for dir in [mysql_webhook_core::consts::TLS_DIR, mysql_webhook_core::consts::CREDENTIALS_DIR] {
        fs::create_dir_all(dir).expect("creating a Secret's mount point");
    }
    let uid = Command::new("id").arg("-u").output().expect("running id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the end-to-end test needs root (network namespaces, mounts); run it as root, as CI does"
    );
    let tools = [
        "ip",
        "unshare",
        "nsenter",
        "setpriv",
        "timeout",
        "mariadbd",
        "mariadb-install-db",
        "mariadb",
        "mariadb-admin",
        "mariadb-backup",
        "mbstream",
        "socat",
        "rclone",
    ];
    let missing: Vec<&str> = tools
        .into_iter()
        .filter(|tool| {
            !Command::new("bash")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the end-to-end test needs {missing:?}; install them with: apt-get install -y --no-install-recommends \
         mariadb-server mariadb-client mariadb-backup socat rclone iproute2 util-linux coreutils (or run .ci/run)"
    );
}

/// What `mutate --with-secret` emitted for one StatefulSet.
pub struct Manifests {
    pub statefulset: StatefulSet,
    pub config_map: ConfigMap,
    /// The credentials.
    pub secret: Secret,
    /// The members' TLS identity (`<name>-tls`).
    pub tls: Secret,
    /// The backup CronJob, when the StatefulSet schedules backups.
    pub backup_cron_job: Option<CronJob>,
    /// Secrets the test adds to the namespace (a backup target's keys).
    pub other_secrets: Vec<Secret>,
}

impl Manifests {
    /// Runs the built binary on a manifest of the repository.
    pub fn mutate(example: &str) -> Manifests {
        Manifests::mutate_file(&repo(example))
    }

    /// The repository's manifest `example` with `annotations` added to its StatefulSet, expanded.
    pub fn mutate_with(example: &str, annotations: &[(&str, &str)]) -> Manifests {
        let text = fs::read_to_string(repo(example)).expect("reading the example");
        let mut documents =
            mysql_webhook_core::manifests::read_documents(&text).expect("the example is YAML");
        let sts = documents.iter_mut().find(|d| d["kind"] == "StatefulSet").expect("a StatefulSet");
        for (key, value) in annotations {
            sts["metadata"]["annotations"][format!("mysql-webhook.io/{key}")] = (*value).into();
        }
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        fs::write(file.path(), serde_json::to_string(&documents[0]).expect("JSON")).expect("writing");
        Manifests::mutate_file(file.path())
    }

    fn mutate_file(path: &Path) -> Manifests {
        let output = Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
            .args(["mutate", "--with-secret", "-f"])
            .arg(path)
            .output()
            .expect("running mysql-webhook");
        assert!(
            output.status.success(),
            "mysql-webhook mutate -f {} --with-secret: {}\n{}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("mutate prints UTF-8");
        let documents =
            mysql_webhook_core::manifests::read_documents(&text).expect("mutate prints manifests");
        let secret = |kind: &str| {
            let found = documents.iter().find(|d| d["kind"] == "Secret" && d["type"] == kind);
            let found = found.unwrap_or_else(|| panic!("mutate emitted no {kind} Secret")).clone();
            serde_json::from_value(found).expect("the emitted Secret is one")
        };
        Manifests {
            statefulset: find(&documents, "StatefulSet"),
            config_map: find(&documents, "ConfigMap"),
            secret: secret("Opaque"),
            tls: secret("kubernetes.io/tls"),
            backup_cron_job: documents
                .iter()
                .find(|d| d["kind"] == "CronJob")
                .map(|d| serde_json::from_value(d.clone()).expect("the emitted CronJob is one")),
            other_secrets: Vec::new(),
        }
    }

    /// The Secret named `name` with `data`, as `kubectl create secret generic` makes it.
    pub fn add_secret(&mut self, name: &str, data: &[(&str, &str)]) {
        self.other_secrets.push(Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        });
    }

    /// The Secret named `name`: one the expansion emitted (credentials, TLS) or one the test added.
    fn find_secret(&self, name: &str) -> Option<&Secret> {
        [&self.secret, &self.tls]
            .into_iter()
            .chain(&self.other_secrets)
            .find(|s| s.metadata.name.as_deref() == Some(name))
    }

    pub fn secret_value(&self, key: &str) -> String {
        let data = self.secret.data.as_ref().expect("the Secret has data");
        let bytes = &data.get(key).unwrap_or_else(|| panic!("the Secret has no key {key}")).0;
        String::from_utf8(bytes.clone()).expect("passwords are UTF-8")
    }

    fn name(&self) -> &str {
        self.statefulset.metadata.name.as_deref().expect("the StatefulSet has a name")
    }

    fn service(&self) -> &str {
        self.statefulset.spec.as_ref().and_then(|s| s.service_name.as_deref()).expect("serviceName is set")
    }

    /// `spec.replicas`.
    pub fn replicas(&self) -> u32 {
        self.statefulset.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as u32
    }
}

/// The files of a Secret volume: every key, or the projected `items` (key → path) only.
fn secret_files(
    secret: &Secret,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    let data = secret.data.clone().unwrap_or_default();
    match items {
        None => data.into_iter().map(|(key, value)| (key, value.0)).collect(),
        Some(items) => items
            .iter()
            .map(|item| {
                let value = data.get(&item.key).unwrap_or_else(|| panic!("Secret has no key {}", item.key));
                (item.path.clone(), value.0.clone())
            })
            .collect(),
    }
}

/// The one document of `kind` among what `mutate` printed.
fn find<T: serde::de::DeserializeOwned>(documents: &[serde_json::Value], kind: &str) -> T {
    let document = documents.iter().find(|d| d["kind"] == kind);
    let document = document.unwrap_or_else(|| panic!("mutate emitted no {kind}")).clone();
    serde_json::from_value(document).unwrap_or_else(|e| panic!("the emitted {kind} is not one: {e}"))
}

/// A running StatefulSet: its namespaces, pods and files. Dropping it tears everything down.
pub struct Cluster {
    pub manifests: Manifests,
    prefix: String,
    dir: tempfile::TempDir,
    pods: BTreeMap<u32, Vec<Supervisor>>,
    /// Created network namespaces, the switch first.
    namespaces: Vec<String>,
    /// The highest ordinal the hosts file names.
    known_members: u32,
    /// Backup Jobs run so far.
    jobs: u32,
    /// Port forwarders from the pods' network to the host ([`Cluster::expose_host_port`]).
    forwarders: Vec<std::process::Child>,
}

/// Where a pod's containers run: its network namespace, hostname and log.
struct Pod {
    netns: String,
    hostname: String,
    log: PathBuf,
}

/// The directory of the namespace's PersistentVolumeClaim `name`: one per test process, shared
/// by its clusters (a restored cluster reads what another one's backup wrote).
pub fn shared_claim(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{NAMESPACE_PREFIX}{}-claims", std::process::id()))
        .join(name);
    fs::create_dir_all(&path).expect("creating a claim's directory");
    path
}

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Starts the first `members` members as the StatefulSet controller would.
    pub fn start(manifests: Manifests, members: u32) -> Cluster {
        require_environment();
        remove_leftovers_of_killed_runs();
        let prefix = format!(
            "{NAMESPACE_PREFIX}{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        );
        // Under target/, not /tmp: every container gets a private /tmp.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("creating the run's directory");
        let switch = format!("{prefix}-sw");
        run(&["ip", "netns", "add", &switch]);
        let mut cluster = Cluster {
            manifests,
            prefix,
            dir,
            pods: BTreeMap::new(),
            namespaces: vec![switch.clone()],
            known_members: 0,
            jobs: 0,
            forwarders: Vec::new(),
        };
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        // Where the test's SQL comes from: a client elsewhere in the cluster, like the tutorial's
        // `kubectl run mysql-client`, which the servers see as root@'%', not as a local account.
        let client = cluster.client_namespace();
        cluster.plug(&client, "vclient", CLIENT_ADDRESS);
        // A wrong name fails fast and locally instead of asking the host's resolver.
        fs::write(cluster.dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("writing resolv.conf");
        cluster.scale(members);
        cluster
    }

    fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.manifests.name())
    }

    fn namespace(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.prefix)
    }

    fn client_namespace(&self) -> String {
        format!("{}-client", self.prefix)
    }

    fn address(ordinal: u32) -> String {
        assert!(ordinal < 240, "the runner's /24 has room for 240 members");
        format!("10.244.0.{}", 10 + ordinal)
    }

    fn pod_dir(&self, ordinal: u32) -> PathBuf {
        self.dir.path().join(self.pod_name(ordinal))
    }

    /// The hosts file every container sees, rewritten in place (the same inode stays bound) so
    /// that running pods resolve members added later, as with the headless Service's DNS.
    fn write_hosts(&mut self, members: u32) {
        self.known_members = self.known_members.max(members);
        let service = self.manifests.service();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for ordinal in 0..self.known_members {
            let pod = self.pod_name(ordinal);
            let address = Cluster::address(ordinal);
            hosts.push_str(&format!(
                "{address} {pod}.{service} {pod}.{service}.default.svc.cluster.local {pod}\n"
            ));
        }
        fs::write(self.dir.path().join("hosts"), hosts).expect("writing the hosts file");
    }

    /// The pod's network namespace, plugged into the switch.
    fn ensure_network(&mut self, ordinal: u32) {
        let namespace = self.namespace(ordinal);
        if !self.namespaces.contains(&namespace) {
            self.plug(&namespace, &format!("vp{ordinal}"), &Cluster::address(ordinal));
            self.write_hosts(ordinal + 1);
        }
    }

    /// A new network namespace with address `address` on the switch's bridge, through the veth
    /// `port` (its end in the switch) and `eth0`.
    fn plug(&mut self, namespace: &str, port: &str, address: &str) {
        let switch = self.namespaces[0].clone();
        run(&["ip", "netns", "add", namespace]);
        self.namespaces.push(namespace.to_owned());
        let veth = ["ip", "-n", &switch, "link", "add", port, "type", "veth", "peer", "name", "eth0"];
        run(&[&veth[..], &["netns", namespace]].concat());
        run(&["ip", "-n", &switch, "link", "set", port, "master", "br0", "up"]);
        run(&["ip", "-n", namespace, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        run(&["ip", "-n", namespace, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", namespace, "link", "set", "lo", "up"]);
    }

    /// Starts members `0..replicas` that don't run, in order, each Ready before the next
    /// (OrderedReady).
    pub fn scale(&mut self, replicas: u32) {
        for ordinal in 0..replicas {
            if !self.pods.contains_key(&ordinal) {
                self.start_pod(ordinal);
            }
        }
    }

    /// Creates pod `ordinal` and waits until it is Ready: fresh emptyDirs, the claims kept from
    /// an earlier incarnation.
    pub fn start_pod(&mut self, ordinal: u32) {
        self.try_start_pod(ordinal).unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// [`Cluster::start_pod`], with an init container's failure returned instead of a panic.
    pub fn try_start_pod(&mut self, ordinal: u32) -> Result<(), String> {
        let started = Instant::now();
        self.ensure_network(ordinal);
        let pod_dir = self.pod_dir(ordinal);
        let _ = fs::remove_dir_all(pod_dir.join("volumes"));
        fs::create_dir_all(pod_dir.join("logs")).expect("creating the pod's log directory");
        let template = self.manifests.statefulset.spec.as_ref().and_then(|s| s.template.spec.clone());
        let template = template.expect("the StatefulSet has a pod template");
        let volumes = self.volume_sources(ordinal);

        for container in template.init_containers.iter().flatten() {
            self.run_init_container(ordinal, &self.container(ordinal, container, &volumes))?;
        }
        let supervisors =
            template.containers.iter().map(|c| self.container(ordinal, c, &volumes).supervise()).collect();
        self.pods.insert(ordinal, supervisors);
        self.wait_ready(ordinal);
        eprintln!(
            "{} Ready {:.1} s after its creation",
            self.pod_name(ordinal),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The host directory of member `ordinal`'s datadir (its data claim's `mysql` subPath).
    pub fn data_dir(&self, ordinal: u32) -> PathBuf {
        self.pod_dir(ordinal).join("claims").join("data").join("mysql")
    }

    /// Deletes pod `ordinal` as the kubelet does: SIGTERM to every container, the grace period,
    /// then SIGKILL. Returns how long it took. Its claims stay.
    pub fn delete_pod(&mut self, ordinal: u32) -> Duration {
        let started = Instant::now();
        let pod = self.pods.remove(&ordinal).expect("the pod runs");
        container::stop(pod, GRACE);
        started.elapsed()
    }

    /// Where each volume of the pod lives on the host, and whether it is read-only.
    fn volume_sources(&self, ordinal: u32) -> BTreeMap<String, (PathBuf, bool)> {
        let pod_dir = self.pod_dir(ordinal);
        let spec = self.manifests.statefulset.spec.as_ref().expect("the StatefulSet has a spec");
        let mut sources = BTreeMap::new();
        for claim in spec.volume_claim_templates.iter().flatten() {
            let name = claim.metadata.name.clone().expect("claim templates have names");
            let path = pod_dir.join("claims").join(&name);
            fs::create_dir_all(&path).expect("creating a claim's directory");
            sources.insert(name, (path, false));
        }
        let pod = spec.template.spec.as_ref().expect("the StatefulSet has a pod template");
        sources.extend(self.pod_volumes(&pod_dir, pod));
        sources
    }

    /// The volumes of a pod spec, under `pod_dir`: emptyDirs fresh, ConfigMaps and Secrets as
    /// files (read-only), claims shared by the test's clusters.
    fn pod_volumes(&self, pod_dir: &Path, pod: &PodSpec) -> BTreeMap<String, (PathBuf, bool)> {
        let mut sources = BTreeMap::new();
        for volume in pod.volumes.iter().flatten() {
            let path = pod_dir.join("volumes").join(&volume.name);
            fs::create_dir_all(&path).expect("creating a volume's directory");
            let files: Vec<(String, Vec<u8>)> = if let Some(source) = &volume.config_map {
                let config_map = &self.manifests.config_map;
                assert_eq!(
                    Some(&source.name),
                    config_map.metadata.name.as_ref(),
                    "volume {}: unknown ConfigMap",
                    volume.name
                );
                config_map.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect()
            } else if let Some(source) = &volume.secret {
                let name = source.secret_name.as_deref().unwrap_or_default();
                match self.manifests.find_secret(name) {
                    Some(secret) => secret_files(secret, source.items.as_deref()),
                    // The kubelet starts the pod without an optional Secret that doesn't exist;
                    // the runner leaves the volume out (an empty source: its mount point need
                    // not exist on the host).
                    None if source.optional == Some(true) => {
                        sources.insert(volume.name.clone(), (PathBuf::new(), true));
                        continue;
                    }
                    None => panic!("volume {}: unknown Secret {name}", volume.name),
                }
            } else if let Some(claim) = &volume.persistent_volume_claim {
                // A claim of the namespace, shared by every cluster of the test.
                let path = shared_claim(&claim.claim_name);
                sources.insert(volume.name.clone(), (path, claim.read_only == Some(true)));
                continue;
            } else if volume.empty_dir.is_some() {
                sources.insert(volume.name.clone(), (path, false));
                continue;
            } else {
                panic!("volume {} has a source the runner doesn't know", volume.name);
            };
            for (key, content) in files {
                fs::write(path.join(key), content).expect("writing a volume's file");
            }
            sources.insert(volume.name.clone(), (path, true));
        }
        sources
    }

    /// Replaces the members' TLS identity, as a controller renewal does, and updates it in the
    /// running pods' Secret volumes like the kubelet (each file replaced by a rename).
    pub fn renew_tls(&mut self, tls: Secret) {
        self.manifests.tls = tls;
        let spec = self.manifests.statefulset.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let volumes = spec.and_then(|s| s.volumes.clone()).unwrap_or_default();
        let name = self.manifests.tls.metadata.name.clone();
        for volume in volumes.iter().filter(|v| v.secret.as_ref().is_some_and(|s| s.secret_name == name)) {
            let items = volume.secret.as_ref().and_then(|s| s.items.as_deref());
            for &ordinal in self.pods.keys() {
                let dir = self.pod_dir(ordinal).join("volumes").join(&volume.name);
                for (path, content) in secret_files(&self.manifests.tls, items) {
                    let staged = dir.join(format!("..{path}.new"));
                    fs::write(&staged, content).expect("writing a renewed Secret file");
                    fs::rename(&staged, dir.join(&path)).expect("replacing a Secret file");
                }
            }
        }
    }

    /// The container's environment: what the container runtime sets, then `env` with values and
    /// Secret keys.
    fn env(&self, hostname: &str, container: &Container) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("HOSTNAME".into(), hostname.to_owned()),
            ("HOME".into(), "/root".into()),
        ];
        for var in container.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => {
                    let key = from.secret_key_ref.as_ref().unwrap_or_else(|| {
                        panic!(
                            "env {} of {}: the runner resolves secretKeyRef only",
                            var.name, container.name
                        )
                    });
                    let secret = self.manifests.find_secret(&key.name);
                    let value = secret.and_then(|s| s.data.as_ref()?.get(&key.key));
                    match value {
                        Some(value) => String::from_utf8(value.0.clone()).expect("UTF-8 Secret values"),
                        // An optional key that is missing leaves the variable unset.
                        None if key.optional == Some(true) => continue,
                        None => panic!(
                            "env {} of {}: no key {} in Secret {}",
                            var.name, container.name, key.key, key.name
                        ),
                    }
                }
                (None, None) => String::new(),
            };
            env.push((var.name.clone(), value));
        }
        env
    }

    /// The command line of a container: the image's entrypoint and command unless the container
    /// replaces them (Kubernetes rules: `command` drops both, `args` replaces CMD).
    fn argv(container: &Container) -> Vec<String> {
        let image = container.image.as_deref().unwrap_or_default();
        let (_, entrypoint, cmd) = IMAGES.iter().find(|(name, ..)| *name == image).unwrap_or_else(|| {
            panic!("container {}: image {image:?} is not in the runner's image table", container.name)
        });
        match (&container.command, &container.args) {
            (Some(command), args) => command.iter().chain(args.iter().flatten()).cloned().collect(),
            (None, Some(args)) => {
                entrypoint.iter().map(|p| p.to_string()).chain(args.iter().cloned()).collect()
            }
            (None, None) => entrypoint.iter().chain(cmd.iter()).map(|p| p.to_string()).collect(),
        }
    }

    fn container(
        &self,
        ordinal: u32,
        container: &Container,
        volumes: &BTreeMap<String, (PathBuf, bool)>,
    ) -> ContainerSpec {
        let pod = Pod {
            netns: self.namespace(ordinal),
            hostname: self.pod_name(ordinal),
            log: self.log_file(ordinal, &container.name),
        };
        self.pod_container(&pod, container, volumes)
    }

    fn pod_container(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &BTreeMap<String, (PathBuf, bool)>,
    ) -> ContainerSpec {
        let file = |source: PathBuf, target: &str| Bind { source, target: target.into(), read_only: false };
        let mut binds = vec![
            file(self.dir.path().join("hosts"), "/etc/hosts"),
            file(self.dir.path().join("resolv.conf"), "/etc/resolv.conf"),
            // The image's own my.cnf: Debian's would apply its bind-address after conf.d.
            file(repo("tests/e2e/image/my.cnf"), "/etc/mysql/my.cnf"),
            Bind { source: repo("tests/e2e/image"), target: IMAGE_DIR.into(), read_only: true },
        ];
        for mount in container.volume_mounts.iter().flatten() {
            let (source, read_only) = volumes.get(&mount.name).unwrap_or_else(|| {
                panic!("container {} mounts volume {}, which the pod lacks", container.name, mount.name)
            });
            if source.as_os_str().is_empty() {
                continue;
            }
            let source = match &mount.sub_path {
                // The kubelet creates a missing subPath directory.
                Some(sub) => {
                    let path = source.join(sub);
                    fs::create_dir_all(&path).expect("creating a subPath directory");
                    path
                }
                None => source.clone(),
            };
            binds.push(Bind {
                source,
                target: mount.mount_path.clone(),
                read_only: *read_only || mount.read_only == Some(true),
            });
        }
        ContainerSpec {
            name: container.name.clone(),
            netns: pod.netns.clone(),
            hostname: pod.hostname.clone(),
            binds,
            argv: Cluster::argv(container),
            env: self.env(&pod.hostname, container),
            log: pod.log.clone(),
            readiness: container.readiness_probe.clone(),
        }
    }

    fn log_file(&self, ordinal: u32, container: &str) -> PathBuf {
        self.pod_dir(ordinal).join("logs").join(format!("{container}.log"))
    }

    /// Everything container `container` of member `ordinal` printed, over all its runs.
    pub fn log(&self, ordinal: u32, container: &str) -> String {
        fs::read_to_string(self.log_file(ordinal, container)).unwrap_or_default()
    }

    /// Waits until container `container` of member `ordinal` has logged `needle` `times` times.
    pub fn wait_for_log(&self, ordinal: u32, container: &str, needle: &str, times: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.log(ordinal, container).matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "{container} of member {ordinal} did not log {needle:?} {times} times\n{}",
                self.log_tails(ordinal)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The head (how it began) and tail (how it is doing) of every log of a pod, for failures.
    fn log_tails(&self, ordinal: u32) -> String {
        let mut out = String::new();
        for entry in fs::read_dir(self.pod_dir(ordinal).join("logs")).into_iter().flatten().flatten() {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", entry.file_name().to_string_lossy()));
            let head = lines.len().min(20);
            let tail = lines.len().saturating_sub(15).max(head);
            out.push_str(&lines[..head].join("\n"));
            out.push_str(if tail > head { "\n...\n" } else { "\n" });
            out.extend(lines[tail..].iter().map(|l| format!("{l}\n")));
        }
        out
    }

    /// Runs an init container to completion; retried like the kubelet does, with a short back-off.
    fn run_init_container(&self, ordinal: u32, container: &ContainerSpec) -> Result<(), String> {
        let mut failure = String::new();
        for attempt in 1..=INIT_ATTEMPTS {
            match container.run_until(INIT_TIMEOUT, &|| false) {
                Ok(status) if status.success() => return Ok(()),
                Ok(status) => failure = format!("exited with {status}"),
                Err(error) => failure = error,
            }
            if attempt < INIT_ATTEMPTS {
                std::thread::sleep(Duration::from_secs(attempt));
            }
        }
        Err(format!(
            "init container {} of {} failed {INIT_ATTEMPTS} times, last: {failure}\n{}",
            container.name,
            container.hostname,
            self.log_tails(ordinal)
        ))
    }

    /// Runs the pod of the backup CronJob's Job template once, as the Job controller would
    /// (`restartPolicy: Never`): init containers in order, then the containers, each to
    /// completion, in a network namespace of its own on the pods' network. `env` is added to
    /// every container; `stop` is polled while it runs and kills the pod when true, as a deleted
    /// Job or a lost node would. The pod's log, or the failure with it.
    pub fn run_backup_job(
        &mut self,
        env: &[(&str, &str)],
        stop: &dyn Fn() -> bool,
    ) -> Result<String, String> {
        let cron_job = self.manifests.backup_cron_job.clone().expect("the StatefulSet schedules backups");
        let job_spec = cron_job.spec.and_then(|s| s.job_template.spec).expect("a Job template");
        let pod_spec = job_spec.template.spec.expect("a pod template");
        self.jobs += 1;
        let name = format!("{}-{}", cron_job.metadata.name.unwrap_or_default(), self.jobs);
        let namespace = format!("{}-job{}", self.prefix, self.jobs);
        self.plug(&namespace, &format!("vj{}", self.jobs), &format!("10.244.0.{}", 200 + self.jobs));
        let pod_dir = self.dir.path().join(&name);
        fs::create_dir_all(&pod_dir).expect("creating the Job pod's directory");
        let volumes = self.pod_volumes(&pod_dir, &pod_spec);
        let log = pod_dir.join("pod.log");
        let pod = Pod { netns: namespace, hostname: name.clone(), log: log.clone() };
        let containers = pod_spec.init_containers.iter().flatten().chain(&pod_spec.containers);
        for container in containers {
            let mut spec = self.pod_container(&pod, container, &volumes);
            spec.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let result = spec.run_until(INIT_TIMEOUT, stop);
            let text = fs::read_to_string(&log).unwrap_or_default();
            match result {
                Ok(status) if status.success() => {}
                Ok(status) => return Err(format!("{name}: {} exited with {status}\n{text}", container.name)),
                Err(error) => return Err(format!("{name}: {error}\n{text}")),
            }
        }
        Ok(fs::read_to_string(&log).unwrap_or_default())
    }

    /// Makes `127.0.0.1:port` of the host (a server the test runs there) reachable from the pods
    /// at `10.244.0.2:port` (the client's address): a socat in the client's namespace forwards to
    /// a Unix socket, which one on the host forwards to the port. Stopped with the cluster.
    pub fn expose_host_port(&mut self, port: u16) -> String {
        let socket = self.dir.path().join(format!("host-{port}.sock"));
        let host = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg(format!("TCP:127.0.0.1:{port}"))
            .spawn()
            .expect("starting socat on the host");
        self.forwarders.push(host);
        while !socket.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pods_side = Command::new("ip")
            .args(["netns", "exec", &self.client_namespace(), "socat"])
            .arg(format!("TCP-LISTEN:{port},bind={CLIENT_ADDRESS},fork,reuseaddr"))
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .spawn()
            .expect("starting socat in the client's namespace");
        self.forwarders.push(pods_side);
        format!("{CLIENT_ADDRESS}:{port}")
    }

    /// Waits until every container of the pod passes its readiness probe.
    fn wait_ready(&self, ordinal: u32) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for supervisor in &self.pods[&ordinal] {
            loop {
                let ready =
                    supervisor.is_ready().unwrap_or_else(|e| panic!("{e}\n{}", self.log_tails(ordinal)));
                if ready {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {} not Ready after {READY_TIMEOUT:?} ({} restarts)\n{}",
                    supervisor.name(),
                    self.pod_name(ordinal),
                    supervisor.restarts(),
                    self.log_tails(ordinal)
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    fn supervisor(&self, ordinal: u32, container: &str) -> &Supervisor {
        let pod = self.pods.get(&ordinal).unwrap_or_else(|| panic!("member {ordinal} doesn't run"));
        let supervisor = pod.iter().find(|c| c.name() == container);
        supervisor.unwrap_or_else(|| panic!("member {ordinal} has no container {container}"))
    }

    /// Runs `script` with bash inside container `container` of member `ordinal` (`kubectl exec`):
    /// its success and output.
    pub fn exec(&self, ordinal: u32, container: &str, script: &str) -> (bool, String) {
        self.supervisor(ordinal, container).exec(&["bash".into(), "-c".into(), script.into()])
    }

    /// Runs the readiness probe the expansion gave container `container` of member `ordinal`,
    /// now, as the kubelet does each period: whether it passes, and what it printed.
    pub fn readiness(&self, ordinal: u32, container: &str) -> (bool, String) {
        let supervisor = self.supervisor(ordinal, container);
        let probe = self.manifests.statefulset.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let probe = probe
            .and_then(|pod| pod.containers.iter().find(|c| c.name == container))
            .and_then(|c| c.readiness_probe.as_ref())
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .unwrap_or_else(|| panic!("container {container} has no exec readiness probe"));
        supervisor.exec(&probe)
    }

    /// How often container `container` of member `ordinal` was restarted.
    pub fn restarts(&self, ordinal: u32, container: &str) -> u32 {
        self.supervisor(ordinal, container).restarts()
    }

    /// Kills container `container` of member `ordinal` with SIGKILL, waits for its restart and
    /// for the pod to be Ready again.
    pub fn crash(&self, ordinal: u32, container: &str) {
        let restarts = self.restarts(ordinal, container);
        self.supervisor(ordinal, container).crash();
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.restarts(ordinal, container) == restarts {
            assert!(Instant::now() < deadline, "{container} of member {ordinal} was not restarted");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ready(ordinal);
    }

    /// Runs SQL on member `ordinal` as `user` from the client's namespace, over the pods'
    /// network: tab-separated rows, or the client's error.
    pub fn sql_as(&self, ordinal: u32, user: &str, password: &str, sql: &str) -> Result<String, String> {
        self.client(ordinal, user, password, &["--skip-column-names", "-e", sql])
    }

    /// [`Cluster::sql_as`] over TLS (`--ssl`: encrypted, the server's certificate not verified:
    /// the test connects by address) or explicitly without (`--skip-ssl`).
    pub fn sql_as_over(
        &self,
        tls: bool,
        ordinal: u32,
        user: &str,
        password: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mode = if tls { "--ssl" } else { "--skip-ssl" };
        self.client(ordinal, user, password, &[mode, "--skip-column-names", "-e", sql])
    }

    fn client(&self, ordinal: u32, user: &str, password: &str, args: &[&str]) -> Result<String, String> {
        let output = Command::new("timeout")
            .args(["30", "ip", "netns", "exec", &self.client_namespace()])
            .args(["mariadb", "--no-defaults", "--connect-timeout=5", "--batch", "-u", user])
            .args(["-h", &Cluster::address(ordinal)])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("MYSQL_PWD", password)
            .stdin(Stdio::null())
            .output()
            .expect("running the mariadb client");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
        } else {
            Err(format!("{} ({})", String::from_utf8_lossy(&output.stderr).trim_end(), output.status))
        }
    }

    /// Connects from the client's namespace (not a member) to member `ordinal`'s clone port with
    /// socat, through the address `"{kind}:<member>:3307{options}"` (`TCP`, or `OPENSSL` with
    /// options), for up to `seconds`; how many bytes it received.
    pub fn read_clone_port(&self, ordinal: u32, kind: &str, options: &str, seconds: u32) -> usize {
        let address = format!("{kind}:{}:3307{options}", Cluster::address(ordinal));
        let output = Command::new("timeout")
            .args([&seconds.to_string(), "ip", "netns", "exec", &self.client_namespace()])
            .args(["socat", "-u", &address, "STDOUT"])
            .stdin(Stdio::null())
            .output()
            .expect("running socat");
        output.stdout.len()
    }

    /// Writes a Secret's files into a directory of the run (for a client outside the pods).
    pub fn write_secret_files(&self, secret: &Secret, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).expect("creating a directory for a Secret's files");
        for (path, content) in secret_files(secret, None) {
            fs::write(dir.join(path), content).expect("writing a Secret's file");
        }
        dir
    }

    /// SQL as root with the Secret's password; panics with the error.
    pub fn sql(&self, ordinal: u32, sql: &str) -> String {
        let password = self.manifests.secret_value("root-password");
        self.sql_as(ordinal, "root", &password, sql)
            .unwrap_or_else(|e| panic!("SQL on member {ordinal} failed: {e}\n{sql}"))
    }

    /// Polls `sql` on member `ordinal` until it returns `expected`; how long that took.
    pub fn wait_for(&self, ordinal: u32, sql: &str, expected: &str) -> Duration {
        let started = Instant::now();
        let password = self.manifests.secret_value("root-password");
        let mut last = String::new();
        while started.elapsed() < REPLICATION_TIMEOUT {
            match self.sql_as(ordinal, "root", &password, sql) {
                Ok(value) if value == expected => return started.elapsed(),
                Ok(value) => last = value,
                Err(error) => last = error,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "member {ordinal}: {sql} returned {last:?}, not {expected:?}, for {REPLICATION_TIMEOUT:?}\n{}",
            self.log_tails(ordinal)
        );
    }

    /// `SHOW SLAVE STATUS` of member `ordinal` as field → value.
    pub fn replica_status(&self, ordinal: u32) -> BTreeMap<String, String> {
        // Batch output with column names: a header line and a value line, tab-separated.
        let password = self.manifests.secret_value("root-password");
        let text = self
            .client(ordinal, "root", &password, &["-e", "SHOW SLAVE STATUS"])
            .unwrap_or_else(|e| panic!("SHOW SLAVE STATUS on member {ordinal}: {e}"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 2, "member {ordinal} is not a replica: {text:?}");
        lines[0].split('\t').zip(lines[1].split('\t')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for forwarder in &mut self.forwarders {
            let _ = forwarder.kill();
            let _ = forwarder.wait();
        }
        let containers = std::mem::take(&mut self.pods).into_values().flatten().collect();
        container::stop(containers, Duration::ZERO);
        for namespace in self.namespaces.iter().rev() {
            remove_namespace(namespace);
        }
    }
}

/// Kills every process left in a network namespace, then deletes it.
fn remove_namespace(name: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// Removes what runs killed before their drops ran left: their network namespaces with the
/// processes in them, then their directories.
fn remove_leftovers_of_killed_runs() {
    let namespaces =
        Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let namespaces = String::from_utf8_lossy(&namespaces);
    for name in namespaces.lines().filter_map(|line| line.split_whitespace().next()) {
        if of_a_dead_run(name) {
            remove_namespace(name);
        }
    }
    for entry in fs::read_dir(env!("CARGO_TARGET_TMPDIR")).into_iter().flatten().flatten() {
        if of_a_dead_run(&entry.file_name().to_string_lossy()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Is `name` (`<NAMESPACE_PREFIX><pid>-…`) a namespace or directory of a process that is gone?
fn of_a_dead_run(name: &str) -> bool {
    let pid = name.strip_prefix(NAMESPACE_PREFIX).and_then(|rest| rest.split('-').next());
    pid.is_some_and(|pid| pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists())
}

/// Runs a setup command; panics with its exit status and error output.
fn run(args: &[&str]) {
    let output =
        Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
}
