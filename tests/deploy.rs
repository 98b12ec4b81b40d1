//! `deploy/` renders with `kubectl kustomize` (base and both overlays), every rendered core
//! object passes `kubernetes-validate --strict`, and the webhook configurations keep the
//! properties the README promises. cert-manager's Issuer and Certificate are custom resources
//! the validator has no schema for: they are checked for presence only.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A copy of deploy/ with self-signed certificates made by `mysql-webhook certs`, as the README
/// tells users to do.
fn rendered_overlays() -> (tempfile::TempDir, Vec<(&'static str, Vec<Value>)>) {
    let dir = tempfile::tempdir().unwrap();
    let copy =
        Command::new("cp").arg("-r").arg(common::repo_path("deploy")).arg(dir.path()).status().unwrap();
    assert!(copy.success());
    let deploy = dir.path().join("deploy");
    let certs = deploy.join("overlays/self-signed/certs");
    let made = common::run_cli(
        &[
            "certs",
            "--service",
            "mysql-webhook",
            "--namespace",
            "mysql-webhook",
            "--out",
            certs.to_str().unwrap(),
        ],
        "",
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // An overlay of a user's, with the policies component as its kustomization says to add it.
    let with_policies = deploy.join("overlays/with-policies");
    std::fs::create_dir(&with_policies).unwrap();
    std::fs::write(
        with_policies.join("kustomization.yaml"),
        "resources:\n- ../cert-manager\ncomponents:\n- ../../components/policies\n",
    )
    .unwrap();
    // The policy-reports component, added as its kustomization says.
    let with_reports = deploy.join("overlays/with-policy-reports");
    std::fs::create_dir(&with_reports).unwrap();
    std::fs::write(
        with_reports.join("kustomization.yaml"),
        "resources:\n- ../self-signed\ncomponents:\n- ../../components/policy-reports\n",
    )
    .unwrap();
    let rendered = vec![
        ("base", common::kustomize(&deploy.join("base"))),
        ("self-signed", common::kustomize(&deploy.join("overlays/self-signed"))),
        ("cert-manager", common::kustomize(&deploy.join("overlays/cert-manager"))),
        ("with-policies", common::kustomize(&with_policies)),
        ("with-policy-reports", common::kustomize(&with_reports)),
    ];
    (dir, rendered)
}

#[test]
fn every_overlay_renders_and_its_core_objects_pass_strict_validation() {
    let (dir, rendered) = rendered_overlays();
    for (name, documents) in &rendered {
        common::assert_valid_strictly(dir.path(), name, documents);
    }

    let kinds = |documents: &[Value]| -> Vec<String> {
        let mut kinds: Vec<String> =
            documents.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect();
        kinds.sort();
        kinds
    };
    let (_, cert_manager) = &rendered[2];
    assert_eq!(kinds(cert_manager).iter().filter(|k| *k == "Certificate").count(), 2);
    assert_eq!(kinds(cert_manager).iter().filter(|k| *k == "Issuer").count(), 2);
}

#[test]
fn the_policies_component_mounts_its_policy_set_and_the_set_loads() {
    let (_dir, rendered) = rendered_overlays();
    let (_, documents) = &rendered[3];
    let config_map = documents
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "mysql-webhook-policies")
        .expect("the ConfigMap, without a hash suffix so edits reload live");
    let deployment = documents.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let policies =
        env.iter().find(|e| e["name"] == "MYSQL_WEBHOOK_POLICIES").unwrap()["value"].as_str().unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = mounts.iter().find(|m| m["name"] == "policies").unwrap();
    assert_eq!(Path::new(policies).parent().unwrap(), Path::new(mount["mountPath"].as_str().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policies.yaml");
    std::fs::write(&file, config_map["data"]["policies.yaml"].as_str().unwrap()).unwrap();
    common::assert_example_passes_check(&file);
}

#[test]
fn the_policy_reports_component_installs_the_policyreport_crd_the_audit_writes_and_rbac_allows_it() {
    let (_dir, rendered) = rendered_overlays();
    let (_, documents) = &rendered[4];
    let crd = documents.iter().find(|d| d["kind"] == "CustomResourceDefinition").expect("the CRD");
    assert_eq!(crd["metadata"]["name"], "policyreports.wgpolicyk8s.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let versions: Vec<&Value> =
        crd["spec"]["versions"].as_array().unwrap().iter().map(|v| &v["name"]).collect();
    assert_eq!(versions, ["v1alpha2"], "the version the audit writes");
    // Least privilege: create and patch (server-side apply) on policyreports, nothing more,
    // granted in deploy/base so that a CRD installed by another tool works too.
    let (_, base) = &rendered[0];
    let role = base.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let rules: Vec<&Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"].as_array().unwrap().contains(&Value::from("wgpolicyk8s.io")))
        .collect();
    assert_eq!(
        rules,
        [
            &serde_json::json!({"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"], "verbs": ["create", "patch"]})
        ]
    );
    assert!(
        !rendered[1].1.iter().any(|d| d["kind"] == "CustomResourceDefinition"),
        "only with the component"
    );
}

#[test]
fn the_webhook_configurations_are_safe_for_a_production_cluster() {
    let (dir, rendered) = rendered_overlays();
    let ca = std::fs::read(dir.path().join("deploy/overlays/self-signed/certs/ca.crt")).unwrap();
    for (name, documents) in &rendered {
        for configuration in
            documents.iter().filter(|d| d["kind"].as_str().unwrap().ends_with("WebhookConfiguration"))
        {
            for webhook in configuration["webhooks"].as_array().unwrap() {
                let label = format!("{name} {}", webhook["name"]);
                assert_eq!(webhook["admissionReviewVersions"], serde_json::json!(["v1"]), "{label}");
                assert_eq!(webhook["sideEffects"], "None", "{label}");
                assert!(webhook["timeoutSeconds"].as_i64().unwrap() <= 5, "{label}");
                let excluded = &webhook["namespaceSelector"]["matchExpressions"][0];
                assert_eq!(excluded["operator"], "NotIn", "{label}");
                assert_eq!(
                    excluded["values"],
                    serde_json::json!(["kube-system", "mysql-webhook"]),
                    "{label}"
                );
                if configuration["kind"] == "MutatingWebhookConfiguration" {
                    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded", "{label}");
                    assert_eq!(webhook["clientConfig"]["service"]["path"], "/mutate", "{label}");
                } else {
                    assert_eq!(webhook["clientConfig"]["service"]["path"], "/validate", "{label}");
                }
                match *name {
                    "self-signed" => {
                        let bundle: String = webhook["clientConfig"]["caBundle"]
                            .as_str()
                            .unwrap()
                            .split_whitespace()
                            .collect();
                        use base64::Engine as _;
                        assert_eq!(
                            base64::engine::general_purpose::STANDARD.decode(bundle).unwrap(),
                            ca,
                            "{label}"
                        );
                    }
                    "cert-manager" => assert_eq!(
                        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                        "mysql-webhook/mysql-webhook"
                    ),
                    _ => {}
                }
            }
        }
        let deployment = documents.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let container = &pod["containers"][0]["securityContext"];
        assert_eq!(container["readOnlyRootFilesystem"], true);
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert!(documents.iter().any(|d| d["kind"] == "PodDisruptionBudget"), "{name}");
    }
}

#[test]
fn rbac_lets_the_controller_read_secrets_by_name_but_never_list_or_watch_them() {
    let (_dir, rendered) = rendered_overlays();
    let role = rendered[0].1.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let verbs = |resource: &str| -> Vec<&serde_json::Value> {
        let rules = role["rules"].as_array().unwrap().iter();
        rules
            .filter(|rule| rule["resources"].as_array().unwrap().iter().any(|r| r == resource))
            .flat_map(|rule| rule["verbs"].as_array().unwrap())
            .collect()
    };
    // get by name (renewal, ownership), never list or watch: no enumeration of the cluster's Secrets.
    assert_eq!(verbs("secrets"), ["get", "create", "patch", "update"]);
    assert_eq!(verbs("certificates"), ["get", "create", "patch"]);
    // The NetworkPolicy companion: watched (owned) and server-side applied like the others.
    assert_eq!(verbs("networkpolicies"), ["get", "list", "watch", "create", "patch"]);
}
