//! Everything the engine emits is checked by the real tools: every object by
//! `kubernetes-validate --strict` (PyPI), every generated script by `bash -n` and `shellcheck`
//! (Debian). `.ci/run` installs both; a missing tool fails the test with the install command.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn tool(name: &str, install: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is not installed; run `{install}` (or .ci/run, which does)");
    Command::new(name)
}

/// Inputs that exercise every branch of the expansion: each flavor, custom names and namespace,
/// every annotation, user containers and a non-zero first ordinal.
fn inputs() -> Vec<String> {
    let mut inputs: Vec<String> = ["mysql-8.4", "mysql-8.0", "mysql-5.7", "mariadb"]
        .iter()
        .map(|flavor| {
            std::fs::read_to_string(common::repo_path(&format!("deploy/examples/{flavor}.yaml"))).unwrap()
        })
        .collect();
    let mut everything =
        common::annotated("orders-db", "registry.example.com:5000/mirror/mysql:8.4@sha256:0123");
    everything["metadata"]["namespace"] = json!("shop");
    everything["spec"]["serviceName"] = json!("orders-hl");
    everything["spec"]["ordinals"] = json!({"start": 1});
    // Strings YAML 1.1 readers (kubectl, PyYAML) would take for booleans or numbers.
    everything["metadata"]["labels"] = json!({"enabled": "on", "tier": "yes", "window": "12:30"});
    for (key, value) in [
        ("storage", "50Gi"),
        ("storage-class", "fast-ssd"),
        ("root-password-secret", "orders-secrets"),
        ("read-service", "orders-ro"),
        ("metrics", "true"),
        ("flavor", "mysql-8.4"),
    ] {
        everything = common::with_annotation(everything, &format!("mysql-webhook.io/{key}"), value);
    }
    let pod = &mut everything["spec"]["template"]["spec"];
    pod["containers"][0]["resources"] = json!({"limits": {"cpu": "2", "memory": "4Gi"}});
    pod["containers"].as_array_mut().unwrap().push(json!({"name": "audit", "image": "busybox:1.36"}));
    pod["initContainers"] = json!([{"name": "setup", "image": "busybox:1.36", "command": ["true"]}]);
    inputs.push(everything.to_string());
    inputs.push(common::annotated("maria", "mariadb:10.11").to_string());
    // Backups to S3, and a restore from a claim.
    let mut backed_up = common::annotated("orders", "mariadb:11.4");
    for (key, value) in [
        ("backup-schedule", "0 3 * * *"),
        ("backup-target", "s3://company-backups/prod/orders"),
        ("backup-secret", "orders-s3"),
        ("backup-keep", "3"),
    ] {
        backed_up = common::with_annotation(backed_up, &format!("mysql-webhook.io/{key}"), value);
    }
    inputs.push(backed_up.to_string());
    let mut restored = common::annotated("orders", "mysql:8.4");
    for (key, value) in [
        ("backup-schedule", "@daily"),
        ("backup-target", "pvc://backups/orders"),
        ("restore-from", "pvc://backups/orders/20261202T030000Z"),
    ] {
        restored = common::with_annotation(restored, &format!("mysql-webhook.io/{key}"), value);
    }
    inputs.push(restored.to_string());
    // Point in time, each flavor: archiving to S3, and a restore to a time from a claim while
    // archiving to one (two claims: the restore's read-only, the archive's writable).
    for (flavor, image) in
        [("mysql-8.4", "mysql:8.4"), ("mysql-8.0", "mysql:8.0"), ("mariadb", "mariadb:11.4")]
    {
        let mut archiving = common::annotated("orders", image);
        for (key, value) in [
            ("flavor", flavor),
            ("backup-target", "s3://company-backups/prod/orders"),
            ("backup-secret", "orders-s3"),
            ("binlog-archive", "true"),
            ("binlog-flush-interval", "2m"),
        ] {
            archiving = common::with_annotation(archiving, &format!("mysql-webhook.io/{key}"), value);
        }
        inputs.push(archiving.to_string());
        let mut to_time = common::annotated("orders-pitr", image);
        for (key, value) in [
            ("flavor", flavor),
            ("backup-target", "pvc://backups/orders-pitr"),
            ("binlog-archive", "true"),
            ("restore-from", "pvc://backups/orders/latest"),
            ("restore-to-time", "2026-12-02T14:30:00+01:00"),
        ] {
            to_time = common::with_annotation(to_time, &format!("mysql-webhook.io/{key}"), value);
        }
        inputs.push(to_time.to_string());
    }
    inputs
}

#[test]
fn every_emitted_object_passes_strict_schema_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (index, input) in inputs().iter().enumerate() {
        let output = common::mutate_cli(input, &["--with-secret"]);
        for (document_index, document) in common::documents(&output).iter().enumerate() {
            let path = dir.path().join(format!("{index}-{document_index}.yaml"));
            std::fs::write(&path, mysql_webhook_core::yaml::to_string(document)).unwrap();
            files.push(path);
        }
    }
    assert!(files.len() >= 8 * 6 + 2, "every input yields a StatefulSet and 5 companions, and 2 a CronJob");
    let output = common::validate_strictly(&files);
    assert!(
        output.status.success(),
        "strict schema validation failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn strict_schema_validation_catches_an_unknown_field() {
    // Proves the check above can fail: the same tool on a StatefulSet with a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let mut sts: Value = common::documents(&common::mutate_cli(&inputs()[0], &[])).remove(0);
    sts["spec"]["replica"] = json!(3);
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, mysql_webhook_core::yaml::to_string(&sts)).unwrap();
    assert!(!common::validate_strictly(&[path]).status.success());
}

fn check_script(label: &str, script: &str) {
    // The client image (rclone's, Alpine) has a POSIX sh, not bash: its scripts are checked as sh.
    let shell = if label.ends_with("(sh)") { "sh" } else { "bash" };
    let shellcheck_shell = format!("--shell={shell}");
    for (program, args) in
        [(shell, vec!["-n"]), ("shellcheck", vec![shellcheck_shell.as_str(), "--severity=style", "-"])]
    {
        let mut child = tool(program, "apt-get install -y shellcheck")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} on {label}:\n{}{}\n--- script ---\n{script}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_generated_script_passes_bash_n_and_shellcheck() {
    let mut checked = 0;
    for input in inputs() {
        let output = common::mutate_cli(&input, &[]);
        for document in common::documents(&output) {
            for (label, script) in common::scripts(&document) {
                check_script(&label, &script);
                checked += 1;
            }
        }
    }
    // init, clone, sidecar, sidecar readiness and three mysql probes per input.
    assert!(checked >= 6 * 7, "only {checked} scripts found");
}
