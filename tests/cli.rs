//! `mysql-webhook mutate` as users and pipelines run it: documents in, documents out, exit codes.

mod common;

use common::{documents, mutate_cli, run_cli};
use serde_json::json;

const ANNOTATED: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  annotations:\n    \
    mysql-webhook.io/replicated: \"true\"\nspec:\n  selector: {matchLabels: {app: db}}\n  template:\n    \
    metadata: {labels: {app: db}}\n    spec: {containers: [{name: mysql, image: \"mysql:8.4\"}]}\n";

fn fails_with(input: &str, message: &str) {
    let output = run_cli(&["mutate", "-f", "-"], input);
    assert_eq!(output.status.code(), Some(2), "bad input exits 2");
    assert!(output.stdout.is_empty(), "nothing on stdout for bad input");
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end(), message);
}

#[test]
fn bad_input_exits_2_with_nothing_on_stdout_and_names_the_document() {
    let bad_second = format!(
        "{ANNOTATED}---\n{}",
        ANNOTATED.replace("\"true\"", "\"yes\"").replace("name: db\n", "name: orders\n")
    );
    fails_with(
        &bad_second,
        r#"error: document 2 (StatefulSet/orders): annotation mysql-webhook.io/replicated: "yes" is not accepted; use "true" or "false""#,
    );
    fails_with(
        "- just\n- a list\n",
        "error: document 1 (object without a name): not a Kubernetes object (a mapping with apiVersion and kind)",
    );
    fails_with("metadata: {name: x}\n", "error: document 1 (object/x): apiVersion and kind are required");
    fails_with(
        &ANNOTATED.replace("apps/v1", "apps/v1beta2"),
        "error: document 1 (StatefulSet/db): only apps/v1 StatefulSets can be expanded; set apiVersion: apps/v1",
    );
    fails_with(
        &ANNOTATED.replace("spec:\n  selector", "spec:\n  replicas: three\n  selector"),
        "error: document 1 (StatefulSet/db): not a valid apps/v1 StatefulSet: invalid type: string \"three\", expected i32",
    );
    let output = run_cli(&["mutate", "-f", "-"], "kind: [unclosed\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: input is not valid YAML or JSON: "));
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let output = run_cli(&["mutate", "-f", "/nonexistent/db.yaml"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: cannot read /nonexistent/db.yaml: "));
}

#[test]
fn reads_files_json_streams_and_lists() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ANNOTATED).unwrap();
    let output = run_cli(&["mutate", "-f", file.path().to_str().unwrap()], "");
    assert!(output.status.success());
    assert_eq!(documents(&String::from_utf8(output.stdout).unwrap()).len(), 6);

    let sts = documents(ANNOTATED).remove(0);
    let json_stream = format!(
        "{}\n{}",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        sts
    );
    let out = documents(&mutate_cli(&json_stream, &[]));
    assert_eq!(out.len(), 7);
    assert_eq!(out[0]["kind"], "Namespace");

    let list = json!({"apiVersion": "v1", "kind": "List", "items": [sts]}).to_string();
    let out = documents(&mutate_cli(&list, &[]));
    assert_eq!(out.len(), 1, "a List stays one document");
    let kinds: Vec<&str> =
        out[0]["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["StatefulSet", "ConfigMap", "Service", "Service", "PodDisruptionBudget", "NetworkPolicy"],
        "companions follow their item"
    );
}

#[test]
fn the_secret_is_emitted_only_on_request_and_says_why() {
    let output = run_cli(&["mutate", "-f", "-"], ANNOTATED);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "note: document 1 (StatefulSet/db): Secrets \"db-credentials\" and \"db-tls\" not emitted: secrets don't \
         belong in Git; the controller creates them in the cluster, or pass --with-secret"
    );
    let out = documents(&mutate_cli(ANNOTATED, &["--with-secret"]));
    let secret = out.iter().find(|d| d["kind"] == "Secret").expect("a Secret");
    for key in ["root-password", "replication-password"] {
        let encoded = secret["data"][key].as_str().unwrap();
        use base64_check::decode;
        let password = decode(encoded);
        assert_eq!(password.len(), 32, "{key}");
        assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    }
    assert_ne!(secret["data"]["root-password"], secret["data"]["replication-password"]);
}

/// Decodes the Secret's base64 through k8s-openapi's own ByteString, the type it was made with.
mod base64_check {
    pub fn decode(encoded: &str) -> String {
        let bytes: k8s_openapi::ByteString = serde_json::from_value(serde_json::json!(encoded)).unwrap();
        String::from_utf8(bytes.0).unwrap()
    }
}

#[test]
fn mutating_its_own_output_changes_nothing() {
    let once = mutate_cli(ANNOTATED, &["--with-secret"]);
    let twice = run_cli(&["mutate", "-f", "-", "--with-secret"], &once);
    assert!(twice.status.success());
    assert_eq!(
        String::from_utf8(twice.stdout).unwrap(),
        once,
        "companions and the Secret are not duplicated or regenerated"
    );
}

#[test]
fn check_without_a_file_is_a_usage_error_that_exits_2() {
    let output = run_cli(&["check"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--filename <FILE>"));
}

#[test]
fn with_secret_also_emits_the_members_tls_identity_and_a_tls_issuer_a_certificate_instead() {
    let out = documents(&mutate_cli(ANNOTATED, &["--with-secret"]));
    let tls =
        out.iter().find(|d| d["kind"] == "Secret" && d["type"] == "kubernetes.io/tls").expect("TLS Secret");
    assert_eq!(tls["metadata"]["name"], "db-tls");
    for key in ["ca.crt", "tls.crt", "tls.key", "ca.key"] {
        assert!(base64_check::decode(tls["data"][key].as_str().unwrap()).starts_with("-----BEGIN "), "{key}");
    }
    assert!(!out.iter().any(|d| d["kind"] == "Certificate"));

    let issued = ANNOTATED.replace(
        "mysql-webhook.io/replicated: \"true\"\n",
        "mysql-webhook.io/replicated: \"true\"\n    mysql-webhook.io/tls-issuer: ClusterIssuer/corp-ca\n",
    );
    assert_ne!(issued, ANNOTATED);
    let out = documents(&mutate_cli(&issued, &["--with-secret"]));
    assert!(!out.iter().any(|d| d["type"] == "kubernetes.io/tls"), "cert-manager makes it");
    let certificate = out.iter().find(|d| d["kind"] == "Certificate").expect("a Certificate");
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    assert_eq!(certificate["spec"]["secretName"], "db-tls");
    assert_eq!(
        certificate["spec"]["issuerRef"],
        json!({"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp-ca"})
    );
    assert_eq!(certificate["spec"]["dnsNames"], json!(["*.db", "db-0.db", "db", "db-read"]));
    assert_eq!(
        certificate["spec"]["usages"],
        json!(["digital signature", "key encipherment", "server auth", "client auth"])
    );
}
