//! Fixtures shared by the integration tests: StatefulSets as JSON, the way users and the API
//! server write them, and helpers to run the engine and the CLI.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

mod hostile;
pub mod mock_api;
mod render;
#[allow(unused_imports)] // each test crate uses a different subset
pub use hostile::{hostile_policy, hostile_policy_0_2};
#[allow(unused_imports)] // each test crate uses a different subset
pub use render::{assert_valid_strictly, is_custom_resource, kustomize};

/// A minimal opted-in StatefulSet, as in the README's "What you write".
pub fn annotated(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "annotations": {"mysql-webhook.io/replicated": "true"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "mysql", "image": image}]}
            }
        }
    })
}

/// Sets an annotation on a StatefulSet fixture.
pub fn with_annotation(mut sts: Value, key: &str, value: &str) -> Value {
    sts["metadata"]["annotations"][key] = json!(value);
    sts
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs the release-or-dev binary under test with `args`, feeding `stdin`.
pub fn run_cli(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary under test starts");
    child.stdin.take().expect("stdin is piped").write_all(stdin.as_bytes()).expect("stdin accepts input");
    child.wait_with_output().expect("the binary under test finishes")
}

/// `mutate -f -` on `input`; panics with stderr when it fails.
pub fn mutate_cli(input: &str, extra: &[&str]) -> String {
    let mut args = vec!["mutate", "-f", "-"];
    args.extend_from_slice(extra);
    let output = run_cli(&args, input);
    assert!(output.status.success(), "mutate failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("mutate prints UTF-8")
}

/// Every document of a multi-document YAML text.
pub fn documents(yaml: &str) -> Vec<Value> {
    mysql_webhook_core::manifests::read_documents(yaml).expect("output is valid YAML")
}

/// Every script the expansion generates (container commands and exec probes), labelled with the
/// container, the field and the shell (`bash` or `sh`), of a StatefulSet or a CronJob.
pub fn scripts(object: &Value) -> Vec<(String, String)> {
    let pod = match object["kind"].as_str() {
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &object["spec"]["template"]["spec"],
    };
    let containers = pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["containers"].as_array().into_iter().flatten());
    let mut out = Vec::new();
    for container in containers {
        let name = container["name"].as_str().unwrap_or_default();
        let commands = [
            "command",
            "livenessProbe/exec/command",
            "readinessProbe/exec/command",
            "startupProbe/exec/command",
        ];
        for path in commands {
            let pointer = format!("/{path}");
            if let Some(command) = container.pointer(&pointer).and_then(Value::as_array)
                && command.len() == 3
                && matches!(command[0].as_str(), Some("bash" | "sh"))
                && command[1] == "-c"
            {
                let shell = command[0].as_str().unwrap_or_default();
                out.push((
                    format!("{name} {path} ({shell})"),
                    command[2].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    out
}

/// The Kubernetes version the schemas are checked against: the oldest one k8s-openapi's `v1_33`
/// feature targets, so the output works on every cluster from there on.
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// `kubernetes-validate --strict` (PyPI) on `files`; a missing tool fails with the install command.
pub fn validate_strictly(files: &[PathBuf]) -> Output {
    Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("kubernetes-validate is not installed; run pip install kubernetes-validate (or .ci/run)")
}

/// Where the tests keep precompiled policies: shared by every test process, so each component
/// is compiled once per build rather than once per test.
pub fn policy_cache() -> PathBuf {
    repo_path("target/test-policy-cache")
}

/// The policy host the tests share a compile cache with.
pub fn host() -> mysql_webhook::policy::Host {
    mysql_webhook::policy::Host::new(Some(policy_cache())).expect("the engine starts")
}

/// The built-in policies, loaded once per test process and shared by its tests.
pub fn shared_builtin_policies() -> std::sync::Arc<mysql_webhook::policy::Policies> {
    static POLICIES: std::sync::OnceLock<std::sync::Arc<mysql_webhook::policy::Policies>> =
        std::sync::OnceLock::new();
    POLICIES.get_or_init(|| std::sync::Arc::new(builtin_policies())).clone()
}

/// The built-in policies with their default settings.
pub fn builtin_policies() -> mysql_webhook::policy::Policies {
    mysql_webhook::policy::Policies::load(host(), mysql_webhook::policy::Source::Builtins)
        .expect("the built-in policies load")
}

/// Writes `yaml` as `policies.yaml` in `dir` and returns its path.
pub fn write_policies(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("policies.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// What the policies see for a CREATE of `sts`, expanded.
pub fn policy_request(sts: &Value) -> mysql_webhook::policy::PolicyInput {
    let mut sts = sts.clone();
    sts["metadata"]["namespace"] = json!("shop");
    let object: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(sts).unwrap();
    let mutation =
        mysql_webhook_core::mutate_statefulset(&object, None, Some("shop")).unwrap().expect("opted in");
    mysql_webhook_core::policy_request::PolicyRequest::create("test", &mutation.expanded, None).input()
}

/// `check` of `deploy/examples/mysql-8.4.yaml` with the policy set in `policies` passes (exit 0).
pub fn assert_example_passes_check(policies: &Path) {
    let example = std::fs::read_to_string(repo_path("deploy/examples/mysql-8.4.yaml")).unwrap();
    let cache = policy_cache();
    let args = [
        "check",
        "-f",
        "-",
        "--policies",
        policies.to_str().unwrap(),
        "--policy-cache",
        cache.to_str().unwrap(),
    ];
    let checked = run_cli(&args, &example);
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stderr));
}

/// A TLS client configuration trusting only the CA `ca_pem`, with TLS 1.2 and 1.3.
pub fn tls_trusting(ca_pem: &[u8]) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem).unwrap()).unwrap();
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}
