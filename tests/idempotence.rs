//! Property tests: over generated names, namespaces, replica counts, image forms, annotations
//! and user containers, the expansion is idempotent (expanding an expanded object changes
//! nothing and yields an empty patch), and the patch applied to the input reproduces it.

use mysql_webhook_core::{Operation, mutate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,14}[a-z0-9]"
}

fn image() -> impl Strategy<Value = String> {
    let repository = prop_oneof![
        Just("mysql"),
        Just("docker.io/library/mysql"),
        Just("registry.example.com:5000/mirror/mysql"),
        Just("percona/percona-server"),
        Just("mariadb"),
        Just("quay.io/mirror/mariadb"),
    ];
    let tag = prop_oneof![
        Just("8.4"),
        Just("8.4.3"),
        Just("8.0.40"),
        Just("5.7"),
        Just("lts"),
        Just("11.4"),
        Just("10.11")
    ];
    let digest = prop_oneof![Just(""), Just("@sha256:0123456789abcdef")];
    (repository, tag, digest)
        .prop_map(|(r, t, d)| format!("{r}:{t}{d}"))
        .prop_filter("a flavor is derivable", |image| {
            mysql_webhook_core::flavor::flavor_from_image(image).is_ok()
        })
}

fn env() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[A-Z][A-Z_]{0,8}", "[a-z0-9]{0,8}"), 0..4).prop_map(|vars| {
        let mut seen = std::collections::BTreeSet::new();
        Value::Array(
            vars.into_iter()
                .filter(|(name, _)| !name.contains("PASSWORD") && seen.insert(name.clone()))
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    })
}

fn resources() -> impl Strategy<Value = Option<Value>> {
    let amount = prop_oneof![Just(None), Just(Some("250m")), Just(Some("2"))];
    let memory = prop_oneof![Just(None), Just(Some("512Mi")), Just(Some("4Gi"))];
    (amount.clone(), memory.clone(), amount, memory).prop_map(|(rc, rm, lc, lm)| {
        let pick = |cpu: Option<&str>, memory: Option<&str>| {
            let mut map = serde_json::Map::new();
            if let Some(cpu) = cpu {
                map.insert("cpu".into(), json!(cpu));
            }
            if let Some(memory) = memory {
                map.insert("memory".into(), json!(memory));
            }
            Value::Object(map)
        };
        let (requests, limits) = (pick(rc, rm), pick(lc, lm));
        (rc.is_some() || rm.is_some() || lc.is_some() || lm.is_some())
            .then(|| json!({"requests": requests, "limits": limits}))
    })
}

fn annotations() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    prop::sample::subsequence(
        vec![
            ("mysql-webhook.io/storage", "20Gi"),
            ("mysql-webhook.io/storage-class", "fast"),
            ("mysql-webhook.io/root-password-secret", "creds"),
            ("mysql-webhook.io/read-service", "readers"),
            ("mysql-webhook.io/metrics", "true"),
            ("mysql-webhook.io/backup-image", "example.com/backup:1"),
            ("mysql-webhook.io/tls-issuer", "ClusterIssuer/corp-ca"),
        ],
        0..=7,
    )
}

prop_compose! {
    fn statefulset()(
        name in dns_label(),
        namespace in prop::option::of(dns_label()),
        service in prop::option::of(dns_label()),
        replicas in 0..9i32,
        image in image(),
        env in env(),
        args in prop::collection::vec("--[a-z-]{1,12}=[0-9]{1,3}", 0..3),
        resources in resources(),
        ports in prop::collection::vec(1024..65535i32, 0..3),
        extra_init in prop::collection::vec(dns_label(), 0..3),
        sidecars in prop::collection::vec(dns_label(), 0..3),
        volumes in prop::collection::vec(dns_label(), 0..3),
        annotations in annotations(),
        first_ordinal in prop::option::of(0..4i32),
    ) -> Value {
        let reserved = ["mysql", "init-mysql", "clone-mysql", "xtrabackup", "mariadb-backup", "mysqld-exporter",
            "data", "conf", "config-map", "tls"];
        let unique = |names: Vec<String>| {
            let mut seen = std::collections::BTreeSet::new();
            names.into_iter().filter(|n| !reserved.contains(&n.as_str()) && seen.insert(n.clone())).collect::<Vec<_>>()
        };
        let mut ports: Vec<i32> = ports.into_iter().filter(|p| *p != 3306 && *p != 3307 && *p != 9104).collect();
        ports.sort();
        ports.dedup();
        let mut mysql = json!({"name": "mysql", "image": image, "env": env, "args": args,
            "ports": ports.iter().map(|p| json!({"containerPort": p})).collect::<Vec<_>>()});
        if let Some(resources) = resources {
            mysql["resources"] = resources;
        }
        let mut containers = vec![mysql];
        containers.extend(unique(sidecars).into_iter().map(|n| json!({"name": n, "image": "busybox:1.36"})));
        let mut sts = json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "annotations": {"mysql-webhook.io/replicated": "true"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": containers,
                        "initContainers": unique(extra_init).into_iter().map(|n| json!({"name": n, "image": "busybox:1.36"})).collect::<Vec<_>>(),
                        "volumes": unique(volumes).into_iter().map(|n| json!({"name": n, "emptyDir": {}})).collect::<Vec<_>>(),
                    }
                }
            }
        });
        if let Some(namespace) = namespace {
            sts["metadata"]["namespace"] = json!(namespace);
        }
        if let Some(service) = service.filter(|s| *s != format!("{name}-read") && s != "readers") {
            sts["spec"]["serviceName"] = json!(service);
        }
        if let Some(start) = first_ordinal {
            sts["spec"]["ordinals"] = json!({"start": start});
        }
        for (key, value) in annotations {
            sts["metadata"]["annotations"][key] = json!(value);
        }
        // MySQL 5.7 has no default backup image (refused without one).
        let is_57 = sts["spec"]["template"]["spec"]["containers"][0]["image"].as_str().is_some_and(|i| i.contains(":5.7"));
        if is_57 {
            sts["metadata"]["annotations"]["mysql-webhook.io/backup-image"] = json!("example.com/backup:1");
        }
        sts
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn expanding_twice_equals_expanding_once_and_the_second_patch_is_empty(sts in statefulset()) {
        let first = mutate(&sts, Operation::Create, None).unwrap().unwrap();
        let expanded = serde_json::to_value(&first.expanded).unwrap();
        let second = mutate(&expanded, Operation::Create, None).unwrap().unwrap();
        prop_assert!(second.patch.is_empty(), "second patch: {:?}", second.patch);
        prop_assert_eq!(serde_json::to_value(&second.expanded).unwrap(), expanded.clone());

        // Also on UPDATE, against the object as stored.
        let update = mutate(&expanded, Operation::Update { old: &expanded }, None).unwrap().unwrap();
        prop_assert!(update.patch.is_empty(), "update patch: {:?}", update.patch);

        let mut patched = sts.clone();
        json_patch::patch(&mut patched, &first.patch.operations()).unwrap();
        prop_assert_eq!(patched, expanded);
    }
}
