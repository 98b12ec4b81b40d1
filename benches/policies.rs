//! Policy host figures (criterion, one thread): instantiate + evaluate for each built-in policy
//! and for the five together on the default expansion of a 3-member StatefulSet; the floor is
//! the same round trip through the smallest component (the hostile test policy allowing without
//! reading the request); and a cold start (new engine, the five loaded and their settings
//! validated) with a warm compile cache.
//!
//! `cargo bench --bench policies` (builds the hostile policy for wasm32-wasip2 first).

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook::policy::config::{self, PolicyConfig};
use mysql_webhook::policy::{Host, Policies, PolicySet, Source};
use mysql_webhook_core::policy_request::PolicyRequest;

#[path = "../tests/common/hostile.rs"]
mod hostile;
use hostile::hostile_policy;

fn request() -> mysql_webhook::policy::PolicyInput {
    let sts: StatefulSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "mysql", "namespace": "shop", "annotations": {"mysql-webhook.io/replicated": "true"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "mysql"}},
            "template": {
                "metadata": {"labels": {"app": "mysql"}},
                "spec": {"containers": [{"name": "mysql", "image": "mysql:8.4"}]}
            }
        }
    }))
    .unwrap();
    let expanded =
        mysql_webhook_core::mutate_statefulset(&sts, None, Some("shop")).unwrap().unwrap().expanded;
    PolicyRequest::create("bench", &expanded, None).input()
}

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn bench(c: &mut Criterion) {
    let cache = repo("target/bench-policy-cache");
    let host = Host::new(Some(cache.clone())).unwrap();
    let request = request();

    let floor = vec![PolicyConfig {
        name: "floor".into(),
        module: config::Module::File(hostile_policy()),
        ..config::defaults().remove(0)
    }];
    let floor = PolicySet::load(&host, &floor).unwrap();
    c.bench_function("floor: instantiate + call of an empty policy", |b| {
        b.iter(|| floor.evaluate(&host, &request, None))
    });

    for policy in config::defaults() {
        let name = policy.name.clone();
        let set = PolicySet::load(&host, &[policy]).unwrap();
        assert!(set.evaluate(&host, &request, None).allowed(), "{name} allows the default expansion");
        c.bench_function(&format!("policy {name}: instantiate + evaluate"), |b| {
            b.iter(|| set.evaluate(&host, &request, None))
        });
    }

    let all = PolicySet::load(&host, &config::defaults()).unwrap();
    c.bench_function("all five built-in policies on a 3-member StatefulSet", |b| {
        b.iter(|| all.evaluate(&host, &request, None))
    });

    let mut group = c.benchmark_group("cold start");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("new engine + load the five built-ins, warm compile cache", |b| {
        b.iter(|| Policies::load(Host::new(Some(cache.clone())).unwrap(), Source::Builtins).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
