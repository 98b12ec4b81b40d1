//! A pod runner for the end-to-end test: runs what `mysql-webhook mutate --with-secret` emits as
//! local processes, the way the kubelet would, with real MariaDB servers.
//!
//! Each pod gets its own network namespace (a veth on a bridge in a private "switch" namespace:
//! nothing touches the host's network), and each container its own UTS, mount and PID
//! namespaces (`unshare`), with the pod's hostname, the pod's volumes bind-mounted at the
//! template's paths, a hosts file that resolves `<sts>-N.<service>`, and its command as PID 1.
//! Init containers run in order with retries; containers are restarted when they exit; exec and
//! TCP readiness probes run inside the container (`nsenter`); pods start in order, each Ready
//! before the next (OrderedReady). Images map to host programs through [`IMAGES`]; an image not
//! in the table fails the test. Everything is torn down on drop, also when a test fails.
#![allow(dead_code)] // each scenario uses a different part

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Probe, Secret};
use serde_json::Value;

/// How images are run here: the image's entrypoint and command, as host programs.
const IMAGES: [(&str, &[&str], &[&str]); 1] =
    [("mariadb:", &["/run/e2e-image/docker-entrypoint.sh"], &["mariadbd"])];

/// Grace period of a pod deletion before SIGKILL (terminationGracePeriodSeconds, shortened).
pub const GRACE: Duration = Duration::from_secs(10);

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Fails with what to do when the runner can't work here; never passes silently.
pub fn require_environment() {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the end-to-end test needs root (network namespaces, mounts); run it as root, as CI does"
    );
    for tool in [
        "ip",
        "unshare",
        "nsenter",
        "mariadbd",
        "mariadb",
        "mariadb-admin",
        "mariadb-backup",
        "mbstream",
        "socat",
        "mariadb-install-db",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing; install the test's packages: apt-get install -y mariadb-server mariadb-backup mariadb-client socat iproute2 util-linux (or run .ci/run)"
        );
    }
}

/// What `mutate --with-secret` emitted for one StatefulSet.
pub struct Manifests {
    pub statefulset: StatefulSet,
    pub config_map: ConfigMap,
    pub secret: Secret,
}

impl Manifests {
    pub fn expand(input: &Value) -> Manifests {
        let output = Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
            .args(["mutate", "-f", "-", "--with-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(input.to_string().as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(output.status.success(), "mutate failed: {}", String::from_utf8_lossy(&output.stderr));
        let documents =
            mysql_webhook::manifests::read_documents(&String::from_utf8(output.stdout).unwrap()).unwrap();
        let find = |kind: &str| {
            documents
                .iter()
                .find(|d| d["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} emitted"))
                .clone()
        };
        Manifests {
            statefulset: serde_json::from_value(find("StatefulSet")).unwrap(),
            config_map: serde_json::from_value(find("ConfigMap")).unwrap(),
            secret: serde_json::from_value(find("Secret")).unwrap(),
        }
    }

    pub fn secret_value(&self, key: &str) -> String {
        let bytes = &self.secret.data.as_ref().unwrap()[key].0;
        String::from_utf8(bytes.clone()).unwrap()
    }

    fn name(&self) -> &str {
        self.statefulset.metadata.name.as_deref().unwrap()
    }

    fn service(&self) -> &str {
        self.statefulset.spec.as_ref().unwrap().service_name.as_deref().unwrap()
    }
}

/// A running StatefulSet: its namespaces, pods and files. Dropping it tears everything down.
pub struct Cluster {
    pub manifests: Manifests,
    prefix: String,
    dir: tempfile::TempDir,
    pods: BTreeMap<u32, Pod>,
    namespaces: Vec<String>,
}

struct Pod {
    containers: Vec<Supervisor>,
}

/// A container kept running (restartPolicy Always) by a thread until stopped.
struct Supervisor {
    name: String,
    pid1: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
    env: Vec<(String, String)>,
    readiness: Option<Probe>,
}

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    pub fn new(manifests: Manifests) -> Cluster {
        let prefix =
            format!("mwe{}-{}", std::process::id() % 100_000, NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new().prefix("mysql-webhook-e2e-").tempdir().unwrap();
        let switch = format!("{prefix}-sw");
        run(&["ip", "netns", "add", &switch]);
        let cluster =
            Cluster { manifests, prefix, dir, pods: BTreeMap::new(), namespaces: vec![switch.clone()] };
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        fs::write(cluster.dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        cluster.write_hosts(0);
        cluster
    }

    fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.manifests.name())
    }

    fn namespace(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.prefix)
    }

    fn address(ordinal: u32) -> String {
        format!("10.244.0.{}", 10 + ordinal)
    }

    fn pod_dir(&self, ordinal: u32) -> PathBuf {
        self.dir.path().join(self.pod_name(ordinal))
    }

    /// One hosts file for every pod, rewritten in place so running pods see later ones.
    fn write_hosts(&self, members: u32) {
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for ordinal in 0..members.max(8) {
            let pod = self.pod_name(ordinal);
            let service = self.manifests.service();
            hosts.push_str(&format!(
                "{} {pod}.{service} {pod}.{service}.default.svc.cluster.local {pod}\n",
                Cluster::address(ordinal)
            ));
        }
        fs::write(self.dir.path().join("hosts"), hosts).unwrap();
    }

    fn ensure_network(&mut self, ordinal: u32) {
        let namespace = self.namespace(ordinal);
        if self.namespaces.contains(&namespace) {
            return;
        }
        let switch = &self.namespaces[0].clone();
        run(&["ip", "netns", "add", &namespace]);
        self.namespaces.push(namespace.clone());
        let port = format!("vp{ordinal}");
        run(&[
            "ip", "-n", switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &namespace,
        ]);
        run(&["ip", "-n", switch, "link", "set", &port, "master", "br0", "up"]);
        run(&[
            "ip",
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{}/24", Cluster::address(ordinal)),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &namespace, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &namespace, "link", "set", "lo", "up"]);
    }

    /// Starts members `0..replicas` that aren't running, in order, each Ready before the next.
    pub fn scale(&mut self, replicas: u32) {
        for ordinal in 0..replicas {
            if !self.pods.contains_key(&ordinal) {
                self.start_pod(ordinal);
            }
        }
    }

    /// Creates pod `ordinal`: fresh emptyDirs, the claim kept from an earlier incarnation.
    pub fn start_pod(&mut self, ordinal: u32) {
        self.ensure_network(ordinal);
        let pod_dir = self.pod_dir(ordinal);
        let _ = fs::remove_dir_all(pod_dir.join("volumes"));
        fs::create_dir_all(pod_dir.join("logs")).unwrap();
        let sts = self.manifests.statefulset.clone();
        let template = sts.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let volumes = self.volume_sources(ordinal);

        for container in template.init_containers.iter().flatten() {
            self.run_init_container(ordinal, container, &volumes);
        }
        let mut supervisors = Vec::new();
        for container in &template.containers {
            supervisors.push(self.supervise(ordinal, container, &volumes));
        }
        self.pods.insert(ordinal, Pod { containers: supervisors });
        self.wait_ready(ordinal);
    }

    /// Deletes pod `ordinal` as the kubelet would: SIGTERM to every container, the grace
    /// period, then SIGKILL. Returns how long it took.
    pub fn delete_pod(&mut self, ordinal: u32) -> Duration {
        let started = Instant::now();
        let pod = self.pods.remove(&ordinal).expect("the pod runs");
        stop_containers(pod.containers, GRACE);
        started.elapsed()
    }

    fn volume_sources(&self, ordinal: u32) -> BTreeMap<String, (PathBuf, bool)> {
        let pod_dir = self.pod_dir(ordinal);
        let spec = self.manifests.statefulset.spec.as_ref().unwrap();
        let mut sources = BTreeMap::new();
        for claim in spec.volume_claim_templates.iter().flatten() {
            let name = claim.metadata.name.clone().unwrap();
            let path = pod_dir.join("pvc").join(&name);
            fs::create_dir_all(&path).unwrap();
            sources.insert(name, (path, false));
        }
        for volume in spec.template.spec.as_ref().unwrap().volumes.iter().flatten() {
            let path = pod_dir.join("volumes").join(&volume.name);
            fs::create_dir_all(&path).unwrap();
            if let Some(source) = &volume.config_map {
                assert_eq!(
                    source.name,
                    self.manifests.config_map.metadata.name.clone().unwrap(),
                    "unknown ConfigMap"
                );
                for (key, value) in self.manifests.config_map.data.iter().flatten() {
                    fs::write(path.join(key), value).unwrap();
                }
                sources.insert(volume.name.clone(), (path, true));
            } else if let Some(source) = &volume.secret {
                assert_eq!(source.secret_name, self.manifests.secret.metadata.name, "unknown Secret");
                for (key, value) in self.manifests.secret.data.iter().flatten() {
                    fs::write(path.join(key), &value.0).unwrap();
                }
                sources.insert(volume.name.clone(), (path, true));
            } else if volume.empty_dir.is_some() {
                sources.insert(volume.name.clone(), (path, false));
            } else {
                panic!("volume {} has a source the runner doesn't know", volume.name);
            }
        }
        sources
    }

    fn env(&self, ordinal: u32, container: &Container) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("HOSTNAME".into(), self.pod_name(ordinal)),
            ("HOME".into(), "/root".into()),
        ];
        for var in container.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => {
                    let key = from.secret_key_ref.as_ref().expect("only secretKeyRef is supported");
                    assert_eq!(
                        Some(key.name.as_str()),
                        self.manifests.secret.metadata.name.as_deref(),
                        "unknown Secret"
                    );
                    self.manifests.secret_value(&key.key)
                }
                (None, None) => String::new(),
            };
            env.push((var.name.clone(), value));
        }
        env
    }

    /// The command line of a container: the image's entrypoint and command unless the
    /// container replaces them (Kubernetes rules: `command` drops both, `args` replaces CMD).
    fn argv(container: &Container) -> Vec<String> {
        let image = container.image.as_deref().unwrap();
        let (_, entrypoint, cmd) = IMAGES
            .iter()
            .find(|(prefix, ..)| image.starts_with(prefix))
            .unwrap_or_else(|| panic!("image {image} is not in the runner's image table"));
        let resolve = |part: &str| {
            if part.starts_with("tests/") { repo(part).display().to_string() } else { part.to_owned() }
        };
        match (&container.command, &container.args) {
            (Some(command), args) => command.iter().chain(args.iter().flatten()).cloned().collect(),
            (None, Some(args)) => entrypoint.iter().map(|p| resolve(p)).chain(args.iter().cloned()).collect(),
            (None, None) => entrypoint.iter().chain(cmd.iter()).map(|p| resolve(p)).collect(),
        }
    }

    /// The command that makes a container: the pod's network namespace, then new UTS, mount
    /// and PID namespaces with the hostname, mounts and the container's command as PID 1.
    fn container_command(
        &self,
        ordinal: u32,
        container: &Container,
        volumes: &BTreeMap<String, (PathBuf, bool)>,
    ) -> Command {
        let mut setup = format!(
            "set -e\nhostname {pod}\nmount --make-rprivate /\nmount -t tmpfs tmpfs /run\nmount -t tmpfs tmpfs /mnt\n\
             mkdir /run/e2e-image\nmount --bind {image} /run/e2e-image\n\
             mount --bind {hosts} /etc/hosts\nmount --bind {resolv} /etc/resolv.conf\nmount --bind {mycnf} /etc/mysql/my.cnf\n",
            image = repo("tests/e2e/image").display(),
            pod = self.pod_name(ordinal),
            hosts = self.dir.path().join("hosts").display(),
            resolv = self.dir.path().join("resolv.conf").display(),
            mycnf = repo("tests/e2e/image/my.cnf").display(),
        );
        for mount in container.volume_mounts.iter().flatten() {
            let (source, read_only) =
                volumes.get(&mount.name).unwrap_or_else(|| panic!("no volume {}", mount.name));
            let source = match &mount.sub_path {
                Some(sub) => {
                    let path = source.join(sub);
                    fs::create_dir_all(&path).unwrap();
                    path
                }
                None => source.clone(),
            };
            setup.push_str(&format!(
                "mkdir -p '{0}'\nmount --bind '{1}' '{0}'\n",
                mount.mount_path,
                source.display()
            ));
            if *read_only || mount.read_only == Some(true) {
                setup.push_str(&format!("mount -o remount,bind,ro '{}'\n", mount.mount_path));
            }
        }
        // Each container has its own /tmp, as in Kubernetes (servers name temporary files by PID,
        // and PIDs repeat across PID namespaces). Last, because the volumes' sources, and the
        // image stand-in (bound at /run/e2e-image), may live under /tmp.
        setup.push_str("mount -t tmpfs tmpfs /tmp\nexec \"$@\"\n");
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.namespace(ordinal),
                "unshare",
                "--uts",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
            ])
            .args(["bash", "-c", &setup, "container"])
            .args(Cluster::argv(container))
            .env_clear()
            .envs(self.env(ordinal, container))
            .stdin(Stdio::null());
        command
    }

    fn log_file(&self, ordinal: u32, container: &str) -> PathBuf {
        self.pod_dir(ordinal).join("logs").join(format!("{container}.log"))
    }

    pub fn log(&self, ordinal: u32, container: &str) -> String {
        fs::read_to_string(self.log_file(ordinal, container)).unwrap_or_default()
    }

    fn log_tails(&self, ordinal: u32) -> String {
        let mut out = String::new();
        for entry in fs::read_dir(self.pod_dir(ordinal).join("logs")).into_iter().flatten().flatten() {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", entry.file_name().to_string_lossy()));
            // The start says how it began (initialisation), the end how it is doing now.
            let head = lines.len().min(20);
            let tail = lines.len().saturating_sub(15).max(head);
            if tail > head {
                out.push_str(&format!("{}\n...\n", lines[..head].join("\n")));
            } else {
                out.push_str(&format!("{}\n", lines[..head].join("\n")));
            }
            out.extend(lines[tail..].iter().map(|l| format!("{l}\n")));
        }
        out
    }

    /// Runs an init container to completion; retried like the kubelet does, with a short back-off.
    fn run_init_container(
        &self,
        ordinal: u32,
        container: &Container,
        volumes: &BTreeMap<String, (PathBuf, bool)>,
    ) {
        for attempt in 1..=3 {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_file(ordinal, &container.name))
                .unwrap();
            let status = self
                .container_command(ordinal, container, volumes)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .status()
                .unwrap();
            if status.success() {
                return;
            }
            if attempt == 3 {
                panic!(
                    "init container {} of {} failed 3 times ({status})\n{}",
                    container.name,
                    self.pod_name(ordinal),
                    self.log_tails(ordinal)
                );
            }
            std::thread::sleep(Duration::from_secs(attempt));
        }
    }

    fn supervise(
        &self,
        ordinal: u32,
        container: &Container,
        volumes: &BTreeMap<String, (PathBuf, bool)>,
    ) -> Supervisor {
        let (stop, pid1, restarts) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let log_path = self.log_file(ordinal, &container.name);
        let command = Arc::new(Mutex::new(self.container_command(ordinal, container, volumes)));
        let thread = {
            let (stop, pid1, restarts) = (stop.clone(), pid1.clone(), restarts.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let log = fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
                    let mut child =
                        command.lock().unwrap().stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
                    // unshare --fork: the container's PID 1 is unshare's only child.
                    for _ in 0..100 {
                        if let Some(pid) = first_child(child.id()) {
                            pid1.store(pid, Ordering::Release);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = child.wait();
                    pid1.store(0, Ordering::Release);
                    if !stop.load(Ordering::Acquire) {
                        restarts.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
        };
        Supervisor {
            name: container.name.clone(),
            pid1,
            stop,
            restarts,
            thread: Some(thread),
            env: self.env(ordinal, container),
            readiness: container.readiness_probe.clone(),
        }
    }

    /// Waits until every container of the pod passes its readiness probe.
    fn wait_ready(&self, ordinal: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pod = &self.pods[&ordinal];
        for supervisor in &pod.containers {
            loop {
                let pid = supervisor.pid1.load(Ordering::Acquire);
                let ready = pid != 0
                    && supervisor
                        .readiness
                        .as_ref()
                        .is_none_or(|probe| probe_passes(pid, probe, &supervisor.env));
                if ready {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {} not ready after 60 s\n{}",
                    supervisor.name,
                    self.pod_name(ordinal),
                    self.log_tails(ordinal)
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    pub fn restarts(&self, ordinal: u32, container: &str) -> u32 {
        let pod = &self.pods[&ordinal];
        pod.containers.iter().find(|c| c.name == container).unwrap().restarts.load(Ordering::Relaxed)
    }

    /// Runs SQL on member `ordinal` over TCP as `user`, from inside its network namespace;
    /// tab-separated rows, or the client's error.
    pub fn sql_as(&self, ordinal: u32, user: &str, password: &str, sql: &str) -> Result<String, String> {
        self.client(ordinal, user, password, &["--skip-column-names", "-e", sql])
    }

    fn client(&self, ordinal: u32, user: &str, password: &str, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace(ordinal),
                "mariadb",
                "-h",
                "127.0.0.1",
                "-u",
                user,
                "--batch",
            ])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("MYSQL_PWD", password)
            .output()
            .unwrap();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim_end().to_owned())
        }
    }

    /// SQL as root with the Secret's password.
    pub fn sql(&self, ordinal: u32, sql: &str) -> String {
        let password = self.manifests.secret_value("root-password");
        self.sql_as(ordinal, "root", &password, sql)
            .unwrap_or_else(|e| panic!("SQL on member {ordinal} failed: {e}\n{sql}"))
    }

    /// Polls `sql` on member `ordinal` until it returns `expected`.
    pub fn wait_for(&self, ordinal: u32, sql: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.sql_as(ordinal, "root", &self.manifests.secret_value("root-password"), sql) {
                Ok(value) if value == expected => return,
                Ok(value) => last = value,
                Err(error) => last = error,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("member {ordinal}: {sql} returned {last:?}, not {expected:?}\n{}", self.log_tails(ordinal));
    }

    /// `SHOW SLAVE STATUS` of member `ordinal` as field → value.
    pub fn replica_status(&self, ordinal: u32) -> BTreeMap<String, String> {
        // Batch output with column names: a header line and a value line, tab-separated.
        let password = self.manifests.secret_value("root-password");
        let text = self.client(ordinal, "root", &password, &["-e", "SHOW SLAVE STATUS"]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 2, "member {ordinal} is not a replica: {text:?}");
        lines[0].split('\t').zip(lines[1].split('\t')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut self.pods);
        let all: Vec<Supervisor> = pods.into_values().flat_map(|p| p.containers).collect();
        stop_containers(all, Duration::from_secs(0));
        for namespace in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", namespace]).status();
        }
    }
}

/// SIGTERM to each container's PID 1, up to `grace` for them to exit, then SIGKILL (which, for a
/// PID 1, ends its whole PID namespace).
fn stop_containers(mut containers: Vec<Supervisor>, grace: Duration) {
    for container in &containers {
        container.stop.store(true, Ordering::Release);
        let pid = container.pid1.load(Ordering::Acquire);
        if pid != 0 && !grace.is_zero() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && containers.iter().any(|c| c.pid1.load(Ordering::Acquire) != 0) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for container in &containers {
        let pid = container.pid1.load(Ordering::Acquire);
        if pid != 0 {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
    for container in &mut containers {
        if let Some(thread) = container.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The first child of `pid`, from /proc.
fn first_child(pid: u32) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Runs a readiness probe inside the container whose PID 1 is `pid`.
fn probe_passes(pid: u32, probe: &Probe, env: &[(String, String)]) -> bool {
    let target = pid.to_string();
    let mut command = Command::new("nsenter");
    command.args(["-t", &target, "-n", "-u", "-m", "-p", "--"]);
    if let Some(exec) = &probe.exec {
        command.args(exec.command.iter().flatten());
    } else if let Some(tcp) = &probe.tcp_socket {
        let port = match &tcp.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port) => port.to_string(),
            other => panic!("named probe ports are not supported: {other:?}"),
        };
        command.args(["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")]);
    } else {
        panic!("probe kind not supported: {probe:?}");
    }
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64 + 2);
    let Ok(mut child) =
        command.env_clear().envs(env.iter().cloned()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
