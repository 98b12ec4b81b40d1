//! Scoped policies and exceptions through `/validate`: namespace labels from the watch cache
//! (filled by hand), the router called without a socket, the real policy host.

mod common;

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{reflector, watcher};
use mysql_webhook::metrics::Metrics;
use mysql_webhook::namespaces::NamespaceLabels;
use mysql_webhook::policy::{Policies, Source};
use mysql_webhook::server::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

/// replica-quorum for tier=prod namespaces, exceptions allowed where exceptions=allowed.
const POLICIES: &str = "policies:\n- name: quorum\n  module: builtin:replica-quorum\n  \
    namespaceSelector: {matchLabels: {tier: prod}}\n  \
    exceptions: {namespaceSelector: {matchLabels: {exceptions: allowed}}}\n";

struct Webhook {
    state: AppState,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

/// The webhook with the namespaces `shop` (tier=prod), `blog` (tier=dev) and `legacy`
/// (tier=prod, exceptions=allowed) in its cache.
fn webhook() -> Webhook {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_policies(dir.path(), POLICIES);
    let policies = Arc::new(Policies::load(common::host(), Source::File(path)).unwrap());
    let (reader, mut writer) = reflector::store::<Namespace>();
    for (name, labels) in [
        ("shop", json!({"tier": "prod"})),
        ("blog", json!({"tier": "dev"})),
        ("legacy", json!({"tier": "prod", "exceptions": "allowed"})),
    ] {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
        writer.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(namespace).unwrap()));
    }
    let metrics = Arc::new(Metrics::new());
    let state =
        AppState::new(metrics.clone(), policies).with_namespaces(Arc::new(NamespaceLabels::new(reader)));
    Webhook { state, metrics, _dir: dir }
}

/// A CREATE of an opted-in StatefulSet with 4 replicas (which replica-quorum denies) in
/// `namespace`, with `exceptions` as its policy-exceptions annotation when given.
fn even_create(namespace: &str, exceptions: Option<&str>) -> Value {
    let text = std::fs::read_to_string(common::repo_path("tests/data/create-annotated.json")).unwrap();
    let mut review: Value = serde_json::from_str(&text).unwrap();
    review["request"]["namespace"] = json!(namespace);
    let object = &mut review["request"]["object"];
    object["metadata"]["namespace"] = json!(namespace);
    object["spec"]["replicas"] = json!(4);
    if let Some(exceptions) = exceptions {
        object["metadata"]["annotations"]["mysql-webhook.io/policy-exceptions"] = json!(exceptions);
    }
    review
}

async fn validate(webhook: &Webhook, review: &Value) -> Value {
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(review.to_string()))
        .unwrap();
    let response = server::router(webhook.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
}

#[tokio::test]
async fn a_policy_runs_only_in_namespaces_its_selector_selects() {
    let webhook = webhook();
    let prod = validate(&webhook, &even_create("shop", None)).await;
    assert_eq!(prod["allowed"], false, "{prod}");
    assert!(prod["status"]["message"].as_str().unwrap().starts_with("quorum: "), "{prod}");

    let dev = validate(&webhook, &even_create("blog", None)).await;
    assert_eq!(dev["allowed"], true, "{dev}");
    assert!(dev.get("warnings").is_none(), "out of scope leaves no trace: {dev}");
    assert!(!webhook.metrics.encode().contains("policy=\"quorum\",outcome=\"allowed\""));
}

#[tokio::test]
async fn a_namespace_the_cache_has_not_seen_keeps_the_policy_in_force() {
    let webhook = webhook();
    let unknown = validate(&webhook, &even_create("new-team", None)).await;
    assert_eq!(unknown["allowed"], false, "{unknown}");
}

#[tokio::test]
async fn an_allowed_exception_skips_the_policy_with_a_warning_and_a_metric() {
    let webhook = webhook();
    let response = validate(&webhook, &even_create("legacy", Some("quorum"))).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        response["warnings"],
        json!(["quorum: not evaluated: excepted by annotation mysql-webhook.io/policy-exceptions"])
    );
    let metrics = webhook.metrics.encode();
    assert!(
        metrics.contains("mysql_webhook_policy_exceptions_total{policy=\"quorum\",outcome=\"used\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_exception_where_it_is_not_allowed_is_denied_naming_the_policy_and_why() {
    let webhook = webhook();
    let response = validate(&webhook, &even_create("shop", Some("quorum"))).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("quorum: exception refused (annotation mysql-webhook.io/policy-exceptions): namespace shop is not among the places this policy allows exceptions"), "{message}");
    let metrics = webhook.metrics.encode();
    assert!(
        metrics.contains("mysql_webhook_policy_exceptions_total{policy=\"quorum\",outcome=\"refused\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_exception_for_a_policy_out_of_scope_changes_nothing() {
    let webhook = webhook();
    let response = validate(&webhook, &even_create("blog", Some("quorum"))).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("warnings").is_none(), "{response}");
}

#[test]
fn the_cache_gives_a_namespaces_labels_with_its_name_and_nothing_for_an_unknown_one() {
    let (reader, mut writer) = reflector::store::<Namespace>();
    let shop = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"tier": "prod"}}});
    writer.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(shop).unwrap()));
    let cache = NamespaceLabels::new(reader);
    let labels = cache.labels("shop").unwrap();
    assert_eq!(labels.get("tier").map(String::as_str), Some("prod"));
    assert_eq!(labels.get("kubernetes.io/metadata.name").map(String::as_str), Some("shop"));
    assert!(cache.labels("blog").is_none());
}
