//! `mysql-webhook check` as CI runs it: the expanded manifests through the real policies, exit
//! 0 when all pass, 1 when an enforced policy denies, 2 on bad input; text a human scans and
//! JSON a pipeline reads.

mod common;

use std::path::Path;

use common::run_cli;
use serde_json::Value;

const DB: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: shop\n  annotations:\n    \
    mysql-webhook.io/replicated: \"true\"\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: db}}\n  template:\n    \
    metadata: {labels: {app: db}}\n    spec: {containers: [{name: mysql, image: \"mysql:8.4\"}]}\n";

fn check(input: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let cache = common::policy_cache();
    let mut args = vec!["check", "-f", "-", "--policy-cache", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = run_cli(&args, input);
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_manifest_that_passes_every_builtin_policy_exits_0() {
    let (code, stdout, stderr) = check(DB, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for policy in mysql_webhook::policy::builtin::NAMES {
        let line = stdout.lines().find(|line| line.split_whitespace().nth(1) == Some(policy)).unwrap();
        assert_eq!(line.split_whitespace().collect::<Vec<_>>()[..3], ["StatefulSet/shop/db", policy, "pass"]);
    }
    assert!(stdout.ends_with("1 StatefulSet(s), 5 policies: all pass\n"), "{stdout}");
}

#[test]
fn every_example_in_deploy_passes_the_builtin_policies() {
    for example in ["mariadb", "mysql-5.7", "mysql-8.0", "mysql-8.4"] {
        let text =
            std::fs::read_to_string(common::repo_path(&format!("deploy/examples/{example}.yaml"))).unwrap();
        let (code, stdout, stderr) = check(&text, &[]);
        assert_eq!(code, Some(0), "{example}: {stdout}{stderr}");
    }
}

#[test]
fn an_enforced_deny_exits_1_and_names_object_policy_and_reason() {
    let input =
        format!("{DB}---\n{}", DB.replace("name: db", "name: orders").replace("replicas: 3", "replicas: 4"));
    let (code, stdout, _) = check(&input, &[]);
    assert_eq!(code, Some(1), "{stdout}");
    let denied = stdout.lines().find(|line| line.contains("DENY")).expect("a DENY line");
    let columns: Vec<_> = denied.split_whitespace().collect();
    assert_eq!(columns[..3], ["StatefulSet/shop/orders", "replica-quorum", "DENY"], "{denied}");
    assert!(denied.contains('4'), "{denied}");
    assert!(stdout.ends_with("2 StatefulSet(s), 5 policies: 1 denied\n"), "{stdout}");
}

#[test]
fn json_output_has_a_finding_per_object_and_policy() {
    let (code, stdout, _) = check(&DB.replace("replicas: 3", "replicas: 4"), &["--output", "json"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["denied"], true);
    let object = &report["objects"][0];
    assert_eq!((object["namespace"].as_str(), object["name"].as_str()), (Some("shop"), Some("db")));
    assert_eq!(object["allowed"], false);
    let findings = object["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 5);
    let quorum = findings.iter().find(|f| f["policy"] == "replica-quorum").unwrap();
    assert_eq!((quorum["verdict"].as_str(), quorum["denies"].as_bool()), (Some("deny"), Some(true)));
    assert!(quorum["message"].as_str().unwrap().contains('4'));
}

#[test]
fn a_warn_mode_policy_reports_but_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::write_policies(
        dir.path(),
        "policies:\n- {name: quorum, module: builtin:replica-quorum, mode: warn}\n",
    );
    let (code, stdout, _) =
        check(&DB.replace("replicas: 3", "replicas: 4"), &["--policies", policies.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
    let line = stdout.lines().next().unwrap();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>()[..3], ["StatefulSet/shop/db", "quorum", "warn"]);
}

#[test]
fn bad_input_or_a_bad_policy_file_exits_2_with_the_reason() {
    let (code, stdout, stderr) = check("kind: [", &[]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert!(stderr.starts_with("error: input is not valid YAML or JSON"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let policies = common::write_policies(dir.path(), "policies:\n- {name: q, module: builtin:quorum}\n");
    let (code, _, stderr) = check(DB, &["--policies", policies.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("policy q: `module` \"builtin:quorum\": no such built-in policy"), "{stderr}");

    let missing = Path::new("/nonexistent/policies.yaml");
    let (code, _, stderr) = check(DB, &["--policies", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot read the policy configuration /nonexistent/policies.yaml"), "{stderr}");
}

#[test]
fn input_without_opted_in_statefulsets_says_so_and_exits_0() {
    let (code, stdout, _) = check("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("no opted-in StatefulSets"), "{stdout}");
}

/// A platform's set: replica-quorum only for namespaces labelled tier=prod, exceptions allowed
/// in namespace legacy; spread only for StatefulSets labelled critical=true.
const SCOPED: &str = "policies:\n\
- name: quorum\n  module: builtin:replica-quorum\n  namespaceSelector: {matchLabels: {tier: prod}}\n  \
  exceptions: {namespaces: [legacy]}\n\
- name: spread\n  module: builtin:spread\n  objectSelector: {matchLabels: {critical: \"true\"}}\n";

fn scoped(input: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::write_policies(dir.path(), SCOPED);
    let mut args = vec!["--policies", policies.to_str().unwrap()];
    args.extend_from_slice(extra);
    check(input, &args)
}

fn four_replicas_in(namespace: &str) -> String {
    DB.replace("replicas: 3", "replicas: 4").replace("namespace: shop", &format!("namespace: {namespace}"))
}

#[test]
fn a_policy_out_of_scope_is_neither_run_nor_reported_and_the_assumption_is_said() {
    let (code, stdout, stderr) = scoped(&four_replicas_in("shop"), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("quorum") && !stdout.contains("spread"), "{stdout}");
    assert!(stdout.ends_with("1 StatefulSet(s), 0 policies: all pass\n"), "{stdout}");
    assert!(
        stderr.contains("note: namespace shop: labels kubernetes.io/metadata.name=shop (assumed: no Namespace in the input"),
        "{stderr}"
    );
}

#[test]
fn namespace_labels_come_from_the_flag_or_from_a_namespace_in_the_input() {
    let (code, stdout, stderr) =
        scoped(&four_replicas_in("shop"), &["--namespace-labels", "shop=tier=prod,team=a"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.lines().any(|line| line.starts_with("StatefulSet/shop/db")
        && line.contains("quorum")
        && line.contains("DENY")));
    assert!(stderr.contains("namespace shop: labels kubernetes.io/metadata.name=shop,team=a,tier=prod (from --namespace-labels)"), "{stderr}");

    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {tier: prod}}\n---\n";
    let (code, stdout, stderr) = scoped(&format!("{namespace}{}", four_replicas_in("shop")), &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("(from its Namespace in the input)"), "{stderr}");

    // The flag wins over the input, as the cluster's labels would.
    let (code, _, stderr) =
        scoped(&format!("{namespace}{}", four_replicas_in("shop")), &["--namespace-labels", "shop="]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_object_selector_scopes_a_policy_to_labelled_statefulsets() {
    let critical = DB.replace("  namespace: shop\n", "  namespace: shop\n  labels: {critical: \"true\"}\n");
    let (code, stdout, stderr) = scoped(&critical, &["--output", "json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let findings = report["objects"][0]["findings"].as_array().unwrap();
    let policies: Vec<_> = findings.iter().map(|f| f["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["spread"]);
    assert_eq!(report["namespaces"][0]["source"], "assumed");
}

#[test]
fn an_allowed_exception_is_reported_and_a_refused_one_denies_naming_policy_and_why() {
    let excepted = |namespace: &str| {
        four_replicas_in(namespace).replace(
            "    mysql-webhook.io/replicated: \"true\"\n",
            "    mysql-webhook.io/replicated: \"true\"\n    mysql-webhook.io/policy-exceptions: quorum\n",
        )
    };
    let prod = |namespace: &str| format!("{namespace}=tier=prod");
    let (code, stdout, stderr) = scoped(&excepted("legacy"), &["--namespace-labels", &prod("legacy")]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let line = stdout.lines().find(|line| line.contains("quorum")).unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[..3],
        ["StatefulSet/legacy/db", "quorum", "excepted"]
    );

    let (code, stdout, stderr) = scoped(&excepted("shop"), &["--namespace-labels", &prod("shop")]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let line = stdout.lines().find(|line| line.contains("DENY")).unwrap();
    assert!(line.contains("quorum") && line.contains("exception refused"), "{line}");
    assert!(line.contains("namespace shop is not among the places this policy allows exceptions"), "{line}");
}

#[test]
fn a_malformed_namespace_labels_flag_is_a_usage_error() {
    let (code, _, stderr) = check(DB, &["--namespace-labels", "shop=tier"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("label \"tier\" has no value; use NAMESPACE=KEY=VALUE"), "{stderr}");
}

#[test]
fn what_kubectl_get_prints_for_running_statefulsets_and_namespaces_is_checked_as_stored() {
    // `kubectl get statefulsets -A -l mysql-webhook.io/managed=true -o yaml` and
    // `kubectl get namespaces -o yaml`: Lists of stored objects (README, "Rolling out a stricter rule").
    let text =
        std::fs::read_to_string(common::repo_path("tests/data/apiserver/validate-update-statefulset.json"))
            .unwrap();
    let review: Value = serde_json::from_str(&text).unwrap();
    let mut stored = review["request"]["oldObject"].clone();
    stored["spec"]["replicas"] = serde_json::json!(4);
    let namespace = stored["metadata"]["namespace"].as_str().unwrap().to_owned();
    let statefulsets = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [stored]});
    let namespaces = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {"tier": "prod"}}}
    ]});
    let input = format!("{statefulsets}\n{namespaces}\n");
    let (code, stdout, stderr) = scoped(&input, &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let denied = stdout.lines().find(|line| line.contains("DENY")).unwrap();
    assert!(
        denied.starts_with(&format!("StatefulSet/{namespace}/mysql")) && denied.contains("quorum"),
        "{denied}"
    );
    assert!(stderr.contains(&format!("namespace {namespace}: labels kubernetes.io/metadata.name={namespace},tier=prod (from its Namespace in the input)")), "{stderr}");
}
