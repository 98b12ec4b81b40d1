//! The webhook over real TLS on real sockets: the server on 127.0.0.1:0 with generated
//! certificates, a real HTTP client that trusts only the generated CA, fixtures shaped like what
//! kube-apiserver sends (`tests/data/`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook::certs;
use mysql_webhook::metrics::Metrics;
use mysql_webhook::server::{self, AppState, tls::CertificateStore};
use serde_json::{Value, json};

struct Server {
    url: String,
    dir: tempfile::TempDir,
    ca_pem: String,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let bundle = certs::generate("test", vec!["localhost".into(), "127.0.0.1".into()], 2).unwrap();
        certs::write(&bundle, dir.path(), false).unwrap();
        let metrics = Arc::new(Metrics::new());
        let store =
            CertificateStore::open(&dir.path().join("tls.crt"), &dir.path().join("tls.key"), &metrics)
                .unwrap();
        let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        server::spawn_reloader(store.clone(), metrics.clone());
        let state = AppState { metrics: metrics.clone(), ready: Arc::new(AtomicBool::new(true)) };
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

/// A client trusting only the given CAs.
fn client(cas: &[&str]) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap()
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

async fn review(server: &Server, endpoint: &str, review: &Value) -> Value {
    let (status, body) =
        post(&server.client(), &format!("{}/{endpoint}", server.url), review.to_string()).await;
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
    let expected =
        mysql_webhook::mutate(&request["request"]["object"], mysql_webhook::Operation::Create, Some("shop"))
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
async fn validate_allows_while_no_policies_are_loaded() {
    let server = Server::start().await;
    for name in ["create-annotated", "update-scale"] {
        let response = review(&server, "validate", &fixture(name)).await;
        assert_eq!(response["allowed"], true, "{name}");
    }
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
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"apiVersion\": ".to_vec(),
            400,
            "the body is not an AdmissionReview: EOF while parsing",
        ),
        ("not UTF-8", vec![0xff, 0xfe, b'{'], 400, "the body is not an AdmissionReview: expected value"),
        ("deep nesting", deep, 400, "the body is not an AdmissionReview: "),
        (
            "wrong apiVersion",
            with(&|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            400,
            "apiVersion must be admission.k8s.io/v1, not Some(\"admission.k8s.io/v1beta1\")",
        ),
        (
            "wrong kind",
            with(&|r| r["kind"] = json!("TokenReview")),
            400,
            "kind must be AdmissionReview, not Some(\"TokenReview\")",
        ),
        (
            "no request",
            with(&|r| {
                r.as_object_mut().unwrap().remove("request");
            }),
            400,
            "the AdmissionReview has no request",
        ),
        (
            "no uid",
            with(&|r| {
                r["request"].as_object_mut().unwrap().remove("uid");
            }),
            400,
            "request.uid is missing",
        ),
        (
            "no object",
            with(&|r| {
                r["request"].as_object_mut().unwrap().remove("object");
            }),
            400,
            "request.object is missing",
        ),
        (
            "request of the wrong shape",
            with(&|r| r["request"] = json!("a string")),
            400,
            "the body is not an AdmissionReview: invalid type: string \"a string\", expected struct Request",
        ),
    ];
    for (what, body, status, message) in cases {
        let (got, text) = post(&client, &format!("{}/mutate", server.url), body).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.starts_with(message), "{what}: {text:?} should start with {message:?}");
        assert_eq!(
            client.get(format!("{}/healthz", server.url)).send().await.unwrap().status(),
            200,
            "after {what}"
        );
    }

    // An object of the wrong shape inside a valid review: denied in the review, with a 400 code.
    let response = review(
        &server,
        "mutate",
        &serde_json::from_slice(&with(&|r| r["request"]["object"]["spec"]["replicas"] = json!("three")))
            .unwrap(),
    )
    .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("request.object is not a valid apps/v1 StatefulSet: invalid type: string \"three\"")
    );

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
    assert!(
        metrics
            .contains("mysql_webhook_admission_requests_total{endpoint=\"mutate\",outcome=\"Invalid\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mysql_webhook_admission_requests_total{endpoint=\"mutate\",outcome=\"Denied\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("mysql_webhook_build_info{version=\""));
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_server_keeps_serving() {
    let server = Server::start().await;
    let stalled = futures_util::stream::once(async { Ok::<_, std::io::Error>(b"{\"apiVersion\":".to_vec()) })
        .chain(futures_util::stream::pending());
    use futures_util::StreamExt as _;
    let (status, text) =
        post(&server.client(), &format!("{}/mutate", server.url), reqwest::Body::wrap_stream(stalled)).await;
    assert_eq!((status, text.trim_end()), (408, "the body did not arrive within 10s"));
    let response = review(&server, "mutate", &fixture("create-annotated")).await;
    assert_eq!(response["allowed"], true);
}

fn write_pair(dir: &Path, bundle: &certs::Bundle) {
    certs::write(bundle, dir, true).unwrap();
}

async fn wait_for_metric(metrics: &Metrics, line: &str) {
    for _ in 0..100 {
        if metrics.encode().contains(line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metric {line:?} never appeared:\n{}", metrics.encode());
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_failing_a_request_and_a_broken_one_is_refused() {
    let server = Server::start().await;
    let rotated = certs::generate("test", vec!["localhost".into(), "127.0.0.1".into()], 3).unwrap();
    let url = format!("{}/mutate", server.url);
    let body = fixture("create-annotated").to_string();

    // Traffic through the rotation, on fresh connections (a new handshake each time) and on a
    // kept-alive one.
    let traffic = {
        let (url, body, cas) = (url.clone(), body.clone(), [server.ca_pem.clone(), rotated.ca_pem.clone()]);
        tokio::spawn(async move {
            let kept_alive = client(&[&cas[0], &cas[1]]);
            let mut failures = Vec::new();
            for i in 0..40 {
                let fresh = client(&[&cas[0], &cas[1]]);
                for (kind, client) in [("fresh", &fresh), ("kept-alive", &kept_alive)] {
                    let (status, text) = post(client, &url, body.clone()).await;
                    if status != 200 {
                        failures.push(format!("{kind} request {i}: {status} {text}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    write_pair(server.dir.path(), &rotated);
    wait_for_metric(&server.metrics, "mysql_webhook_certificate_reloads_total{result=\"success\"} 1").await;
    // Only the new CA is needed now: new handshakes present the new pair.
    let (status, _) = post(&client(&[&rotated.ca_pem]), &url, body.clone()).await;
    assert_eq!(status, 200);

    std::fs::write(server.dir.path().join("tls.key"), "not a key").unwrap();
    wait_for_metric(&server.metrics, "mysql_webhook_certificate_reloads_total{result=\"failure\"} 1").await;
    let (status, _) = post(&client(&[&rotated.ca_pem]), &url, body).await;
    assert_eq!(status, 200, "the previous pair keeps serving");

    let failures = traffic.await.unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
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

/// A free port on 127.0.0.1 for a child process (closed before the child binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary serving on a free port with a generated pair; killed on drop.
struct ServerProcess {
    child: Child,
    client: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    async fn start(extra: &[&str], stderr: std::process::Stdio) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let bundle = certs::generate("test", vec!["127.0.0.1".into()], 2).unwrap();
        certs::write(&bundle, dir.path(), false).unwrap();
        let port = free_port();
        let cert: PathBuf = dir.path().join("tls.crt");
        let key: PathBuf = dir.path().join("tls.key");
        let child = Child(
            std::process::Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
                .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--no-controller"])
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key)
                .args(extra)
                .stderr(stderr)
                .spawn()
                .unwrap(),
        );
        let client = client(&[&bundle.ca_pem]);
        let base = format!("https://127.0.0.1:{port}");
        for _ in 0..100 {
            if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
                return ServerProcess { child, client, base, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server never became ready");
    }

    fn terminate(&self) {
        let pid = self.child.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    async fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..100 {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_and_exits_0() {
    let mut server = ServerProcess::start(&[], std::process::Stdio::null()).await;
    // Requests whose bodies are still arriving when SIGTERM comes.
    let body = fixture("create-annotated").to_string().into_bytes();
    let mut in_flight = Vec::new();
    for _ in 0..5 {
        let (head, tail) = body.split_at(20);
        let (head, tail) = (head.to_vec(), tail.to_vec());
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(head)]).chain(
            futures_util::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(tail)
            }),
        );
        use futures_util::StreamExt as _;
        let (client, url) = (server.client.clone(), format!("{}/mutate", server.base));
        in_flight
            .push(tokio::spawn(async move { post(&client, &url, reqwest::Body::wrap_stream(stream)).await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.terminate();
    for request in in_flight {
        let (status, text) = request.await.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(server.exit_code().await, Some(0), "the server exits 0 after draining");
}

#[tokio::test]
async fn json_logs_carry_the_request_uid_on_every_line_about_a_request() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut server = ServerProcess::start(&["--log-format", "json"], log.reopen().unwrap().into()).await;
    for name in ["create-annotated", "create-invalid-storage"] {
        let review = fixture(name);
        let (status, _) = post(&server.client, &format!("{}/mutate", server.base), review.to_string()).await;
        assert_eq!(status, 200);
    }
    server.terminate();
    assert_eq!(server.exit_code().await, Some(0));
    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<Value> =
        text.lines().map(|line| serde_json::from_str(line).expect("every line is JSON")).collect();
    let about_requests: Vec<&Value> = lines.iter().filter(|line| line["message"] == "answered").collect();
    assert_eq!(about_requests.len(), 2, "{text}");
    let uids: Vec<&str> = about_requests.iter().map(|line| line["span"]["uid"].as_str().unwrap()).collect();
    assert_eq!(uids, ["705ab4f5-6393-11e8-b7cc-42010a800002", "705ab4f5-6393-11e8-b7cc-42010a800005"]);
    assert_eq!(about_requests[1]["outcome"], "Denied");
}
