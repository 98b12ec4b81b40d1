//! The companion controller against a mocked API server (tower-test, as in kube-rs's
//! controller-rs): every call the reconciler makes is recorded (method, path and query, body)
//! and answered by the scenario, then asserted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::mock_api::{self, Call, TRANSPORT_FAILURE};
use http::{Request, Response};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use mysql_webhook::controller::{self, Context};
use mysql_webhook::member_tls as certs;
use mysql_webhook::metrics::Metrics;
use mysql_webhook_core::companions;
use serde_json::{Value, json};

/// How the mocked API server answers a call: (status, body).
type Answer = Box<dyn Fn(&Call) -> (u16, Value) + Send + Sync>;

/// Answers like an API server that has nothing yet: applies and creates echo the object, GETs
/// are 404s, events are accepted.
fn empty_cluster() -> Answer {
    Box::new(|call: &Call| match call.method.as_str() {
        "GET" => (404, not_found()),
        "POST" => (201, call.body.clone()),
        _ => (200, call.body.clone()),
    })
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn status(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": format!("mocked {code}")})
}

/// Runs one reconcile of `sts` against the mock; returns its result, every call, and the metrics.
async fn reconcile(
    sts: Value,
    answer: Answer,
) -> (Result<Action, controller::Error>, Vec<Call>, Arc<Metrics>) {
    let sts: Arc<StatefulSet> = Arc::new(serde_json::from_value(sts).unwrap());
    against_mock(answer, |context| controller::reconcile(sts, context)).await
}

/// Runs `work` with a context whose API server is the mock answering with `answer`; returns
/// its result, every call, and the metrics.
async fn against_mock<F, T>(
    answer: Answer,
    work: impl FnOnce(Arc<Context>) -> F,
) -> (T, Vec<Call>, Arc<Metrics>)
where
    F: std::future::Future<Output = T>,
{
    let (client, calls) = mock_api::client(Box::new(move |call| {
        let (code, body) = answer(call);
        (code, serde_json::to_vec(&body).unwrap())
    }));
    let metrics = Arc::new(Metrics::new());
    let context = Arc::new(Context::new(client, metrics.clone()));
    let result =
        tokio::time::timeout(Duration::from_secs(5), work(context)).await.expect("the work finishes");
    let calls = calls.lock().unwrap().clone();
    (result, calls, metrics)
}

/// A context whose client is never called (for `error_policy`, which makes no requests).
fn idle_context(metrics: Arc<Metrics>) -> Arc<Context> {
    let (service, _) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    Arc::new(Context::new(Client::new(service, "default"), metrics))
}

/// A StatefulSet as stored after the webhook expanded it.
fn managed_statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "orders-db", "namespace": "shop", "uid": "8b3ad3c1-2f0e-4c9e-9b7a-3f4a1f2c5d6e",
            "annotations": {"mysql-webhook.io/replicated": "true"},
            "labels": {"mysql-webhook.io/managed": "true"}
        },
        "spec": {
            "replicas": 3, "serviceName": "orders-hl",
            "selector": {"matchLabels": {"app": "orders-db"}},
            "template": {
                "metadata": {"labels": {"app": "orders-db"}},
                "spec": {"containers": [{"name": "mysql", "image": "mysql:8.4"}]}
            }
        }
    })
}

fn writes(calls: &[Call]) -> Vec<(&str, &str)> {
    calls
        .iter()
        .filter(|c| c.method != "GET" && !c.uri.contains("/events"))
        .map(|c| (c.method.as_str(), c.uri.split('?').next().unwrap()))
        .collect()
}

const OWNER: &str = "8b3ad3c1-2f0e-4c9e-9b7a-3f4a1f2c5d6e";

fn owner_references() -> Value {
    // No blockOwnerDeletion: it would need update on statefulsets/finalizers, beyond least privilege.
    json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "orders-db", "uid": OWNER, "controller": true}])
}

#[tokio::test]
async fn creates_every_companion_with_an_owner_reference_and_the_field_manager() {
    let (result, calls, metrics) = reconcile(managed_statefulset(), empty_cluster()).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        writes(&calls),
        [
            ("PATCH", "/api/v1/namespaces/shop/configmaps/orders-db"),
            ("PATCH", "/api/v1/namespaces/shop/services/orders-hl"),
            ("PATCH", "/api/v1/namespaces/shop/services/orders-db-read"),
            ("PATCH", "/apis/policy/v1/namespaces/shop/poddisruptionbudgets/orders-db"),
            ("PATCH", "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/orders-db"),
            ("POST", "/api/v1/namespaces/shop/secrets"),
            ("POST", "/api/v1/namespaces/shop/secrets"),
        ]
    );
    for call in calls.iter().filter(|c| c.method == "PATCH") {
        assert!(
            call.uri.contains("fieldManager=mysql-webhook.io") && call.uri.contains("force=true"),
            "{}",
            call.uri
        );
        assert!(call.body["apiVersion"].is_string(), "a full object is applied");
        assert_eq!(call.body["metadata"]["ownerReferences"], owner_references(), "{}", call.uri);
    }
    let secrets: Vec<&Value> = calls
        .iter()
        .filter(|c| c.uri.starts_with("/api/v1/namespaces/shop/secrets?"))
        .map(|c| &c.body)
        .collect();
    assert_eq!(secrets[0]["metadata"]["name"], "orders-db-credentials");
    let keys: Vec<&String> = secrets[0]["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["exporter-password", "replication-password", "root-password"]);
    assert_eq!(secrets[1]["metadata"]["name"], "orders-db-tls");
    assert_eq!(secrets[1]["type"], "kubernetes.io/tls");
    let keys: Vec<&String> = secrets[1]["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    for secret in secrets {
        // The default retention policy keeps the claims: the Secrets outlive the StatefulSet too.
        assert_eq!(secret["metadata"]["ownerReferences"], Value::Null, "{}", secret["metadata"]["name"]);
    }
    let events: Vec<&Value> =
        calls.iter().filter(|c| c.uri.contains("/events")).map(|c| &c.body["reason"]).collect();
    assert_eq!(events, ["CredentialsCreated", "TlsCreated"]);
    assert!(metrics.encode().contains("mysql_webhook_controller_reconciles_total 1"));
}

/// Secrets as the API server would return them: made by the controller (labelled) or not, owned
/// by the StatefulSet or not, with a fresh TLS identity.
fn existing_secrets(ours: bool, owned: bool) -> Answer {
    secrets_of_version(ours, owned, &[])
}

/// [`existing_secrets`], the credentials without the keys `without` (an earlier version's).
fn secrets_of_version(ours: bool, owned: bool, without: &[&str]) -> Answer {
    let sts: StatefulSet = serde_json::from_value(managed_statefulset()).unwrap();
    let plan = mysql_webhook_core::plan(&sts, None).unwrap().unwrap();
    let mut credentials = companions::credentials_secret(&plan, &mysql_webhook::new_credentials());
    credentials.data.as_mut().unwrap().retain(|key, _| !without.contains(&key.as_str()));
    let identity = certs::member_identity("orders-hl", companions::member_dns_names(&plan)).unwrap();
    let tls = companions::tls_secret(&plan, &identity);
    let stored = move |secret: &k8s_openapi::api::core::v1::Secret| {
        let mut value = serde_json::to_value(secret).unwrap();
        value["metadata"]["resourceVersion"] = json!("41");
        if !ours {
            value["metadata"]["labels"] = json!({});
        }
        if owned {
            value["metadata"]["ownerReferences"] = owner_references();
        }
        value
    };
    let (credentials, tls) = (stored(&credentials), stored(&tls));
    Box::new(move |call: &Call| match call.method.as_str() {
        "GET" if call.uri.contains("/secrets/orders-db-credentials") => (200, credentials.clone()),
        "GET" if call.uri.contains("/secrets/orders-db-tls") => (200, tls.clone()),
        "GET" => (404, not_found()),
        "POST" => (201, call.body.clone()),
        _ => (200, call.body.clone()),
    })
}

fn on_secrets(calls: &[Call]) -> Vec<(&str, &str)> {
    calls
        .iter()
        .filter(|c| c.uri.contains("/secrets"))
        .map(|c| (c.method.as_str(), c.uri.split('?').next().unwrap()))
        .collect()
}

#[tokio::test]
async fn existing_secrets_are_never_overwritten() {
    let (result, calls, _) = reconcile(managed_statefulset(), existing_secrets(true, false)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        on_secrets(&calls),
        [
            ("GET", "/api/v1/namespaces/shop/secrets/orders-db-credentials"),
            ("GET", "/api/v1/namespaces/shop/secrets/orders-db-tls"),
            ("GET", "/api/v1/namespaces/shop/secrets/orders-db-tls"),
        ],
        "read (the TLS one twice: existence, then renewal), never written: a fresh certificate needs nothing"
    );
    assert!(!calls.iter().any(|c| c.uri.contains("/events")), "nothing to report");
}

#[tokio::test]
async fn secrets_are_owned_by_the_statefulset_only_when_its_claims_are_deleted_with_it() {
    let mut deleting = managed_statefulset();
    deleting["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": "Delete", "whenScaled": "Retain"});
    // Created owned.
    let (_, calls, _) = reconcile(deleting.clone(), empty_cluster()).await;
    let created: Vec<&Value> =
        calls.iter().filter(|c| c.method == "POST" && c.uri.contains("/secrets")).map(|c| &c.body).collect();
    assert_eq!(created.len(), 2);
    for secret in created {
        assert_eq!(secret["metadata"]["ownerReferences"], owner_references());
    }
    // Made by an earlier version, unowned: the owner is added, conditionally on what was read.
    let (result, calls, _) = reconcile(deleting.clone(), existing_secrets(true, false)).await;
    result.unwrap();
    let patches: Vec<&Call> =
        calls.iter().filter(|c| c.method == "PATCH" && c.uri.contains("/secrets")).collect();
    assert_eq!(patches.len(), 2);
    for patch in patches {
        assert_eq!(
            patch.body,
            json!({"metadata": {"resourceVersion": "41", "ownerReferences": owner_references()}})
        );
    }
    // Owned (an earlier version owned them always) while the claims are retained: released.
    let mut retaining = managed_statefulset();
    retaining["spec"]["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Retain"});
    for sts in [managed_statefulset(), retaining] {
        let (result, calls, _) = reconcile(sts, existing_secrets(true, true)).await;
        result.unwrap();
        let patches: Vec<(&str, &Value)> = calls
            .iter()
            .filter(|c| c.method == "PATCH" && c.uri.contains("/secrets"))
            .map(|c| (c.uri.split('?').next().unwrap(), &c.body))
            .collect();
        let released = json!({"metadata": {"resourceVersion": "41", "ownerReferences": []}});
        assert_eq!(
            patches,
            [
                ("/api/v1/namespaces/shop/secrets/orders-db-credentials", &released),
                ("/api/v1/namespaces/shop/secrets/orders-db-tls", &released),
            ]
        );
    }
    // Yours (not labelled by the controller): never touched, whatever the policy.
    let (_, calls, _) = reconcile(deleting, existing_secrets(false, false)).await;
    assert!(on_secrets(&calls).iter().all(|(method, _)| *method == "GET"), "{:?}", on_secrets(&calls));
}

#[tokio::test]
async fn a_credentials_secret_of_an_earlier_version_gets_the_exporter_key_and_nothing_else() {
    let old = || secrets_of_version(true, false, &["exporter-password"]);
    let (result, calls, _) = reconcile(managed_statefulset(), old()).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    let patches: Vec<&Call> =
        calls.iter().filter(|c| c.method == "PATCH" && c.uri.contains("/secrets")).collect();
    assert_eq!(patches.len(), 1, "one patch, of the credentials: {patches:?}");
    let patch = patches[0];
    assert!(patch.uri.starts_with("/api/v1/namespaces/shop/secrets/orders-db-credentials?"), "{}", patch.uri);
    // A merge patch naming the new key only (the others are untouched), conditional on the
    // version read: a key added meanwhile by someone else makes it a 409, never an overwrite.
    assert_eq!(patch.body["metadata"], json!({"resourceVersion": "41"}));
    let data = patch.body["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["exporter-password"]);
    use base64::Engine as _;
    let password = base64::engine::general_purpose::STANDARD
        .decode(data["exporter-password"].as_str().unwrap())
        .unwrap();
    assert_eq!(password.len(), 32);
    assert!(password.iter().all(u8::is_ascii_alphanumeric));
    assert_eq!(patch.body.as_object().unwrap().len(), 2, "metadata and data only: {}", patch.body);
    let events: Vec<&Value> = calls.iter().filter(|c| c.uri.contains("/events")).map(|c| &c.body).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "CredentialsCompleted");
    let note = events[0]["note"].as_str().unwrap();
    assert!(
        note.contains("exporter-password added") && !note.contains(std::str::from_utf8(&password).unwrap())
    );

    // With an ownership change due too: one patch carries both.
    let mut deleting = managed_statefulset();
    deleting["spec"]["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Delete"});
    let (_, calls, _) = reconcile(deleting, old()).await;
    let patch = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.uri.contains("/secrets/orders-db-credentials"))
        .expect("the credentials patch");
    assert_eq!(
        patch.body["metadata"],
        json!({"resourceVersion": "41", "ownerReferences": owner_references()})
    );
    assert!(patch.body["data"]["exporter-password"].is_string());

    // Someone changed the Secret since it was read: a conflict, retried soon (and read again).
    let conflicting: Answer = {
        let old = old();
        Box::new(move |call: &Call| {
            if call.method == "PATCH" && call.uri.contains("/secrets/") {
                (409, status(409))
            } else {
                old(call)
            }
        })
    };
    let (result, _, _) = reconcile(managed_statefulset(), conflicting).await;
    let error = result.unwrap_err();
    assert!(error.is_transient(), "{error}");

    // Yours: never touched, even without the key.
    let (_, calls, _) =
        reconcile(managed_statefulset(), secrets_of_version(false, false, &["exporter-password"])).await;
    assert!(on_secrets(&calls).iter().all(|(method, _)| *method == "GET"), "{:?}", on_secrets(&calls));
}

#[tokio::test]
async fn the_network_policy_admits_only_members_and_backup_jobs_to_the_clone_port() {
    let (_, calls, _) = reconcile(managed_statefulset(), empty_cluster()).await;
    let policy = calls
        .iter()
        .find(|c| c.uri.starts_with("/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/orders-db?"))
        .expect("the NetworkPolicy is applied");
    assert!(policy.uri.contains("fieldManager=mysql-webhook.io") && policy.uri.contains("force=true"));
    assert_eq!(policy.body["metadata"]["ownerReferences"], owner_references());
    assert_eq!(policy.body["spec"]["podSelector"], json!({"matchLabels": {"app": "orders-db"}}));
    assert_eq!(
        policy.body["spec"]["ingress"][0],
        json!({
            "from": [
                {"podSelector": {"matchLabels": {"app": "orders-db"}}},
                {"podSelector": {"matchLabels": {"mysql-webhook.io/backup-of": "orders-db"}}}
            ],
            "ports": [{"protocol": "TCP", "port": 3307}]
        })
    );
    assert_eq!(
        policy.body["spec"]["ingress"][1],
        json!({"ports": [
            {"protocol": "TCP", "port": 1, "endPort": 3306},
            {"protocol": "TCP", "port": 3308, "endPort": 65535},
            {"protocol": "UDP"},
            {"protocol": "SCTP"}
        ]}),
        "every other port open from anywhere, as without the policy"
    );
}

#[tokio::test]
async fn a_tls_issuer_gets_a_cert_manager_certificate_instead_of_a_tls_secret() {
    let mut sts = managed_statefulset();
    sts["metadata"]["annotations"]["mysql-webhook.io/tls-issuer"] = json!("ClusterIssuer/corp-ca");
    let (result, calls, _) = reconcile(sts, empty_cluster()).await;
    result.unwrap();
    let certificate = calls
        .iter()
        .find(|c| c.uri.starts_with("/apis/cert-manager.io/v1/namespaces/shop/certificates/orders-db-tls?"))
        .expect("the Certificate is applied");
    assert_eq!(certificate.method, "PATCH");
    assert!(
        certificate.uri.contains("fieldManager=mysql-webhook.io") && certificate.uri.contains("force=true")
    );
    assert_eq!(certificate.body["metadata"]["ownerReferences"], owner_references());
    assert_eq!(certificate.body["spec"]["secretName"], "orders-db-tls");
    assert_eq!(
        certificate.body["spec"]["dnsNames"],
        json!([
            "*.orders-hl",
            "*.orders-hl.shop.svc",
            "*.orders-hl.shop.svc.cluster.local",
            "orders-db-0.orders-hl",
            "orders-db-0.orders-hl.shop.svc",
            "orders-db-0.orders-hl.shop.svc.cluster.local",
            "orders-hl",
            "orders-hl.shop.svc",
            "orders-hl.shop.svc.cluster.local",
            "orders-db-read",
            "orders-db-read.shop.svc",
            "orders-db-read.shop.svc.cluster.local"
        ])
    );
    assert_eq!(
        on_secrets(&calls),
        [
            ("GET", "/api/v1/namespaces/shop/secrets/orders-db-credentials"),
            ("POST", "/api/v1/namespaces/shop/secrets"),
        ],
        "only the credentials: cert-manager makes the TLS Secret"
    );
}

#[tokio::test]
async fn a_server_error_is_transient_and_retried_soon() {
    let answer: Answer = Box::new(|call: &Call| match call.method.as_str() {
        "PATCH" => (500, status(500)),
        "POST" => (201, call.body.clone()),
        _ => (404, not_found()),
    });
    let (result, calls, metrics) = reconcile(managed_statefulset(), answer).await;
    let error = result.unwrap_err();
    assert!(error.is_transient());
    assert_eq!(error.metric_label(), "apply");
    assert!(error.to_string().starts_with("cannot apply ConfigMap orders-db: "), "{error}");
    let sts = Arc::new(serde_json::from_value::<StatefulSet>(managed_statefulset()).unwrap());
    let context = idle_context(metrics.clone());
    assert_eq!(controller::error_policy(sts, &error, context), Action::requeue(Duration::from_secs(15)));
    let event = calls.iter().find(|c| c.uri.contains("/events")).expect("a Warning event");
    assert_eq!(
        (event.body["type"].as_str(), event.body["reason"].as_str()),
        (Some("Warning"), Some("ReconcileRetrying"))
    );
    assert!(
        metrics.encode().contains("mysql_webhook_controller_reconcile_failures_total{reason=\"apply\"} 1")
    );
    assert_eq!(
        writes(&calls),
        [("PATCH", "/api/v1/namespaces/shop/configmaps/orders-db")],
        "stops at the first failure"
    );
}

#[tokio::test]
async fn a_conflict_is_transient_and_a_forbidden_is_permanent() {
    for (code, transient) in [(409, true), (429, true), (503, true), (403, false), (422, false)] {
        let answer: Answer = Box::new(move |call: &Call| match call.method.as_str() {
            "PATCH" => (code, status(code)),
            _ => (201, call.body.clone()),
        });
        let (result, _, metrics) = reconcile(managed_statefulset(), answer).await;
        let error = result.unwrap_err();
        assert_eq!(error.is_transient(), transient, "{code}");
        let sts = Arc::new(serde_json::from_value::<StatefulSet>(managed_statefulset()).unwrap());
        let context = idle_context(metrics);
        let expected =
            if transient { Action::requeue(Duration::from_secs(15)) } else { Action::await_change() };
        assert_eq!(controller::error_policy(sts, &error, context), expected, "{code}");
    }
}

#[tokio::test]
async fn invalid_annotations_are_reported_once_and_wait_for_a_change() {
    let mut sts = managed_statefulset();
    sts["metadata"]["annotations"]["mysql-webhook.io/storage"] = json!("lots");
    let (result, calls, _) = reconcile(sts, empty_cluster()).await;
    let error = result.unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(writes(&calls), Vec::<(&str, &str)>::new(), "nothing applied");
    let event = calls.iter().find(|c| c.uri.contains("/events")).expect("a Warning event");
    assert_eq!(event.body["reason"], "ReconcileFailed");
    assert!(event.body["note"].as_str().unwrap().contains("annotation mysql-webhook.io/storage: \"lots\""));
}

#[tokio::test]
async fn a_statefulset_that_lost_its_annotation_gets_nothing_new() {
    let mut sts = managed_statefulset();
    sts["metadata"]["annotations"] = json!({});
    let (result, calls, _) = reconcile(sts, empty_cluster()).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(calls.is_empty(), "no call at all: {calls:?}");
}

#[tokio::test]
async fn applying_the_same_state_twice_sends_the_same_requests() {
    // Two webhook replicas reconciling at once send identical server-side applies with one
    // field manager: the second is a no-op for the API server, not a fight.
    let (_, first, _) = reconcile(managed_statefulset(), empty_cluster()).await;
    let (_, second, _) = reconcile(managed_statefulset(), empty_cluster()).await;
    let applies = |calls: &[Call]| -> Vec<(String, Value)> {
        calls.iter().filter(|c| c.method == "PATCH").map(|c| (c.uri.clone(), c.body.clone())).collect()
    };
    assert_eq!(applies(&first), applies(&second));
}

#[tokio::test]
async fn a_timeout_is_transient_and_retried_soon() {
    let answer: Answer = Box::new(|_: &Call| (TRANSPORT_FAILURE, Value::Null));
    let (result, _, metrics) = reconcile(managed_statefulset(), answer).await;
    let error = result.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let sts = Arc::new(serde_json::from_value::<StatefulSet>(managed_statefulset()).unwrap());
    assert_eq!(
        controller::error_policy(sts, &error, idle_context(metrics)),
        Action::requeue(Duration::from_secs(15))
    );
}

/// A Job of the backup CronJob of `orders-db`, finished with `status`, maybe reported already.
fn backup_job(name: &str, status: Value, reported: bool) -> k8s_openapi::api::batch::v1::Job {
    let annotations =
        if reported { json!({"mysql-webhook.io/backup-reported": "BackupSucceeded"}) } else { json!({}) };
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "310",
            "labels": {"mysql-webhook.io/backup-of": "orders-db", "app.kubernetes.io/managed-by": "mysql-webhook"},
            "annotations": annotations
        },
        "status": status
    }))
    .unwrap()
}

fn succeeded_at(time: &str) -> Value {
    json!({"completionTime": time, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]})
}

fn failed_at(time: &str) -> Value {
    json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit", "lastTransitionTime": time}]})
}

/// The cluster of the backup Jobs' tests: the StatefulSet exists; a Job patch is answered
/// `job_patch` (200 echoes it).
fn cluster_with_statefulset(job_patch: u16) -> Answer {
    Box::new(move |call: &Call| match call.method.as_str() {
        "GET" if call.uri.starts_with("/apis/apps/v1/namespaces/shop/statefulsets/orders-db") => {
            (200, managed_statefulset())
        }
        "GET" => (404, not_found()),
        "PATCH" if call.uri.contains("/jobs/") && job_patch != 200 => (job_patch, status(job_patch)),
        "POST" => (201, call.body.clone()),
        _ => (200, call.body.clone()),
    })
}

async fn report(jobs: Vec<k8s_openapi::api::batch::v1::Job>, answer: Answer) -> (Vec<Call>, Arc<Metrics>) {
    let (results, calls, metrics) = against_mock(answer, |context| async move {
        let mut results = Vec::new();
        for job in &jobs {
            results.push(controller::report_backup_job(job, &context).await);
        }
        results
    })
    .await;
    for result in results {
        result.unwrap();
    }
    (calls, metrics)
}

fn events(calls: &[Call]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .filter(|c| c.uri.contains("/events"))
        .map(|c| {
            let text = |key: &str| c.body[key].as_str().unwrap_or_default().to_owned();
            (text("type"), text("reason"), text("note"))
        })
        .collect()
}

#[tokio::test]
async fn each_finished_backup_job_is_marked_reported_then_gets_one_event_on_its_statefulset() {
    let jobs = vec![
        backup_job("orders-db-backup-1", succeeded_at("2026-12-02T03:00:41Z"), false),
        backup_job("orders-db-backup-2", failed_at("2026-12-03T03:02:00Z"), false),
    ];
    let (calls, metrics) = report(jobs, cluster_with_statefulset(200)).await;
    let patches: Vec<(&str, &Value)> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.uri.contains("/jobs/"))
        .map(|c| (c.uri.split('?').next().unwrap(), &c.body))
        .collect();
    let mark = |reason| json!({"metadata": {"resourceVersion": "310", "annotations": {"mysql-webhook.io/backup-reported": reason}}});
    assert_eq!(
        patches,
        [
            ("/apis/batch/v1/namespaces/shop/jobs/orders-db-backup-1", &mark("BackupSucceeded")),
            ("/apis/batch/v1/namespaces/shop/jobs/orders-db-backup-2", &mark("BackupFailed")),
        ]
    );
    assert_eq!(
        events(&calls),
        [
            (
                "Normal".into(),
                "BackupSucceeded".into(),
                "backup Job orders-db-backup-1 succeeded at 2026-12-02T03:00:41Z: the backup is published and complete (kubectl logs job/orders-db-backup-1 --all-containers)".into()
            ),
            (
                "Warning".into(),
                "BackupFailed".into(),
                "backup Job orders-db-backup-2 failed at 2026-12-03T03:02:00Z: BackoffLimitExceeded: Job has reached the specified backoff limit; no backup was published by it (kubectl logs job/orders-db-backup-2 --all-containers)".into()
            ),
        ]
    );
    for event in calls.iter().filter(|c| c.uri.contains("/events")) {
        assert_eq!(event.body["regarding"]["kind"], "StatefulSet");
        assert_eq!(event.body["regarding"]["name"], "orders-db");
        assert_eq!(event.body["regarding"]["uid"], OWNER, "kubectl describe finds it");
        assert_eq!(event.body["related"]["kind"], "Job");
    }
    let text = metrics.encode();
    assert!(
        text.contains(
            "mysql_webhook_last_backup_success_timestamp_seconds{namespace=\"shop\",statefulset=\"orders-db\"} 1796180441"
        ),
        "{text}"
    );
    assert!(text.contains(
        "mysql_webhook_backup_jobs_total{namespace=\"shop\",statefulset=\"orders-db\",result=\"failed\"} 1"
    ));
}

#[tokio::test]
async fn a_reported_job_only_moves_the_metric_to_the_newest_success() {
    let jobs = vec![
        backup_job("orders-db-backup-3", succeeded_at("2026-12-04T03:00:10Z"), true),
        backup_job("orders-db-backup-1", succeeded_at("2026-12-02T03:00:41Z"), true),
        backup_job("orders-db-backup-4", json!({"active": 1}), false),
    ];
    let (calls, metrics) = report(jobs, cluster_with_statefulset(200)).await;
    assert!(calls.is_empty(), "no call for reported or running Jobs: {calls:?}");
    let text = metrics.encode();
    assert!(
        text.contains(
            "mysql_webhook_last_backup_success_timestamp_seconds{namespace=\"shop\",statefulset=\"orders-db\"} 1796353210"
        ),
        "the newest of the successes, whatever the order: {text}"
    );
}

#[tokio::test]
async fn a_job_another_controller_reported_meanwhile_gets_no_second_event() {
    let jobs = vec![backup_job("orders-db-backup-1", failed_at("2026-12-03T03:02:00Z"), false)];
    for code in [409, 404] {
        let (calls, metrics) = report(jobs.clone(), cluster_with_statefulset(code)).await;
        assert!(events(&calls).is_empty(), "{code}");
        assert!(!metrics.encode().contains("mysql_webhook_backup_jobs_total{"), "{code}");
    }
}

#[tokio::test]
async fn a_job_of_a_deleted_statefulset_is_left_alone_and_a_server_error_is_retried() {
    let jobs = vec![backup_job("orders-db-backup-1", succeeded_at("2026-12-02T03:00:41Z"), false)];
    let (calls, _) = report(jobs.clone(), empty_cluster()).await;
    assert_eq!(writes(&calls), Vec::<(&str, &str)>::new(), "nothing marked, no Event");
    let (result, _, _) = against_mock(cluster_with_statefulset(500), |context| async move {
        controller::report_backup_job(&jobs[0], &context).await
    })
    .await;
    let error = result.unwrap_err();
    assert!(error.is_transient());
    assert!(error.to_string().starts_with("cannot report backup Job orders-db-backup-1: "), "{error}");
}
