//! `kubectl scale` can't bypass the policies: a `statefulsets/scale` review is judged on the
//! parent StatefulSet with the requested replicas, read from the watch cache or, on a miss, with
//! a GET from a mocked API server (tower-test). The router is called without a socket.

mod common;

use std::sync::Arc;

use axum::body::Body as AxumBody;
use http::{Request, Response};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher;
use mysql_webhook::metrics::Metrics;
use mysql_webhook::scale::ClusterLookup;
use mysql_webhook::server::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The stored, expanded (so managed) StatefulSet `shop/mysql` that the fixture scales.
fn parent() -> StatefulSet {
    let mut sts = common::annotated("mysql", "mysql:8.4");
    sts["metadata"]["namespace"] = json!("shop");
    let object: StatefulSet = serde_json::from_value(sts).unwrap();
    mysql_webhook_core::mutate_statefulset(&object, None, Some("shop")).unwrap().unwrap().expanded
}

fn scale_review(replicas: i32) -> Value {
    let text = std::fs::read_to_string(common::repo_path("tests/data/update-scale.json")).unwrap();
    let mut review: Value = serde_json::from_str(&text).unwrap();
    review["request"]["object"]["spec"]["replicas"] = json!(replicas);
    review
}

/// The API server's side: how it answers each GET (status, body); `None` means no call may come.
type Answer = Option<(u16, Value)>;

/// Sends `review` to `/validate` of a router whose lookup has `cached` in its watch cache and
/// a mocked API server answering `answer`; returns (HTTP status, response, paths requested).
async fn validate(review: &Value, cached: Option<StatefulSet>, answer: Answer) -> (u16, Value, Vec<String>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (reader, mut writer) = reflector::store::<StatefulSet>();
    if let Some(cached) = cached {
        writer.apply_watcher_event(&watcher::Event::Apply(cached));
    }
    let api = tokio::spawn(async move {
        let mut paths = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            paths.push(format!("{} {}", request.method(), request.uri().path()));
            let (status, body) = answer.clone().expect("no API call is expected");
            let response =
                Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap()));
            send.send_response(response.unwrap());
        }
        paths
    });
    let lookup = ClusterLookup::new(Client::new(service, "default"), reader);
    let state = AppState::new(Arc::new(Metrics::new()), common::shared_builtin_policies())
        .with_lookup(Arc::new(lookup));
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(AxumBody::from(review.to_string()))
        .unwrap();
    let response = server::router(state).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body =
        serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    // The router and with it the client are gone: the mock's stream ends.
    let paths = api.await.unwrap();
    (status, body, paths)
}

const PARENT_PATH: &str = "GET /apis/apps/v1/namespaces/shop/statefulsets/mysql";

#[tokio::test]
async fn scaling_to_an_even_count_is_denied_by_the_parents_policies() {
    let (status, body, paths) = validate(&scale_review(4), None, Some((200, json!(parent())))).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("replica-quorum: "), "{message}");
    assert_eq!(paths, [PARENT_PATH], "a cache miss is one GET of the parent");
}

#[tokio::test]
async fn scaling_to_an_odd_count_within_bounds_is_allowed() {
    let (_, body, _) = validate(&scale_review(5), None, Some((200, json!(parent())))).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn a_cached_parent_needs_no_api_call() {
    let (_, body, paths) = validate(&scale_review(4), Some(parent()), None).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert!(paths.is_empty(), "{paths:?}");
}

#[tokio::test]
async fn a_scale_of_an_unmanaged_statefulset_is_allowed_untouched() {
    let mut unmanaged = json!(parent());
    unmanaged["metadata"]["labels"] = json!({});
    let (_, body, paths) = validate(&scale_review(4), None, Some((200, unmanaged))).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(body["response"].get("warnings").is_none(), "{body}");
    assert_eq!(paths, [PARENT_PATH]);
}

#[tokio::test]
async fn a_scale_of_a_missing_statefulset_is_allowed() {
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    let (_, body, _) = validate(&scale_review(4), None, Some((404, not_found))).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn an_unreadable_parent_is_an_internal_error_left_to_the_failure_policy() {
    let failure = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503, "message": "etcd is down"});
    let (status, body, _) = validate(&scale_review(4), None, Some((503, failure))).await;
    assert_eq!(status, 500);
    assert!(body.as_str().unwrap().contains("internal error"), "{body}");
    assert!(!body.as_str().unwrap().contains("etcd"), "internals stay in the log: {body}");
}
