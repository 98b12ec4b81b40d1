//! Expand + patch of a typical StatefulSet (the README's "What you write" example), the work the webhook does
//! per admission request; with a floor (parsing the object into Kubernetes types alone) measured
//! in the same run, so the figure reads as a ratio on a noisy machine.
//!
//! `cargo bench --bench expand`

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook_core::{Operation, mutate};
use serde_json::json;

fn typical() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "mysql", "namespace": "shop", "creationTimestamp": null,
            "annotations": {"mysql-webhook.io/replicated": "true"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "mysql"}},
            "template": {
                "metadata": {"labels": {"app": "mysql"}, "creationTimestamp": null},
                "spec": {"containers": [{"name": "mysql", "image": "mysql:8.4", "resources": {}}]}
            }
        }
    })
}

fn bench(c: &mut Criterion) {
    let object = typical();
    let mut group = c.benchmark_group("admission");
    group.bench_function("floor: parse into StatefulSet", |b| {
        b.iter(|| serde_json::from_value::<StatefulSet>(std::hint::black_box(&object).clone()).unwrap())
    });
    group.bench_function("expand + patch (CREATE)", |b| {
        b.iter(|| mutate(std::hint::black_box(&object), Operation::Create, None).unwrap().unwrap())
    });
    let expanded =
        serde_json::to_value(mutate(&object, Operation::Create, None).unwrap().unwrap().expanded).unwrap();
    group.bench_function("reinvocation: expanded object, empty patch", |b| {
        b.iter(|| mutate(std::hint::black_box(&expanded), Operation::Create, None).unwrap().unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
