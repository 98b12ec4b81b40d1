//! The audit of what already runs against a mocked API server (tests/common/mock_api.rs) with
//! the real policy host: reports replaced in place (one name, server-side apply) and owned by
//! their StatefulSet, valid against the shipped PolicyReport CRD; Events only when a result
//! changes; scopes and exceptions as `/validate` applies them; the CRD missing (logged once,
//! Events and metrics instead); admission first for the evaluation slots; the flag.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::mock_api::{self, Call, Calls};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{reflector, watcher};
use mysql_webhook::audit::{Auditor, Round, Slots};
use mysql_webhook::cli::{AuditInterval, Cli, Command};
use mysql_webhook::metrics::Metrics;
use mysql_webhook::namespaces::NamespaceLabels;
use mysql_webhook::policy::{Policies, Source};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// replica-quorum enforced only in namespaces labelled tier=prod, exceptions allowed in
/// namespace legacy; resources in warn mode everywhere (the fixtures have no requests).
const POLICIES: &str = "policies:\n\
- name: quorum\n  module: builtin:replica-quorum\n  namespaceSelector: {matchLabels: {tier: prod}}\n  \
  exceptions: {namespaces: [legacy]}\n\
- name: resources\n  module: builtin:resources\n  mode: warn\n";

struct Audit {
    auditor: Auditor,
    calls: Calls,
    metrics: Arc<Metrics>,
    slots: Slots,
    policies: Arc<Policies>,
    _dir: tempfile::TempDir,
}

/// An auditor with the set above, the namespaces shop and legacy (tier=prod) and blog
/// (tier=dev) in its cache, one evaluation slot, against a mock answered by `answer`.
fn audit(answer: mock_api::Answer) -> Audit {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_policies(dir.path(), POLICIES);
    let policies = Arc::new(Policies::load(common::host(), Source::File(path)).unwrap());
    let (reader, mut writer) = reflector::store::<Namespace>();
    for (name, tier) in [("shop", "prod"), ("legacy", "prod"), ("blog", "dev")] {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"tier": tier}}});
        writer.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(namespace).unwrap()));
    }
    let (client, calls) = mock_api::client(answer);
    let metrics = Arc::new(Metrics::new());
    let slots = Slots { evaluations: Arc::new(Semaphore::new(1)), queued: Arc::new(AtomicUsize::new(0)) };
    let namespaces = Some(Arc::new(NamespaceLabels::new(reader)));
    let auditor = Auditor::new(client, policies.clone(), metrics.clone(), namespaces, slots.clone());
    Audit { auditor, calls, metrics, slots, policies, _dir: dir }
}

impl Audit {
    async fn round(&self, statefulsets: &[Value]) -> Round {
        let statefulsets: Vec<Arc<StatefulSet>> =
            statefulsets.iter().map(|s| Arc::new(serde_json::from_value(s.clone()).unwrap())).collect();
        let set = self.policies.current();
        tokio::time::timeout(Duration::from_secs(30), self.auditor.round(&set, &statefulsets))
            .await
            .expect("the round finishes")
    }

    /// The calls made since the last `take`.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

/// A StatefulSet as stored after the webhook expanded it, in `namespace` with `replicas`.
fn managed(name: &str, namespace: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
            "annotations": {"mysql-webhook.io/replicated": "true"},
            "labels": {"mysql-webhook.io/managed": "true"}
        },
        "spec": {
            "replicas": replicas, "serviceName": format!("{name}-hl"),
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "mysql", "image": "mysql:8.4"}]}
            }
        }
    })
}

fn with_exceptions(mut sts: Value, exceptions: &str) -> Value {
    sts["metadata"]["annotations"]["mysql-webhook.io/policy-exceptions"] = json!(exceptions);
    sts
}

fn reports(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.uri.contains("/policyreports")).collect()
}

fn events(calls: &[Call]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .filter(|c| c.uri.contains("/events"))
        .map(|c| {
            let str = |pointer: &str| {
                c.body.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned()
            };
            (str("/regarding/name"), str("/type"), str("/reason"))
        })
        .collect()
}

/// The results of a report body, as (policy, result).
fn results(report: &Value) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["policy"].as_str().unwrap().to_owned(), r["result"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(policy: &str, result: &str) -> (String, String) {
    (policy.to_owned(), result.to_owned())
}

/// Validates `documents` with tests/validate_against_crd.py against the CRD shipped in
/// deploy/components/policy-reports, strictly.
fn assert_valid_against_the_crd(documents: &[&Value]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = documents
        .iter()
        .enumerate()
        .map(|(index, document)| {
            let path = dir.path().join(format!("report-{index}.json"));
            std::fs::write(&path, document.to_string()).unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let crd = common::repo_path("deploy/components/policy-reports/crd.yaml");
    let script = common::repo_path("tests/validate_against_crd.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(&crd)
        .arg("v1alpha2")
        .args(&files)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the report doesn't validate against the CRD (needs python3 with jsonschema and PyYAML, which .ci/run installs): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn one_report_per_statefulset_is_applied_in_place_owned_by_it_and_valid_against_the_crd() {
    let audit = audit(Box::new(mock_api::accepting));
    let statefulsets = [managed("orders", "shop", 4), managed("blog-db", "blog", 4)];
    let round = audit.round(&statefulsets).await;
    assert_eq!((round.audited, round.reports_written, round.crd_missing), (2, 2, false));
    let first = audit.take();
    let again = audit.round(&statefulsets).await;
    assert_eq!(again.reports_written, 2);
    let second = audit.take();
    for calls in [&first, &second] {
        let paths: Vec<(&str, &str)> = reports(calls).iter().map(|c| (c.method.as_str(), c.path())).collect();
        assert_eq!(
            paths,
            [
                ("PATCH", "/apis/wgpolicyk8s.io/v1alpha2/namespaces/shop/policyreports/mysql-webhook-orders"),
                (
                    "PATCH",
                    "/apis/wgpolicyk8s.io/v1alpha2/namespaces/blog/policyreports/mysql-webhook-blog-db"
                ),
            ],
            "the same names at every round, never a POST: replaced, not accumulated"
        );
        for call in reports(calls) {
            assert!(
                call.uri.contains("fieldManager=mysql-webhook.io") && call.uri.contains("force=true"),
                "{}",
                call.uri
            );
        }
    }
    let orders = &reports(&first)[0].body;
    let uid = "uid-shop-orders";
    assert_eq!(
        orders["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "orders", "uid": uid}])
    );
    assert_eq!(
        orders["scope"],
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "orders", "namespace": "shop", "uid": uid})
    );
    // quorum enforced in shop (tier=prod): 4 members fail; resources (warn mode): no requests.
    assert_eq!(results(orders), [pair("quorum", "fail"), pair("resources", "warn")]);
    assert!(orders["results"][0]["message"].as_str().unwrap().contains("spec.replicas is 4"), "{orders}");
    assert_eq!(orders["summary"], json!({"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0}));
    // Out of quorum's scope in blog (tier=dev): not run, not reported.
    let blog = &reports(&first)[1].body;
    assert_eq!(results(blog), [pair("resources", "warn")]);
    let written: Vec<&Value> =
        reports(&first).iter().chain(reports(&second).iter()).map(|c| &c.body).collect();
    assert_valid_against_the_crd(&written);
}

#[tokio::test]
async fn events_are_recorded_only_when_a_statefulsets_result_changes() {
    let audit = audit(Box::new(mock_api::accepting));
    let quorum_only = |sts: Value| {
        let mut sts = sts;
        // Requests, so that resources passes and only quorum decides.
        sts["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": "100m", "memory": "256Mi"}});
        sts
    };
    let (failing, passing) =
        (quorum_only(managed("orders", "shop", 4)), quorum_only(managed("orders", "shop", 3)));
    let clean = quorum_only(managed("catalog", "shop", 3));
    audit.round(&[failing.clone(), clean.clone()]).await;
    assert_eq!(
        events(&audit.take()),
        [("orders".into(), "Warning".into(), "PolicyAuditFailed".into())],
        "a first clean audit is silent"
    );
    audit.round(&[failing.clone(), clean.clone()]).await;
    assert_eq!(events(&audit.take()), [], "nothing changed: no Event");
    audit.round(&[passing, clean]).await;
    assert_eq!(events(&audit.take()), [("orders".into(), "Normal".into(), "PolicyAuditPassed".into())]);
}

#[tokio::test]
async fn an_exception_is_a_skip_result_naming_it_and_a_refused_one_fails_even_in_warn_mode() {
    let audit = audit(Box::new(mock_api::accepting));
    let excepted = with_exceptions(managed("old-db", "legacy", 4), "quorum");
    let refused = with_exceptions(managed("orders", "shop", 3), "quorum,resources");
    audit.round(&[excepted, refused]).await;
    let calls = audit.take();
    let written = reports(&calls);
    let legacy = &written[0].body;
    assert_eq!(results(legacy), [pair("quorum", "skip"), pair("resources", "warn")]);
    assert_eq!(
        legacy["results"][0]["properties"],
        json!({"exception": "mysql-webhook.io/policy-exceptions"})
    );
    let shop = &written[1].body;
    assert_eq!(results(shop), [pair("quorum", "fail"), pair("resources", "fail")]);
    let why = shop["results"][1]["message"].as_str().unwrap();
    assert!(why.contains("this policy allows no exceptions"), "{why}");
    let metrics = audit.metrics.encode();
    assert!(metrics.contains(r#"mysql_webhook_audit_results{policy="quorum",result="skip"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"mysql_webhook_audit_results{policy="resources",result="fail"} 1"#),
        "{metrics}"
    );
    assert_valid_against_the_crd(&written.iter().map(|c| &c.body).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_metrics_hold_the_last_rounds_counts_and_time() {
    let audit = audit(Box::new(mock_api::accepting));
    audit.round(&[managed("a", "shop", 4), managed("b", "shop", 4), managed("c", "shop", 3)]).await;
    let metrics = audit.metrics.encode();
    assert!(metrics.contains(r#"mysql_webhook_audit_results{policy="quorum",result="fail"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"mysql_webhook_audit_results{policy="quorum",result="pass"} 1"#), "{metrics}");
    let last_run = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mysql_webhook_audit_last_run_timestamp_seconds "))
        .expect("the last run's time")
        .parse::<i64>()
        .unwrap();
    assert!(last_run > 1_700_000_000, "{last_run}");
    // A round with fewer StatefulSets replaces the counts rather than adding to them.
    audit.round(&[managed("c", "shop", 3)]).await;
    let metrics = audit.metrics.encode();
    assert!(!metrics.contains(r#"result="fail""#), "{metrics}");
    assert!(metrics.contains(r#"mysql_webhook_audit_results{policy="quorum",result="pass"} 1"#), "{metrics}");
}

/// Log lines written while a test runs, from this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn without_the_crd_the_audit_logs_once_and_reports_through_events_and_metrics() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    // What kube-apiserver answers for a resource type it doesn't serve: a plain-text 404.
    let audit = audit(Box::new(|call: &Call| {
        if call.uri.contains("/policyreports") {
            (404, b"404 page not found\n".to_vec())
        } else {
            mock_api::accepting(call)
        }
    }));
    let failing = [managed("orders", "shop", 4), managed("billing", "shop", 4)];
    let round = audit.round(&failing).await;
    assert_eq!((round.audited, round.reports_written, round.crd_missing), (2, 0, true));
    let calls = audit.take();
    assert_eq!(reports(&calls).len(), 1, "one try per round, not one per StatefulSet");
    assert_eq!(
        events(&calls).iter().map(|(name, kind, _)| (name.as_str(), kind.as_str())).collect::<Vec<_>>(),
        [("orders", "Warning"), ("billing", "Warning")],
        "Events instead"
    );
    let round = audit.round(&failing).await;
    assert!(round.crd_missing);
    assert_eq!(reports(&audit.take()).len(), 1, "tried again at the next round, in case it was installed");
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logged.matches("the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) is not installed").count(),
        1,
        "{logged}"
    );
    let metrics = audit.metrics.encode();
    assert!(
        metrics.contains(r#"mysql_webhook_audit_report_writes_total{result="crd_missing"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"mysql_webhook_audit_results{policy="quorum",result="fail"} 2"#), "{metrics}");
}

#[tokio::test]
async fn the_audit_waits_while_admission_reviews_wait_for_a_slot_or_hold_them_all() {
    let audit = Arc::new(audit(Box::new(mock_api::accepting)));
    // A review waits for the only slot.
    audit.slots.queued.store(1, Ordering::Release);
    let running = audit.clone();
    let round = tokio::spawn(async move { running.round(&[managed("orders", "shop", 4)]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reports(&audit.take()).is_empty(), "no evaluation while a review waits");
    // The review takes the slot: the audit still waits.
    audit.slots.queued.store(0, Ordering::Release);
    let held = audit.slots.evaluations.clone().try_acquire_owned().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reports(&audit.take()).is_empty(), "no evaluation while every slot is taken");
    drop(held);
    let round = tokio::time::timeout(Duration::from_secs(30), round).await.unwrap().unwrap();
    assert_eq!(round.reports_written, 1);
    assert_eq!(audit.slots.evaluations.available_permits(), 1, "the slot is given back");
}

#[tokio::test]
async fn a_statefulset_with_a_bad_exceptions_annotation_gets_an_error_result() {
    let audit = audit(Box::new(mock_api::accepting));
    audit.round(&[with_exceptions(managed("orders", "shop", 3), "quorum,quorum")]).await;
    let calls = audit.take();
    let report = &reports(&calls)[0].body;
    assert_eq!(results(report), [pair("mysql-webhook.io/annotations", "error")]);
    assert!(report["results"][0]["message"].as_str().unwrap().contains("named twice"), "{report}");
}

/// Waits until `calls` holds `count` report writes; their bodies.
async fn report_writes(calls: &Calls, count: usize) -> Vec<Value> {
    for _ in 0..300 {
        let written: Vec<Value> = reports(&calls.lock().unwrap()).iter().map(|c| c.body.clone()).collect();
        if written.len() >= count {
            return written;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} reports written within 15 s");
}

#[tokio::test]
async fn the_loop_audits_once_the_cache_is_ready_again_after_a_reload_and_stops_on_shutdown() {
    let audit = audit(Box::new(mock_api::accepting));
    let (reader, mut writer) = reflector::store::<StatefulSet>();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let Audit { auditor, calls, policies, _dir: dir, .. } = audit;
    // An hour: every round after the first is the reload's.
    let running = tokio::spawn(auditor.run(reader, Duration::from_secs(3600), shutdown));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reports(&calls.lock().unwrap()).is_empty(), "no round before the cache has listed");
    writer.apply_watcher_event(&watcher::Event::Init);
    let orders: StatefulSet = serde_json::from_value(managed("orders", "shop", 4)).unwrap();
    writer.apply_watcher_event(&watcher::Event::InitApply(orders));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let first = report_writes(&calls, 1).await;
    assert_eq!(results(&first[0]), [pair("quorum", "fail"), pair("resources", "warn")]);
    // The platform team puts quorum in warn mode: the reload is audited at once.
    let warn = POLICIES.replace("builtin:replica-quorum\n", "builtin:replica-quorum\n  mode: warn\n");
    std::fs::write(dir.path().join("policies.yaml"), warn).unwrap();
    assert!(matches!(policies.reload_if_changed(), Some(Ok(()))));
    let second = report_writes(&calls, 2).await;
    assert_eq!(results(&second[1]), [pair("quorum", "warn"), pair("resources", "warn")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reports(&calls.lock().unwrap()).len(), 2, "no round without a reload within the hour");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("the loop stops").unwrap();
}

fn serve_args(extra: &[&str]) -> Result<AuditInterval, clap::Error> {
    let mut args = vec!["mysql-webhook", "serve", "--dev"];
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).map(|cli| match cli.command {
        Command::Serve(serve) => serve.audit_interval,
        other => panic!("{other:?}"),
    })
}

#[test]
fn the_audit_interval_defaults_to_an_hour_and_0_turns_it_off() {
    assert_eq!(serve_args(&[]).unwrap(), AuditInterval(Some(Duration::from_secs(3600))));
    assert_eq!(serve_args(&["--audit-interval", "0"]).unwrap(), AuditInterval(None));
    assert_eq!(
        serve_args(&["--audit-interval", "15m"]).unwrap(),
        AuditInterval(Some(Duration::from_secs(900)))
    );
}

#[test]
fn a_bad_audit_interval_is_a_usage_error_saying_what_is_accepted() {
    let output = common::run_cli(&["serve", "--dev", "--audit-interval", "5s"], "");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value '5s' for '--audit-interval <DURATION>'"), "{stderr}");
    assert!(stderr.contains("shorter than the minimum of 1m; give 0 to turn the audit off"), "{stderr}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mysql-webhook"))
        .args(["serve", "--dev"])
        .env("MYSQL_WEBHOOK_AUDIT_INTERVAL", "daily")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("'d' is not a unit (h, m or s)"), "{stderr}");
}
