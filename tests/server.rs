//! The webhook over real TLS on real sockets: the server on 127.0.0.1:0 with generated
//! certificates, a real HTTP client that trusts only the generated CA, fixtures shaped like what
//! kube-apiserver sends (`tests/data/`).

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook::certs;
use mysql_webhook::metrics::Metrics;
use mysql_webhook::server::{self, AppState, tls::CertificateStore};
use mysql_webhook_core::consts::{TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use serde_json::{Value, json};

struct Server {
    url: String,
    dir: tempfile::TempDir,
    ca_pem: String,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// The server in this process, its certificate mounted the way the kubelet mounts a Secret.
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let bundle = localhost_pair();
        publish_like_the_kubelet(dir.path(), &bundle.cert_pem, &bundle.key_pem);
        let metrics = Arc::new(Metrics::new());
        let store =
            CertificateStore::open(&dir.path().join(TLS_CERT_FILE), &dir.path().join(TLS_KEY_FILE), &metrics)
                .unwrap();
        let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        server::spawn_reloader(store.clone(), metrics.clone());
        let state = AppState::new(metrics.clone(), common::shared_builtin_policies());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, store, server::router(state), async {
            let _ = stopped.await;
        }));
        Server {
            url: format!("https://127.0.0.1:{}", addr.port()),
            dir,
            ca_pem: bundle.ca_pem,
            metrics,
            _stop: stop,
        }
    }

    fn client(&self) -> reqwest::Client {
        client(&[&self.ca_pem])
    }
}

fn localhost_pair() -> certs::Bundle {
    certs::generate("test", vec!["localhost".into(), "127.0.0.1".into()], 2).unwrap()
}

/// Publishes a certificate and key the way the kubelet updates a Secret volume (and so
/// cert-manager's renewals reach a pod): both files in a new hidden directory, then one rename
/// of the `..data` symlink onto it; `tls.crt` and `tls.key` are symlinks through `..data`.
fn publish_like_the_kubelet(dir: &Path, cert: &str, key: &str) {
    static GENERATION: AtomicUsize = AtomicUsize::new(0);
    let version = format!("..2026_11_24_10_00_00.{}", GENERATION.fetch_add(1, Ordering::Relaxed));
    std::fs::create_dir(dir.join(&version)).unwrap();
    std::fs::write(dir.join(&version).join(TLS_CERT_FILE), cert).unwrap();
    std::fs::write(dir.join(&version).join(TLS_KEY_FILE), key).unwrap();
    std::os::unix::fs::symlink(&version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for name in [TLS_CERT_FILE, TLS_KEY_FILE] {
        if dir.join(name).symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
        }
    }
}

/// A client trusting only the given CAs, offering TLS 1.2 and 1.3 and HTTP/2 and HTTP/1.1, as
/// the API server does.
fn client(cas: &[&str]) -> reqwest::Client {
    client_with(cas, &[&rustls::version::TLS13, &rustls::version::TLS12], None)
}

/// A client trusting only the given CAs, with these TLS versions and, if given, only this HTTP
/// version.
fn client_with(
    cas: &[&str],
    tls: &[&'static rustls::SupportedProtocolVersion],
    http: Option<reqwest::Version>,
) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(tls)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    // A preconfigured TLS config is used as it is: ALPN decides between HTTP/2 and HTTP/1.1.
    config.alpn_protocols = match http {
        Some(reqwest::Version::HTTP_2) => vec![b"h2".to_vec()],
        Some(_) => vec![b"http/1.1".to_vec()],
        None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    let builder = reqwest::Client::builder().tls_backend_preconfigured(config);
    let builder = if http == Some(reqwest::Version::HTTP_11) { builder.http1_only() } else { builder };
    builder.build().unwrap()
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(common::repo_path(&format!("tests/data/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response =
        client.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Sends a review the way the API server does, `?timeout=` included; checks the envelope.
async fn review(server: &Server, endpoint: &str, review: &Value) -> Value {
    let (status, body) =
        post(&server.client(), &format!("{}/{endpoint}?timeout=10s", server.url), review.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], review["request"]["uid"], "the uid comes back");
    answer["response"].clone()
}

fn decoded_patch(response: &Value) -> json_patch::Patch {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn mutate_returns_a_patch_that_reproduces_the_engines_expansion() {
    let server = Server::start().await;
    let request = fixture("create-annotated");
    let response = review(&server, "mutate", &request).await;
    assert_eq!(response["allowed"], true);
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &decoded_patch(&response)).unwrap();
    let expected = mysql_webhook_core::mutate(
        &request["request"]["object"],
        mysql_webhook_core::Operation::Create,
        Some("shop"),
    )
    .unwrap()
    .unwrap()
    .expanded;
    assert_eq!(serde_json::from_value::<StatefulSet>(object).unwrap(), expected);
    let warnings: Vec<&str> =
        response["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(
        warnings,
        [
            "spec.serviceName set to \"mysql\" (the headless Service)",
            "flavor mysql-8.4 derived from image \"mysql:8.4\"",
            "storage 10Gi per member"
        ]
    );
}

#[tokio::test]
async fn a_dry_run_gets_the_same_answer_as_a_real_request() {
    let server = Server::start().await;
    let real = review(&server, "mutate", &fixture("create-annotated")).await;
    let dry = review(&server, "mutate", &fixture("create-annotated-dry-run")).await;
    assert_eq!(decoded_patch(&real), decoded_patch(&dry));
}

#[tokio::test]
async fn objects_that_are_not_opted_in_pass_without_a_patch() {
    let server = Server::start().await;
    for name in ["create-unannotated", "create-configmap", "update-scale"] {
        let response = review(&server, "mutate", &fixture(name)).await;
        assert_eq!(response["allowed"], true, "{name}");
        assert!(response.get("patch").is_none(), "{name}");
    }
}

#[tokio::test]
async fn an_invalid_annotation_is_denied_with_the_engines_message() {
    let server = Server::start().await;
    let response = review(&server, "mutate", &fixture("create-invalid-storage")).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(
        response["status"]["message"],
        "annotation mysql-webhook.io/storage: \"ten gigs\" is not a Kubernetes quantity; use a size such as 10Gi, 500Mi or 1Ti"
    );
}

#[tokio::test]
async fn reinvocation_on_an_expanded_object_yields_no_patch() {
    let server = Server::start().await;
    let response = review(&server, "mutate", &fixture("create-reinvocation")).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn an_update_of_replicas_and_image_never_patches_immutable_fields() {
    let server = Server::start().await;
    let request = fixture("update-replicas-and-image");
    let response = review(&server, "mutate", &request).await;
    let patch = decoded_patch(&response);
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(paths, ["/spec/template/spec/initContainers/0/image"], "init-mysql follows the new image");
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap();
    assert_eq!(object["spec"]["template"]["spec"]["initContainers"][0]["image"], "mysql:8.4.4");
}

#[tokio::test]
async fn validate_allows_the_default_expansion_under_the_builtin_policies() {
    let server = Server::start().await;
    let response = review(&server, "validate", &fixture("create-annotated")).await;
    assert_eq!(response["allowed"], true, "{response}");
    let metrics =
        server.client().get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    for policy in mysql_webhook::policy::builtin::NAMES {
        let counted =
            format!("mysql_webhook_policy_evaluations_total{{policy=\"{policy}\",outcome=\"allowed\"}} 1");
        assert!(metrics.contains(&counted), "{counted} in {metrics}");
        assert!(metrics.contains(&format!(
            "mysql_webhook_policy_evaluation_duration_seconds_count{{policy=\"{policy}\"}} 1"
        )));
    }
}

#[tokio::test]
async fn validate_denies_with_every_deny_prefixed_by_its_policy() {
    let server = Server::start().await;
    let mut even = fixture("create-annotated");
    even["request"]["object"]["spec"]["replicas"] = json!(4);
    let response = review(&server, "validate", &even).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("replica-quorum: "), "{message}");
    assert!(message.contains('4'), "the message names the count: {message}");
}

/// An idle server splits a review's policies between two workers (replica-quorum in the first
/// part, images in the second): the answer still names every denying policy, in the set's order.
#[tokio::test]
async fn validate_names_the_denials_of_every_policy_in_the_sets_order() {
    let server = Server::start().await;
    let mut review_of = fixture("create-annotated");
    let object = &mut review_of["request"]["object"];
    object["spec"]["replicas"] = json!(4);
    object["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "debug", "image": "busybox"}));
    for _ in 0..3 {
        let response = review(&server, "validate", &review_of).await;
        assert_eq!(response["status"]["code"], 403, "{response}");
        let message = response["status"]["message"].as_str().unwrap();
        let quorum = message.find("replica-quorum: ").unwrap_or_else(|| panic!("{message}"));
        let images = message.find("; images: ").unwrap_or_else(|| panic!("{message}"));
        assert!(quorum < images, "{message}");
    }
    let metrics =
        server.client().get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    for policy in mysql_webhook::policy::builtin::NAMES {
        let counted =
            format!("mysql_webhook_policy_evaluation_duration_seconds_count{{policy=\"{policy}\"}} 3");
        assert!(metrics.contains(&counted), "every policy ran once per review: {counted} in {metrics}");
    }
}

#[tokio::test]
async fn validate_allows_a_scale_with_a_warning_when_there_is_no_cluster() {
    let server = Server::start().await;
    let response = review(&server, "validate", &fixture("update-scale")).await;
    assert_eq!(response["allowed"], true);
    assert!(response["warnings"][0].as_str().unwrap().contains("no cluster connection"), "{response}");
}

#[tokio::test]
async fn validate_lets_unannotated_statefulsets_through_without_running_policies() {
    let server = Server::start().await;
    let response = review(&server, "validate", &fixture("create-unannotated")).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none(), "{response}");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_message_and_the_server_keeps_serving() {
    let server = Server::start().await;
    let client = server.client();
    let good = fixture("create-annotated");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut review = good.clone();
        edit(&mut review);
        review.to_string().into_bytes()
    };
    let without = |pointer: &'static str, field: &'static str| {
        with(&move |r| {
            r.pointer_mut(pointer).unwrap().as_object_mut().unwrap().remove(field);
        })
    };
    let deep = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"1","operation":"CREATE","requestKind":{{"group":"apps","version":"v1","kind":"StatefulSet"}},"object":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    )
    .into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed JSON",
            b"{\"apiVersion\": ".to_vec(),
            "the body is not an AdmissionReview: EOF while parsing",
        ),
        ("not UTF-8", vec![0xff, 0xfe, b'{'], "the body is not an AdmissionReview: expected value"),
        (
            "not UTF-8 inside a string",
            b"{\"apiVersion\": \"\xff\"}".to_vec(),
            "the body is not an AdmissionReview: invalid unicode code point",
        ),
        // The object is decoded as the StatefulSet the request names, and refused as one.
        ("deep nesting", deep, "request.object is not a valid apps/v1 StatefulSet: invalid type: sequence"),
        ("an empty body", Vec::new(), "the body is not an AdmissionReview: EOF while parsing"),
        (
            "wrong apiVersion",
            with(&|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            "apiVersion must be admission.k8s.io/v1, not Some(\"admission.k8s.io/v1beta1\")",
        ),
        (
            "wrong kind",
            with(&|r| r["kind"] = json!("TokenReview")),
            "kind must be AdmissionReview, not Some(\"TokenReview\")",
        ),
        ("no request", without("", "request"), "the AdmissionReview has no request"),
        ("no uid", without("/request", "uid"), "request.uid is missing"),
        ("no operation", without("/request", "operation"), "request.operation is missing"),
        ("no object", without("/request", "object"), "request.object is missing"),
        (
            "an UPDATE without its oldObject",
            with(&|r| {
                r["request"]["operation"] = json!("UPDATE");
                r["request"].as_object_mut().unwrap().remove("oldObject");
            }),
            "request.oldObject is missing",
        ),
        (
            "a request of the wrong shape",
            with(&|r| r["request"] = json!("a string")),
            "the body is not an AdmissionReview: invalid type: string \"a string\", expected struct Request",
        ),
        (
            "a StatefulSet of the wrong shape",
            with(&|r| r["request"]["object"]["spec"]["replicas"] = json!("three")),
            "request.object is not a valid apps/v1 StatefulSet: invalid type: string \"three\"",
        ),
    ];
    let invalid = cases.len() + 1; // and the body over the limit, below
    for (what, body, message) in cases {
        let (got, text) = post(&client, &format!("{}/mutate", server.url), body).await;
        assert_eq!(got, 400, "{what}: {text}");
        assert!(text.starts_with(message), "{what}: {text:?} should start with {message:?}");
        let after = review(&server, "mutate", &good).await;
        assert_eq!(after["allowed"], true, "the server keeps serving after {what}");
    }

    let too_large = vec![b' '; server::BODY_LIMIT + 1];
    let (got, text) = post(&client, &format!("{}/mutate", server.url), too_large).await;
    assert_eq!((got, text.trim_end()), (413, "the body is larger than the limit of 4194304 bytes"));

    let wrong_method = client.get(format!("{}/mutate", server.url)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.text().await.unwrap(), "method not allowed on this endpoint\n");
    let wrong_path = client.post(format!("{}/admit", server.url)).body("{}").send().await.unwrap();
    assert_eq!(wrong_path.status(), 404);
    assert!(wrong_path.text().await.unwrap().starts_with("no such endpoint"));

    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    let counted = format!(
        "mysql_webhook_admission_requests_total{{endpoint=\"mutate\",outcome=\"invalid\"}} {invalid}"
    );
    assert!(metrics.contains(&counted), "{counted} in\n{metrics}");
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_server_keeps_serving() {
    let server = Server::start().await;
    let stalled = futures_util::stream::once(async { Ok::<_, std::io::Error>(b"{\"apiVersion\":".to_vec()) })
        .chain(futures_util::stream::pending());
    let (status, text) =
        post(&server.client(), &format!("{}/mutate", server.url), reqwest::Body::wrap_stream(stalled)).await;
    assert_eq!((status, text.trim_end()), (408, "the body did not arrive within 10s"));
    let response = review(&server, "mutate", &fixture("create-annotated")).await;
    assert_eq!(response["allowed"], true);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_with_the_certificate_expiry_and_build() {
    let server = Server::start().await;
    let client = server.client();
    let get = |path: &str| client.get(format!("{}{path}", server.url)).send();
    let healthz = get("/healthz").await.unwrap();
    assert_eq!((healthz.status().as_u16(), healthz.text().await.unwrap()), (200, "ok\n".into()));
    let readyz = get("/readyz").await.unwrap();
    assert_eq!((readyz.status().as_u16(), readyz.text().await.unwrap()), (200, "ready\n".into()));

    review(&server, "mutate", &fixture("create-annotated")).await;
    let metrics = get("/metrics").await.unwrap();
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let metrics = metrics.text().await.unwrap();
    let pem = std::fs::read(server.dir.path().join(TLS_CERT_FILE)).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let not_after = pem.parse_x509().unwrap().validity().not_after.timestamp();
    for line in [
        format!("mysql_webhook_certificate_expiry_timestamp_seconds {not_after}"),
        "mysql_webhook_admission_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 1".into(),
        "mysql_webhook_admission_duration_seconds_count{endpoint=\"mutate\"} 1".into(),
        "mysql_webhook_admission_in_flight 0".into(),
        format!("mysql_webhook_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn serves_tls_1_2_and_1_3_over_http_1_1_and_http_2() {
    let server = Server::start().await;
    let request = fixture("create-annotated").to_string();
    for tls in [&rustls::version::TLS12, &rustls::version::TLS13] {
        for http in [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2] {
            let client = client_with(&[&server.ca_pem], &[tls], Some(http));
            let response = client.post(format!("{}/mutate", server.url)).body(request.clone()).send().await;
            let response = response.unwrap_or_else(|e| panic!("{tls:?} {http:?}: {e:?}"));
            assert_eq!((response.status().as_u16(), response.version()), (200, http), "{tls:?}");
        }
    }
}

async fn wait_for_metric(metrics: &Metrics, line: &str) {
    for _ in 0..200 {
        if metrics.encode().lines().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("metric {line:?} never appeared:\n{}", metrics.encode());
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_failing_a_request_and_a_broken_one_is_refused() {
    let server = Server::start().await;
    let rotated = localhost_pair();
    let url = format!("{}/mutate", server.url);
    let body = fixture("create-annotated").to_string();

    // Traffic until the end of the test, on fresh connections (a handshake each time) and on a
    // kept-alive one, trusting both CAs.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let traffic = {
        let (url, body, cas) = (url.clone(), body.clone(), [server.ca_pem.clone(), rotated.ca_pem.clone()]);
        tokio::spawn(async move {
            let kept_alive = client(&[&cas[0], &cas[1]]);
            let (mut sent, mut failures) = (0, Vec::new());
            while !*stopped.borrow() {
                let fresh = client(&[&cas[0], &cas[1]]);
                for (kind, client) in [("fresh", &fresh), ("kept-alive", &kept_alive)] {
                    let (status, text) = post(client, &url, body.clone()).await;
                    sent += 1;
                    if status != 200 {
                        failures.push(format!("{kind} request {sent}: {status} {text}"));
                    }
                }
            }
            (sent, failures)
        })
    };

    publish_like_the_kubelet(server.dir.path(), &rotated.cert_pem, &rotated.key_pem);
    wait_for_metric(&server.metrics, "mysql_webhook_certificate_reloads_total{result=\"success\"} 1").await;
    // Only the new CA is needed now: new handshakes present the new pair.
    let (status, _) = post(&client(&[&rotated.ca_pem]), &url, body.clone()).await;
    assert_eq!(status, 200);

    publish_like_the_kubelet(server.dir.path(), &rotated.cert_pem, "not a key");
    wait_for_metric(&server.metrics, "mysql_webhook_certificate_reloads_total{result=\"failure\"} 1").await;
    let (status, _) = post(&client(&[&rotated.ca_pem]), &url, body).await;
    assert_eq!(status, 200, "the previous pair keeps serving");

    stop.send(true).unwrap();
    let (sent, failures) = traffic.await.unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(sent >= 2, "traffic ran through both changes");
}

#[test]
fn certs_writes_the_files_prints_the_ca_bundle_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("webhook-certs");
    let args =
        ["certs", "--service", "mysql-webhook", "--namespace", "infra", "--out", out.to_str().unwrap()];
    let first = common::run_cli(&args, "");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let ca = std::fs::read(out.join("ca.crt")).unwrap();
    let printed = String::from_utf8(first.stdout).unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(printed.trim()).unwrap(), ca);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(out.join("tls.key")).unwrap().permissions().mode() & 0o777, 0o600);

    let again = common::run_cli(&args, "");
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr).trim_end(),
        format!("error: {} already exists; pass --force to overwrite it", out.join("ca.crt").display())
    );
    assert_eq!(std::fs::read(out.join("ca.crt")).unwrap(), ca, "nothing was overwritten");
    let mut forced: Vec<&str> = args.to_vec();
    forced.push("--force");
    assert!(common::run_cli(&forced, "").status.success());
    assert_ne!(std::fs::read(out.join("ca.crt")).unwrap(), ca);
}

#[test]
fn certs_renew_keeps_the_ca_bundle_and_ip_addresses_go_through_ip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("webhook-certs");
    let args = [
        "certs",
        "--service",
        "hook",
        "--namespace",
        "infra",
        "--ip",
        "127.0.0.1",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = common::run_cli(&args, "");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(out.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let (ca, cert) =
        (std::fs::read(out.join("ca.crt")).unwrap(), std::fs::read(out.join("tls.crt")).unwrap());

    let mut renew = args.to_vec();
    renew.push("--renew");
    let renewed = common::run_cli(&renew, "");
    assert!(renewed.status.success(), "{}", String::from_utf8_lossy(&renewed.stderr));
    assert_eq!(renewed.stdout, first.stdout, "the caBundle printed is the same");
    assert_eq!(std::fs::read(out.join("ca.crt")).unwrap(), ca);
    assert_ne!(std::fs::read(out.join("tls.crt")).unwrap(), cert);

    let address_as_service = common::run_cli(
        &["certs", "--service", "127.0.0.1", "--namespace", "infra", "--out", out.to_str().unwrap()],
        "",
    );
    assert_eq!(address_as_service.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&address_as_service.stderr).contains("add IP addresses with --ip"));
}

/// The binary as a child process with JSON logs, collected as they come; killed on drop.
struct ServerProcess {
    child: std::process::Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// `mysql-webhook serve --addr 127.0.0.1:0 --no-controller --log-format json ARGS`, run in
    /// `dir`; returns once the server has logged the address it listens on.
    async fn start(args: &[OsString], dir: &Path) -> ServerProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
            .args(["serve", "--addr", "127.0.0.1:0", "--no-controller", "--log-format", "json"])
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (listening, addr) = tokio::sync::oneshot::channel::<SocketAddr>();
        let reader = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                let mut listening = Some(listening);
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    let line = serde_json::from_str(&line).unwrap_or(Value::String(line));
                    if line["message"] == "serving the admission webhook"
                        && let Some(listening) = listening.take()
                    {
                        let _ = listening.send(line["addr"].as_str().unwrap().parse().unwrap());
                    }
                    logs.lock().unwrap().push(line);
                }
            })
        };
        let addr = tokio::time::timeout(Duration::from_secs(60), addr).await;
        let addr = addr.expect("the server starts").unwrap_or_else(|_| {
            panic!("the server never said where it listens: {:#?}", logs.lock().unwrap())
        });
        ServerProcess { child, addr, logs, reader: Some(reader) }
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    async fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Every log line, once the process has exited (the reader stops at the end of stderr).
    fn logs_after_exit(&mut self) -> Vec<Value> {
        self.reader.take().unwrap().join().unwrap();
        self.logs.lock().unwrap().clone()
    }
}

/// A pair for 127.0.0.1 in `dir`, and the `serve` arguments naming it.
fn pair_in(dir: &Path) -> (certs::Bundle, Vec<OsString>) {
    let bundle = localhost_pair();
    certs::write(&bundle, dir, false).unwrap();
    let args = vec![
        "--tls-cert".into(),
        dir.join(TLS_CERT_FILE).into(),
        "--tls-key".into(),
        dir.join(TLS_KEY_FILE).into(),
    ];
    (bundle, args)
}

#[tokio::test]
async fn sigterm_stops_accepting_then_drains_requests_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, args) = pair_in(dir.path());
    let mut server = ServerProcess::start(&args, dir.path()).await;
    let base = format!("https://{}", server.addr);

    // Five requests, over HTTP/1.1 and HTTP/2, whose bodies are held back until SIGTERM has
    // closed the listener.
    let (release, released) = tokio::sync::watch::channel(false);
    let body = fixture("create-annotated").to_string().into_bytes();
    let mut in_flight = Vec::new();
    for http in [
        reqwest::Version::HTTP_11,
        reqwest::Version::HTTP_11,
        reqwest::Version::HTTP_2,
        reqwest::Version::HTTP_2,
        reqwest::Version::HTTP_2,
    ] {
        let (head, tail) = (body[..20].to_vec(), body[20..].to_vec());
        let mut released = released.clone();
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(head)]).chain(
            futures_util::stream::once(async move {
                released.wait_for(|released| *released).await.unwrap();
                Ok(tail)
            }),
        );
        let client = client_with(&[&bundle.ca_pem], &[&rustls::version::TLS13], Some(http));
        let url = format!("{base}/mutate");
        in_flight
            .push(tokio::spawn(async move { post(&client, &url, reqwest::Body::wrap_stream(stream)).await }));
    }
    let metrics = client(&[&bundle.ca_pem]);
    let mut started = false;
    for _ in 0..200 {
        let text = metrics.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        if text.lines().any(|line| line == "mysql_webhook_admission_in_flight 5") {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "the five requests reach the server");

    server.terminate();
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(server.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "after SIGTERM new connections are refused");

    release.send(true).unwrap();
    for request in in_flight {
        let (status, text) = request.await.unwrap();
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "the drained request was answered in full");
    }
    assert_eq!(server.exit_code().await, Some(0), "the server exits 0 after draining");
}

#[tokio::test]
async fn json_logs_carry_the_request_uid_on_every_line_about_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, args) = pair_in(dir.path());
    let mut server = ServerProcess::start(&args, dir.path()).await;
    let client = client(&[&bundle.ca_pem]);
    for name in ["create-annotated", "create-invalid-storage"] {
        let review = fixture(name);
        let (status, _) = post(&client, &format!("https://{}/mutate", server.addr), review.to_string()).await;
        assert_eq!(status, 200);
    }
    server.terminate();
    assert_eq!(server.exit_code().await, Some(0));
    let lines = server.logs_after_exit();
    assert!(lines.iter().all(Value::is_object), "every line is JSON: {lines:#?}");
    let about_requests: Vec<&Value> = lines.iter().filter(|line| line["message"] == "answered").collect();
    let uids: Vec<&str> = about_requests.iter().map(|line| line["span"]["uid"].as_str().unwrap()).collect();
    assert_eq!(uids, ["705ab4f5-6393-11e8-b7cc-42010a800002", "705ab4f5-6393-11e8-b7cc-42010a800005"]);
    assert_eq!(about_requests[1]["outcome"], "denied");
    assert!(
        about_requests[1]["reason"].as_str().unwrap().starts_with("annotation mysql-webhook.io/storage: "),
        "a denial says why: {:#?}",
        about_requests[1]
    );
}

#[tokio::test]
async fn dev_mode_makes_a_ca_says_where_it_is_and_serves_localhost_and_127_0_0_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap(); // as in the repository
    let server = ServerProcess::start(&["--dev".into()], dir.path()).await;
    let said = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| line["ca"].as_str().map(str::to_owned))
        .expect("the server says where the CA is");
    assert_eq!(said, format!("certs/dev/{TLS_CA_FILE}"));
    let ca = std::fs::read_to_string(dir.path().join(&said)).unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/readyz", server.addr.port());
        let response = client(&[&ca]).get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
}

/// `mysql-webhook serve ARGS` with `env`, on a port nothing listens on; its exit code and stderr
/// (for the runs that stop before serving).
fn serve_once(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
        .args(["serve", "--addr", "127.0.0.1:0", "--no-controller"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn serve_wants_exactly_one_certificate_source_and_reads_false_from_the_environment_as_off() {
    let (code, stderr) = serve_once(&[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("give --tls-cert and --tls-key, or --dev for a development certificate"),
        "{stderr}"
    );

    let (code, stderr) = serve_once(&[], &[("MYSQL_WEBHOOK_DEV", "false")]);
    assert_eq!(code, Some(2), "MYSQL_WEBHOOK_DEV=false is not --dev: {stderr}");

    let files = ["--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"];
    let (code, stderr) = serve_once(&files, &[("MYSQL_WEBHOOK_DEV", "false")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot read /nonexistent/tls.crt"), "the files are used: {stderr}");

    let (code, stderr) = serve_once(&files, &[("MYSQL_WEBHOOK_DEV", "true")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--dev makes its own certificate"), "{stderr}");
}

/// A policies.yaml in `dir` running the hostile test policy with `fields` (YAML, indented).
fn hostile_policies(dir: &Path, fields: &str) -> std::path::PathBuf {
    let module = common::hostile_policy();
    common::write_policies(
        dir,
        &format!("policies:\n- name: hostile\n  module: {}\n  {fields}\n", module.display()),
    )
}

/// `serve` with its certificate and `policies`, sharing the tests' compile cache.
async fn serve_with_policies(dir: &Path, policies: &Path) -> (ServerProcess, certs::Bundle) {
    let (bundle, mut args) = pair_in(dir);
    args.extend([
        "--policies".into(),
        policies.into(),
        "--policy-cache".into(),
        common::policy_cache().into(),
    ]);
    (ServerProcess::start(&args, dir).await, bundle)
}

async fn validate_answer(client: &reqwest::Client, addr: SocketAddr) -> Value {
    let url = format!("https://{addr}/validate");
    let (status, body) = post(client, &url, fixture("create-annotated").to_string()).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["response"].clone()
}

#[tokio::test]
async fn a_changed_policy_file_is_served_within_seconds_and_a_broken_one_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let policies = hostile_policies(dir.path(), "settings: {validate: allow}");
    let (mut server, bundle) = serve_with_policies(dir.path(), &policies).await;
    let client = client(&[&bundle.ca_pem]);
    assert_eq!(validate_answer(&client, server.addr).await["allowed"], true);

    hostile_policies(dir.path(), "settings: {validate: deny}");
    let changed = Instant::now();
    let mut answer = validate_answer(&client, server.addr).await;
    while answer["allowed"] == true && changed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = validate_answer(&client, server.addr).await;
    }
    assert_eq!(answer["status"]["message"], "hostile: hostile says no", "reloaded within 10 s: {answer}");
    eprintln!("the new set served {} ms after the file changed", changed.elapsed().as_millis());

    std::fs::write(&policies, "policies: [").unwrap();
    let broken = Instant::now();
    let metrics_url = format!("https://{}/metrics", server.addr);
    loop {
        let text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        if text.contains("mysql_webhook_policy_reloads_total{result=\"failure\"} 1") {
            break;
        }
        assert!(broken.elapsed() < Duration::from_secs(10), "the broken set is refused within 10 s: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(validate_answer(&client, server.addr).await["status"]["message"], "hostile: hostile says no");
    server.terminate();
    assert_eq!(server.exit_code().await, Some(0));
    let logs = server.logs_after_exit();
    let refused =
        logs.iter().find(|line| line["message"] == "new policy set refused; the last good set keeps serving");
    let error = refused.expect("the refusal is logged")["error"].as_str().unwrap().to_owned();
    assert!(error.contains("policies.yaml: not a policy configuration"), "{error}");
}

#[tokio::test]
async fn a_looping_policy_is_contained_while_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let policies = hostile_policies(dir.path(), "timeout: 50ms\n  settings: {validate: loop}");
    let (server, bundle) = serve_with_policies(dir.path(), &policies).await;
    let client = client(&[&bundle.ca_pem]);
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (client, addr) = (client.clone(), server.addr);
            tokio::spawn(async move { validate_answer(&client, addr).await })
        })
        .collect();
    let health = Instant::now();
    let response = client.get(format!("https://{}/healthz", server.addr)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(health.elapsed() < Duration::from_secs(1), "the probes never wait for a policy");
    for answer in loops {
        let answer = answer.await.unwrap();
        assert_eq!(answer["allowed"], false);
        assert_eq!(
            answer["status"]["message"],
            "hostile: policy failed: did not finish within its timeout of 50ms"
        );
    }
}

#[test]
fn serve_refuses_to_start_with_a_bad_policy_set_and_names_the_policy_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::write_policies(
        dir.path(),
        "policies:\n- {name: quorum, module: builtin:replica-quorum, settings: {min: 5, max: 3}}\n",
    );
    let cache = common::policy_cache();
    let args = ["--dev", "--policies", policies.to_str().unwrap(), "--policy-cache", cache.to_str().unwrap()];
    let (code, stderr) = serve_once(&args, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the policies can't be loaded: policy quorum: settings refused: settings: min (5) is greater than max (3)"),
        "{stderr}"
    );
}

/// Peak resident memory of a process, from /proc (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A TLS connection to `addr` trusting `ca`, speaking HTTP/1.1, for clients that misbehave.
async fn raw_tls(addr: SocketAddr, ca: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = common::tls_trusting(ca.as_bytes());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

/// The server under every kind of overload at once: a flood of 4 MiB reviews, hundreds of idle
/// connections (with and without a TLS handshake), a client that sends reviews and never reads
/// the answers. `/healthz` answers throughout, every review gets an answer (the review's, or a
/// 503 that names the limit), and the process stays within the memory bound that fits the
/// Deployment's 256 MiB limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_overload_health_answers_every_review_is_answered_and_memory_stays_bounded() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (bundle, args) = pair_in(dir.path());
    let server = ServerProcess::start(&args, dir.path()).await;
    let base = format!("https://{}", server.addr);
    let health = client(&[&bundle.ca_pem]);

    // Idle connections: TCP only, and TLS without a request.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let mut idle_tls = Vec::new();
    for _ in 0..50 {
        idle_tls.push(raw_tls(server.addr, &bundle.ca_pem).await);
    }

    // A slow reader: 200 pipelined reviews on one connection, answers never read.
    let review = fixture("create-annotated").to_string();
    let mut slow = raw_tls(server.addr, &bundle.ca_pem).await;
    let request = format!(
        "POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{review}",
        review.len()
    );
    for _ in 0..200 {
        if slow.write_all(request.as_bytes()).await.is_err() {
            break;
        }
    }

    // The flood: 48 reviews of 4 MiB at once, each on its own connection.
    let mut big = fixture("create-annotated");
    let filler = "x".repeat(4 * 1024 * 1024 - review.len() - 200);
    big["request"]["object"]["metadata"]["annotations"]["example.com/filler"] = json!(filler);
    let big = big.to_string();
    assert!(big.len() <= server::BODY_LIMIT, "{} bytes", big.len());
    let flood = client_with(&[&bundle.ca_pem], &[&rustls::version::TLS13], Some(reqwest::Version::HTTP_11));
    let sends = (0..48).map(|_| {
        let (flood, url, body) = (flood.clone(), format!("{base}/mutate"), big.clone());
        tokio::spawn(async move {
            let response = flood.post(url).header("content-type", "application/json").body(body).send().await;
            let response = response.expect("every review gets an answer, not a dropped connection");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    });
    let sends: Vec<_> = sends.collect();

    // Health throughout.
    for _ in 0..20 {
        let response = health.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for send in sends {
        let (status, body) = send.await.unwrap();
        if status == 503 {
            assert!(body.contains("bytes of reviews in flight; retry"), "{body}");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(statuses.keys().all(|status| [200, 503].contains(status)), "{statuses:?}");
    assert!(statuses.contains_key(&200), "some big reviews are served: {statuses:?}");
    assert!(statuses.contains_key(&503), "the budget refuses the rest at once: {statuses:?}");
    assert_eq!(health.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let peak = peak_memory(server.child.id());
    eprintln!("answers by status: {statuses:?}; peak resident memory: {} MiB", peak >> 20);
    assert!(
        peak < 192 << 20,
        "peak resident memory {} MiB, over the bound kept under the 256 MiB limit",
        peak >> 20
    );
    drop((idle, idle_tls, slow));
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_read() {
    let server = Server::start().await;
    let response = server
        .client()
        .post(format!("{}/validate", server.url))
        .header("content-length", (server::BODY_LIMIT + 1).to_string())
        .body(vec![b' '; server::BODY_LIMIT + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}
