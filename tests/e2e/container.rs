//! One container as host processes: the command line that builds its namespaces and mounts,
//! running it to completion (init containers), keeping it running (restartPolicy Always),
//! readiness probes inside it, and stopping it.
//!
//! The process tree of a container is `setpriv --pdeathsig KILL ip netns exec <pod> unshare
//! --uts --mount --pid --kill-child …`: `ip netns exec` and `setpriv` exec, so the runner's child
//! is `unshare`, whose only child is the container's PID 1 in a fresh PID namespace. Killing
//! the container's PID 1 ends every process of the container. If the test process itself dies (a
//! timeout, ^C), `--pdeathsig` kills `unshare`, whose `--kill-child` kills a PID 1 that hasn't
//! changed its user; the next run kills whatever is left in the namespaces of dead runs.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A path of the host bound into the container.
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything needed to start one container of one pod.
pub struct ContainerSpec {
    pub name: String,
    /// The pod's network namespace.
    pub netns: String,
    pub hostname: String,
    pub binds: Vec<Bind>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// stdout and stderr of every run, appended.
    pub log: PathBuf,
    pub readiness: Option<Probe>,
}

impl ContainerSpec {
    /// The container as a command: new UTS, mount and PID namespaces inside the pod's network
    /// namespace; then, as PID 1, the hostname, private tmpfs on /run and /mnt, the binds, a
    /// private /tmp (each container has its own, as in Kubernetes: servers name temporary files
    /// by PID, and PIDs repeat across PID namespaces), and the container's command.
    fn command(&self) -> Command {
        let mut setup = format!(
            "set -e\nhostname {}\nmount --make-rprivate /\nmount -t tmpfs tmpfs /run\nmount -t tmpfs tmpfs /mnt\n",
            self.hostname
        );
        for bind in &self.binds {
            let (source, target) = (bind.source.display(), &bind.target);
            // Mount points are made only on the private tmpfs: the host's tree is never changed.
            setup.push_str(&format!(
                "case '{target}' in\n  /run/*|/mnt/*) mkdir -p '{target}' ;;\n  \
                 /tmp|/tmp/*) echo \"the runner can't mount at {target}: a private /tmp hides it\" >&2; exit 1 ;;\n  \
                 *) [[ -e '{target}' ]] || {{ echo \"mount point {target} does not exist on the host\" >&2; exit 1; }} ;;\nesac\n\
                 mount --bind '{source}' '{target}'\n"
            ));
            if bind.read_only {
                setup.push_str(&format!("mount -o remount,bind,ro '{target}'\n"));
            }
        }
        // /tmp last: the sources (a checkout, a run's directory) may live under the host's /tmp.
        setup.push_str("mount -t tmpfs tmpfs /tmp\nexec \"$@\"\n");
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "ip", "netns", "exec", &self.netns])
            .args(["unshare", "--uts", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"])
            .args(["bash", "-c", &setup, &self.name])
            .args(&self.argv)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null());
        command
    }

    fn spawn(&self) -> Result<Child, String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let stderr = log.try_clone().map_err(|e| format!("{}: {e}", self.log.display()))?;
        self.command()
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting container {}: {e}", self.name))
    }

    /// Runs the container until it exits, killed after `timeout` or as soon as `stop` says so.
    pub fn run_until(&self, timeout: Duration, stop: &dyn Fn() -> bool) -> Result<ExitStatus, String> {
        let mut child = self.spawn()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("waiting for {}: {e}", self.name))? {
                return Ok(status);
            }
            if stop() {
                if let Some(pid) = first_child(child.id()) {
                    kill(pid, "KILL");
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("container {} killed while it ran", self.name));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("container {} still running after {timeout:?}: killed", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the container and restarts it whenever it exits, until stopped.
    pub fn supervise(self) -> Supervisor {
        let spec = Arc::new(self);
        let state = Arc::new(State::default());
        let thread = {
            let (spec, state) = (spec.clone(), state.clone());
            std::thread::spawn(move || keep_running(&spec, &state))
        };
        Supervisor { spec, state, thread: Some(thread) }
    }
}

/// What the runner and a container's supervising thread share.
#[derive(Default)]
struct State {
    /// PID (in the host's PID namespace) of the container's PID 1; 0 while it doesn't run.
    pid1: AtomicU32,
    restarts: AtomicU32,
    /// Don't restart it any more.
    stop: AtomicBool,
    /// Kill it now (the grace period is over).
    kill: AtomicBool,
    /// The last start failed before a process existed.
    failure: std::sync::Mutex<Option<String>>,
}

/// A running container and the thread that restarts it.
pub struct Supervisor {
    spec: Arc<ContainerSpec>,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn restarts(&self) -> u32 {
        self.state.restarts.load(Ordering::Relaxed)
    }

    /// SIGKILLs the container's PID 1, as a crash or the OOM killer would; it is restarted.
    pub fn crash(&self) {
        kill(self.state.pid1.load(Ordering::Acquire), "KILL");
    }

    /// Runs `command` inside the running container with its environment, as `kubectl exec` (and
    /// the kubelet's exec probes) do: its exit status and output (stdout, then stderr).
    pub fn exec(&self, command: &[String]) -> (bool, String) {
        let pid = self.state.pid1.load(Ordering::Acquire);
        assert_ne!(pid, 0, "container {} doesn't run", self.spec.name);
        let output =
            enter(pid, &self.spec.env).args(command).stdin(Stdio::null()).output().expect("running nsenter");
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// Runs, and passes its readiness probe if it has one. An error when it can't be started.
    pub fn is_ready(&self) -> Result<bool, String> {
        if let Some(failure) = self.state.failure.lock().unwrap().clone() {
            return Err(failure);
        }
        let pid = self.state.pid1.load(Ordering::Acquire);
        Ok(pid != 0
            && self.spec.readiness.as_ref().is_none_or(|probe| probe_passes(pid, probe, &self.spec.env)))
    }
}

/// The supervising thread: start, wait (watching for a kill request), count the restart, wait
/// 1 s like the kubelet's first back-off, start again.
fn keep_running(spec: &ContainerSpec, state: &State) {
    while !state.stop.load(Ordering::Acquire) {
        let mut child = match spec.spawn() {
            Ok(child) => child,
            Err(failure) => {
                *state.failure.lock().unwrap() = Some(failure);
                return;
            }
        };
        loop {
            if state.pid1.load(Ordering::Acquire) == 0
                && let Some(pid) = first_child(child.id())
            {
                state.pid1.store(pid, Ordering::Release);
            }
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            if state.kill.load(Ordering::Acquire) {
                // SIGKILL to a PID 1 ends its whole PID namespace. Killing unshare alone is not
                // enough: its --kill-child is a parent-death signal, which the kernel clears when
                // a process changes its user (mariadbd --user=mysql).
                kill(state.pid1.load(Ordering::Acquire), "KILL");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        state.pid1.store(0, Ordering::Release);
        if state.stop.load(Ordering::Acquire) {
            return;
        }
        state.restarts.fetch_add(1, Ordering::Relaxed);
        let back_off = Instant::now() + Duration::from_secs(1);
        while Instant::now() < back_off && !state.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Stops containers as the kubelet deletes a pod: SIGTERM to each PID 1, up to `grace` for them
/// to exit, then SIGKILL.
pub fn stop(mut containers: Vec<Supervisor>, grace: Duration) {
    for container in &containers {
        container.state.stop.store(true, Ordering::Release);
        if !grace.is_zero() {
            kill(container.state.pid1.load(Ordering::Acquire), "TERM");
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && containers.iter().any(|c| c.state.pid1.load(Ordering::Acquire) != 0) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for container in &mut containers {
        container.state.kill.store(true, Ordering::Release);
        if let Some(thread) = container.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `signal` to `pid`, unless it is 0 (not running).
fn kill(pid: u32, signal: &str) {
    if pid != 0 {
        let _ = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    }
}

/// The first child of `pid`, from /proc: the container's PID 1 when `pid` is its `unshare`.
fn first_child(pid: u32) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Runs a readiness probe inside the container whose PID 1 is `pid`, with the container's
/// environment, as the kubelet does: an exec probe's command, or a TCP connection to the port.
fn probe_passes(pid: u32, probe: &Probe, env: &[(String, String)]) -> bool {
    let mut command = enter(pid, env);
    if let Some(exec) = &probe.exec {
        command.args(exec.command.iter().flatten());
    } else if let Some(tcp) = &probe.tcp_socket {
        let IntOrString::Int(port) = &tcp.port else {
            panic!("the runner resolves no named probe ports: {:?}", tcp.port);
        };
        command.args(["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")]);
    } else {
        panic!("the runner runs exec and TCP probes only: {probe:?}");
    }
    // The kubelet's timeout, plus the cost of entering the namespaces.
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64 + 2);
    let Ok(mut child) = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
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

/// A command that runs inside the namespaces of the container whose PID 1 is `pid`, with `env`
/// only; its program and arguments follow.
fn enter(pid: u32, env: &[(String, String)]) -> Command {
    let mut command = Command::new("nsenter");
    command.args(["-t", &pid.to_string(), "-n", "-u", "-m", "-p", "--"]);
    command.env_clear().envs(env.iter().cloned());
    command
}
