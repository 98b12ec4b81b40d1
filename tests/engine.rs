//! The expansion engine through its public entry point: bad input and its messages, names,
//! user fields, updates, the patch, pass-through.

mod common;

use common::{annotated, with_annotation};
use mysql_webhook_core::{MutateError, Operation, mutate};
use serde_json::{Value, json};

fn expand(object: &Value) -> Value {
    let mutation = mutate(object, Operation::Create, None).expect("expands").expect("opted in");
    serde_json::to_value(&mutation.expanded).expect("serialises")
}

fn denial(object: &Value) -> String {
    match mutate(object, Operation::Create, None) {
        Err(MutateError::Refused(invalid)) => invalid.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_refused_with_messages_naming_the_problem_and_what_is_accepted() {
    let base = || annotated("db", "mysql:8.4");
    let mut parallel = base();
    parallel["spec"]["podManagementPolicy"] = json!("Parallel");
    let mut no_name = base();
    no_name["metadata"].as_object_mut().unwrap().remove("name");
    no_name["metadata"]["generateName"] = json!("db-");
    let mut no_containers = base();
    no_containers["spec"]["template"]["spec"]["containers"] = json!([]);
    let mut two_containers = base();
    two_containers["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "db", "image": "mysql:8.4"}, {"name": "proxy", "image": "envoy:1"}]);
    let mut no_image = base();
    no_image["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("image");
    let mut no_selector = base();
    no_selector["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
    let mut empty_password = base();
    empty_password["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "MYSQL_ALLOW_EMPTY_PASSWORD", "value": "1"}]);
    let mut literal_password = base();
    literal_password["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "MYSQL_ROOT_PASSWORD", "value": "hunter2"}]);
    let mut long_name = annotated(&"a".repeat(60), "mysql:8.4");
    long_name["spec"]["serviceName"] = json!("db");
    let mut dotted = annotated("db.prod", "mysql:8.4");
    dotted["spec"]["selector"]["matchLabels"] = json!({"app": "db"});

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "replicated not a boolean",
            with_annotation(base(), "mysql-webhook.io/replicated", "yes"),
            r#"annotation mysql-webhook.io/replicated: "yes" is not accepted; use "true" or "false""#,
        ),
        (
            "misspelled annotation",
            with_annotation(base(), "mysql-webhook.io/storge", "5Gi"),
            "annotation mysql-webhook.io/storge is not known; known annotations: mysql-webhook.io/replicated, \
             mysql-webhook.io/storage, mysql-webhook.io/storage-class, mysql-webhook.io/flavor, \
             mysql-webhook.io/backup-image, mysql-webhook.io/root-password-secret, mysql-webhook.io/read-service, \
             mysql-webhook.io/metrics, mysql-webhook.io/tls-issuer, mysql-webhook.io/require-tls, \
             mysql-webhook.io/max-lag, \
             mysql-webhook.io/backup-schedule, mysql-webhook.io/backup-target, \
             mysql-webhook.io/backup-secret, mysql-webhook.io/backup-keep, mysql-webhook.io/backup-client-image, \
             mysql-webhook.io/restore-from, mysql-webhook.io/restore-to-time, mysql-webhook.io/binlog-archive, \
             mysql-webhook.io/binlog-flush-interval, mysql-webhook.io/policy-exceptions",
        ),
        (
            "policy exceptions with an empty name",
            with_annotation(base(), "mysql-webhook.io/policy-exceptions", "spread,,storage"),
            r#"annotation mysql-webhook.io/policy-exceptions: "spread,,storage" is not accepted: "" is not a policy name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters); use policy names separated by commas, e.g. "replica-quorum,spread""#,
        ),
        (
            "policy exceptions naming a policy twice",
            with_annotation(base(), "mysql-webhook.io/policy-exceptions", "spread, spread"),
            r#"annotation mysql-webhook.io/policy-exceptions: "spread, spread" is not accepted: "spread" is named twice; use policy names separated by commas, e.g. "replica-quorum,spread""#,
        ),
        (
            "storage not a quantity",
            with_annotation(base(), "mysql-webhook.io/storage", "ten gigs"),
            r#"annotation mysql-webhook.io/storage: "ten gigs" is not a Kubernetes quantity; use a size such as 10Gi, 500Mi or 1Ti"#,
        ),
        (
            "storage with a unit Kubernetes doesn't know",
            with_annotation(base(), "mysql-webhook.io/storage", "10GB"),
            r#"annotation mysql-webhook.io/storage: "10GB" is not a Kubernetes quantity; use a size such as 10Gi, 500Mi or 1Ti"#,
        ),
        (
            // The float parser this replaced read 1e400 as infinity and accepted it.
            "storage too large to be a quantity",
            with_annotation(base(), "mysql-webhook.io/storage", "1e400"),
            r#"annotation mysql-webhook.io/storage: "1e400" is not a Kubernetes quantity; use a size such as 10Gi, 500Mi or 1Ti"#,
        ),
        (
            "storage zero",
            with_annotation(base(), "mysql-webhook.io/storage", "0Gi"),
            r#"annotation mysql-webhook.io/storage: "0Gi" is not a positive size; use a size such as 10Gi"#,
        ),
        (
            "storage class with capitals",
            with_annotation(base(), "mysql-webhook.io/storage-class", "Fast_SSD"),
            r#"annotation mysql-webhook.io/storage-class: "Fast_SSD" is not a valid StorageClass name; use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"#,
        ),
        (
            "unknown flavor",
            with_annotation(base(), "mysql-webhook.io/flavor", "mysql-9"),
            r#"annotation mysql-webhook.io/flavor: "mysql-9" is not a flavor; accepted: mysql-8.4, mysql-8.0, mysql-5.7, mariadb"#,
        ),
        (
            "image of another database",
            annotated("db", "postgres:16"),
            r#"cannot derive the flavor: image "postgres:16" is not a MySQL or MariaDB image this webhook knows; set annotation mysql-webhook.io/flavor to one of mysql-8.4, mysql-8.0, mysql-5.7, mariadb"#,
        ),
        (
            "image without a version",
            annotated("db", "mysql:latest"),
            r#"cannot derive the flavor: image "mysql:latest" has no version tag; set annotation mysql-webhook.io/flavor to one of mysql-8.4, mysql-8.0, mysql-5.7, mariadb"#,
        ),
        (
            "unsupported MySQL version",
            annotated("db", "mysql:9.1"),
            r#"cannot derive the flavor: image "mysql:9.1" is MySQL 9.1, which is not supported (supported: 5.7, 8.0, 8.4); set annotation mysql-webhook.io/flavor to one of mysql-8.4, mysql-8.0, mysql-5.7, mariadb"#,
        ),
        (
            "backup image with a space",
            with_annotation(base(), "mysql-webhook.io/backup-image", "percona xtrabackup"),
            r#"annotation mysql-webhook.io/backup-image: "percona xtrabackup" is not an image reference; use e.g. percona/percona-xtrabackup:8.4"#,
        ),
        (
            "secret name with a slash",
            with_annotation(base(), "mysql-webhook.io/root-password-secret", "team/creds"),
            r#"annotation mysql-webhook.io/root-password-secret: "team/creds" is not a valid Secret name; use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"#,
        ),
        (
            "read service starting with a digit",
            with_annotation(base(), "mysql-webhook.io/read-service", "1reader"),
            r#"annotation mysql-webhook.io/read-service "1reader" is not a valid Service name (lowercase letters, digits and '-', starting with a letter, at most 63 characters); use a name such as orders-read"#,
        ),
        (
            "read service named like the headless one",
            with_annotation(base(), "mysql-webhook.io/read-service", "db"),
            r#"annotation mysql-webhook.io/read-service: "db" is the headless Service's name; the read Service needs a name of its own"#,
        ),
        (
            "tls issuer of an unknown kind",
            with_annotation(base(), "mysql-webhook.io/tls-issuer", "Vault/corp"),
            r#"annotation mysql-webhook.io/tls-issuer: "Vault/corp" is not an issuer; use <name> or Issuer/<name> (an Issuer in the namespace) or ClusterIssuer/<name>, where <name> is a Kubernetes name"#,
        ),
        (
            "tls issuer with capitals",
            with_annotation(base(), "mysql-webhook.io/tls-issuer", "ClusterIssuer/Corp_CA"),
            r#"annotation mysql-webhook.io/tls-issuer: "ClusterIssuer/Corp_CA" is not an issuer; use <name> or Issuer/<name> (an Issuer in the namespace) or ClusterIssuer/<name>, where <name> is a Kubernetes name"#,
        ),
        (
            "mysql 5.7 without a backup image",
            annotated("db", "mysql:5.7"),
            "flavor mysql-5.7 needs annotation mysql-webhook.io/backup-image: clones travel over mutual TLS with socat, and no public XtraBackup 2.4 image carries socat (the tutorial's ncat can't verify client certificates); build one FROM percona/percona-xtrabackup:2.4 with bash, socat and the mysql client",
        ),
        (
            "require-tls not a boolean",
            with_annotation(base(), "mysql-webhook.io/require-tls", "yes"),
            r#"annotation mysql-webhook.io/require-tls: "yes" is not accepted; use "true" or "false""#,
        ),
        (
            "max-lag without a unit",
            with_annotation(base(), "mysql-webhook.io/max-lag", "30"),
            r#"annotation mysql-webhook.io/max-lag: "30" is not accepted; use a duration from 1s to 24h such as 30s, 5m or 1h30m"#,
        ),
        (
            "max-lag of zero",
            with_annotation(base(), "mysql-webhook.io/max-lag", "0s"),
            r#"annotation mysql-webhook.io/max-lag: "0s" is not accepted; use a duration from 1s to 24h such as 30s, 5m or 1h30m"#,
        ),
        (
            "max-lag beyond a day",
            with_annotation(base(), "mysql-webhook.io/max-lag", "25h"),
            r#"annotation mysql-webhook.io/max-lag: "25h" is not accepted; use a duration from 1s to 24h such as 30s, 5m or 1h30m"#,
        ),
        (
            "metrics not a boolean",
            with_annotation(base(), "mysql-webhook.io/metrics", "on"),
            r#"annotation mysql-webhook.io/metrics: "on" is not accepted; use "true" or "false""#,
        ),
        (
            "generateName instead of a name",
            no_name,
            "metadata.name is required: every peer and companion is named after the StatefulSet (generateName is not supported)",
        ),
        ("no containers", no_containers, "spec.template.spec.containers is empty; add the mysql container"),
        (
            "several containers, none named mysql",
            two_containers,
            r#"no container is named "mysql" among ["db", "proxy"]; name the database container "mysql""#,
        ),
        (
            "mysql container without an image",
            no_image,
            r#"container "mysql" has no image; set e.g. image: mysql:8.4"#,
        ),
        (
            "selector without matchLabels",
            no_selector,
            "spec.selector.matchLabels is empty; the Services and the PodDisruptionBudget select members by these labels",
        ),
        (
            "parallel pod management",
            parallel,
            "spec.podManagementPolicy Parallel is not supported: each member clones from the previous one, so they must start in order (OrderedReady)",
        ),
        (
            "empty root password",
            empty_password,
            r#"container "mysql" sets MYSQL_ALLOW_EMPTY_PASSWORD, which leaves root without a known password; remove it: the password comes from Secret "db-credentials""#,
        ),
        (
            "literal root password",
            literal_password,
            r#"container "mysql" sets MYSQL_ROOT_PASSWORD to a literal value; remove it: the password comes from Secret "db-credentials" (annotation mysql-webhook.io/root-password-secret)"#,
        ),
        (
            "read Service name too long",
            long_name,
            r#"the read Service name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-read" is not a valid Service name (lowercase letters, digits and '-', starting with a letter, at most 63 characters); set annotation mysql-webhook.io/read-service to a shorter name"#,
        ),
        (
            "a dotted name as the headless Service",
            dotted,
            r#"the headless Service name (spec.serviceName or metadata.name) "db.prod" is not a valid Service name (lowercase letters, digits and '-', starting with a letter, at most 63 characters); set spec.serviceName to a short name"#,
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, object, expected) in cases {
        assert_eq!(denial(&object), expected, "case: {what}");
    }
}

#[test]
fn an_object_that_is_not_a_statefulset_is_malformed_not_denied() {
    let mut object = annotated("db", "mysql:8.4");
    object["spec"]["replicas"] = json!("three");
    assert!(matches!(mutate(&object, Operation::Create, None), Err(MutateError::Malformed(_))));
}

#[test]
fn names_come_from_the_statefulset_and_its_service_never_from_the_tutorial() {
    let mut object = annotated("orders-db", "mysql:8.4");
    object["metadata"]["namespace"] = json!("shop");
    object["spec"]["serviceName"] = json!("orders-hl");
    let output = common::mutate_cli(&serde_json::to_string(&object).unwrap(), &["--with-secret"]);
    assert!(!output.contains("mysql-0.mysql"), "the tutorial's hard-coded peer name leaked");
    let documents = common::documents(&output);
    assert_eq!(documents.len(), 8, "StatefulSet, ConfigMap, two Services, PDB, NetworkPolicy, two Secrets");
    for document in &documents {
        assert_eq!(document["metadata"]["namespace"], "shop", "{} is not in shop", document["kind"]);
    }
    let names: Vec<(&str, &str)> = documents
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("StatefulSet", "orders-db"),
            ("ConfigMap", "orders-db"),
            ("Service", "orders-hl"),
            ("Service", "orders-db-read"),
            ("PodDisruptionBudget", "orders-db"),
            ("NetworkPolicy", "orders-db"),
            ("Secret", "orders-db-credentials"),
            ("Secret", "orders-db-tls"),
        ]
    );
    let sts = &documents[0];
    let scripts = common::scripts(sts).into_iter().map(|(_, s)| s).collect::<Vec<_>>().join("\n");
    assert!(scripts.contains("statefulset='orders-db'") && scripts.contains("service='orders-hl'"));
    assert_eq!(sts["spec"]["template"]["spec"]["volumes"][1]["configMap"]["name"], "orders-db");
}

#[test]
fn the_users_fields_survive_the_expansion() {
    let mut object = annotated("db", "registry.example.com/mirror/mysql:8.4.3");
    let pod = &mut object["spec"]["template"]["spec"];
    pod["containers"][0]["env"] = json!([{"name": "TZ", "value": "Europe/Paris"}]);
    pod["containers"][0]["args"] = json!(["--max-connections=500"]);
    pod["containers"][0]["resources"] = json!({"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}});
    pod["containers"][0]["readinessProbe"] = json!({"tcpSocket": {"port": 3306}, "periodSeconds": 7});
    pod["containers"].as_array_mut().unwrap().push(json!({"name": "audit", "image": "busybox:1.36"}));
    pod["initContainers"] = json!([{"name": "wait-for-vault", "image": "busybox:1.36"}]);
    pod["volumes"] = json!([{"name": "tls", "secret": {"secretName": "db-tls"}}]);
    pod["nodeSelector"] = json!({"disk": "ssd"});
    pod["priorityClassName"] = json!("databases");
    pod["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]}});

    let sts = expand(&object);
    let pod = &sts["spec"]["template"]["spec"];
    let mysql = &pod["containers"][0];
    assert_eq!(mysql["image"], "registry.example.com/mirror/mysql:8.4.3");
    assert_eq!(mysql["env"][0], json!({"name": "TZ", "value": "Europe/Paris"}));
    assert_eq!(mysql["args"], json!(["--max-connections=500"]));
    assert_eq!(mysql["resources"]["requests"]["cpu"], "2", "the user's request is kept");
    assert!(mysql["resources"]["requests"].get("memory").is_none(), "no request may exceed the user's limit");
    assert_eq!(mysql["readinessProbe"], json!({"tcpSocket": {"port": 3306}, "periodSeconds": 7}));
    let names: Vec<&str> =
        pod["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mysql", "xtrabackup", "audit"]);
    let init: Vec<&str> =
        pod["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(init, ["init-mysql", "clone-mysql", "wait-for-vault"]);
    assert_eq!(pod["volumes"][0]["name"], "tls");
    assert_eq!(pod["nodeSelector"], json!({"disk": "ssd"}));
    assert_eq!(pod["priorityClassName"], "databases");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert!(
        pod["affinity"]["podAntiAffinity"].get("preferredDuringSchedulingIgnoredDuringExecution").is_none()
    );
    assert_eq!(
        pod["initContainers"][0]["image"], "registry.example.com/mirror/mysql:8.4.3",
        "init runs the user's image"
    );
}

#[test]
fn annotations_choose_storage_class_secret_read_service_backup_image_and_metrics() {
    let mut object = annotated("db", "mysql:8.0.40");
    for (key, value) in [
        ("storage", "50Gi"),
        ("storage-class", "fast-ssd"),
        ("root-password-secret", "vault-db"),
        ("read-service", "db-readers"),
        ("backup-image", "registry.example.com/pxb:8.0.35"),
        ("metrics", "true"),
        ("flavor", "mysql-8.0"),
    ] {
        object = with_annotation(object, &format!("mysql-webhook.io/{key}"), value);
    }
    let mutation = mutate(&object, Operation::Create, Some("team-a")).unwrap().unwrap();
    let sts = serde_json::to_value(&mutation.expanded).unwrap();
    let claim = &sts["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(claim["storageClassName"], "fast-ssd");
    let pod = &sts["spec"]["template"]["spec"];
    let credentials = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "credentials").unwrap();
    assert_eq!(credentials["secret"]["secretName"], "vault-db");
    assert_eq!(pod["containers"][1]["image"], "registry.example.com/pxb:8.0.35");
    assert_eq!(pod["initContainers"][1]["image"], "registry.example.com/pxb:8.0.35");
    assert_eq!(pod["containers"][2]["name"], "mysqld-exporter");
    assert_eq!(pod["containers"][2]["ports"][0]["containerPort"], 9104);
    assert_eq!(mutation.plan.read_service, "db-readers");
    assert_eq!(mutation.plan.namespace.as_deref(), Some("team-a"), "the request's namespace is used");

    // Turning metrics off again removes the exporter.
    let off = with_annotation(sts, "mysql-webhook.io/metrics", "false");
    let names: Vec<String> = expand(&off)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["mysql", "xtrabackup"]);
    let volumes = expand(&off)["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(!volumes.contains("exporter-config"), "its volume goes too");
}

#[test]
fn no_container_ever_gets_an_empty_root_password() {
    for flavor in ["mysql-8.4", "mysql-8.0", "mysql-5.7", "mariadb"] {
        let example =
            std::fs::read_to_string(common::repo_path(&format!("deploy/examples/{flavor}.yaml"))).unwrap();
        let output = common::mutate_cli(&example, &[]);
        assert!(!output.contains("ALLOW_EMPTY"), "{flavor}");
        let sts = &common::documents(&output)[0];
        let mysql = &sts["spec"]["template"]["spec"]["containers"][0];
        let env = &mysql["env"][0];
        let expected =
            if flavor == "mariadb" { "MARIADB_ROOT_PASSWORD_FILE" } else { "MYSQL_ROOT_PASSWORD_FILE" };
        assert_eq!(env, &json!({"name": expected, "value": "/etc/mysql-webhook/credentials/root-password"}));
        let credentials = sts["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "credentials")
            .expect("the credentials volume");
        assert_eq!(credentials["secret"], json!({"secretName": "mysql-credentials"}));
    }
}

#[test]
fn no_container_gets_a_password_in_its_environment() {
    for flavor in ["mysql-8.4", "mysql-8.0", "mysql-5.7", "mariadb"] {
        let mut example: serde_json::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(common::repo_path(&format!("deploy/examples/{flavor}.yaml"))).unwrap(),
        )
        .unwrap();
        example["metadata"]["annotations"]["mysql-webhook.io/metrics"] = json!("true");
        example["metadata"]["annotations"]["mysql-webhook.io/backup-schedule"] = json!("@daily");
        example["metadata"]["annotations"]["mysql-webhook.io/backup-target"] = json!("pvc://backups/db");
        let output = common::mutate_cli(&example.to_string(), &[]);
        for document in common::documents(&output) {
            let text = document.to_string();
            assert!(!text.contains("secretKeyRef"), "{flavor}: {}", document["kind"]);
            assert!(!text.contains("MYSQLD_EXPORTER_PASSWORD"), "{flavor}");
        }
    }
}

#[test]
fn an_earlier_expansion_loses_its_password_variables_and_probes_on_update() {
    // What an earlier version made: the password from the Secret as a variable, probes that
    // read it, the sidecar and exporter with password variables.
    let mut old = annotated("db", "mariadb:11.4");
    old["metadata"]["annotations"]["mysql-webhook.io/metrics"] = json!("true");
    let pod = &mut old["spec"]["template"]["spec"];
    let from_secret = |name: &str| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "root-password"}}});
    pod["containers"][0]["env"] = json!([from_secret("MARIADB_ROOT_PASSWORD")]);
    pod["containers"][0]["readinessProbe"] = json!({"exec": {"command": ["bash", "-c", "MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" mariadb -h 127.0.0.1 -u root -e 'SELECT 1'"]}, "periodSeconds": 2});
    pod["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mariadb-backup", "image": "mariadb:11.4", "env": [from_secret("MYSQL_PWD")]}));
    pod["containers"].as_array_mut().unwrap().push(json!({"name": "mysqld-exporter", "image": "prom/mysqld-exporter:v0.17.2", "args": ["--mysqld.username=root"], "env": [from_secret("MYSQLD_EXPORTER_PASSWORD")]}));
    let mutation = mutate(&old, Operation::Create, None).unwrap().unwrap();
    let expanded = serde_json::to_value(&mutation.expanded).unwrap();
    let text = expanded.to_string();
    assert!(!text.contains("secretKeyRef") && !text.contains("--mysqld.username"), "{text}");
    let mysql = &expanded["spec"]["template"]["spec"]["containers"][0];
    let probe = mysql["readinessProbe"]["exec"]["command"][2].as_str().unwrap();
    assert!(probe.starts_with("MYSQL_PWD=$(< /etc/mysql-webhook/credentials/root-password)"), "{probe}");
    // A probe of yours stays.
    let mut yours = annotated("db", "mysql:8.4");
    yours["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
        json!({"tcpSocket": {"port": 3306}, "periodSeconds": 7});
    let mutation = mutate(&yours, Operation::Create, None).unwrap().unwrap();
    let expanded = serde_json::to_value(&mutation.expanded).unwrap();
    assert_eq!(
        expanded["spec"]["template"]["spec"]["containers"][0]["readinessProbe"],
        json!({"tcpSocket": {"port": 3306}, "periodSeconds": 7})
    );
}

#[test]
fn the_patch_reproduces_the_expansion_and_escapes_annotation_style_keys() {
    let mut object = annotated("db", "mysql:8.4");
    object["metadata"]["labels"] = json!({"team": "a"});
    let mutation = mutate(&object, Operation::Create, None).unwrap().unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &mutation.patch.operations()).expect("the patch applies");
    assert_eq!(patched, serde_json::to_value(&mutation.expanded).unwrap());
    let paths: Vec<String> = mutation.patch.operations().0.iter().map(|op| op.path().to_string()).collect();
    assert!(paths.contains(&"/metadata/labels/mysql-webhook.io~1managed".to_owned()), "{paths:?}");
}

#[test]
fn an_expanded_object_yields_no_patch_even_with_api_server_serialisation_noise() {
    let mut expanded = expand(&annotated("db", "mariadb:11.4"));
    // What kube-apiserver adds when it serialises the object for the webhook.
    expanded["metadata"]["creationTimestamp"] = Value::Null;
    expanded["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
    expanded["status"] = json!({"replicas": 0, "availableReplicas": 0});
    let mutation = mutate(&expanded, Operation::Create, None).unwrap().unwrap();
    assert!(mutation.patch.is_empty(), "{:?}", mutation.patch);
    assert!(mutation.warnings.is_empty(), "no warnings when nothing changes");
}

#[test]
fn updating_replicas_or_image_never_patches_immutable_fields() {
    let created = expand(&annotated("db", "mysql:8.4"));
    for edit in [
        json!({"spec": {"replicas": 5}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "mysql", "image": "mysql:8.4.4"}]}}}}),
        json!({"metadata": {"annotations": {"mysql-webhook.io/storage": "20Gi"}}}),
    ] {
        // A client-side edit that drops what the expansion added, as `kubectl apply` of the
        // original manifest would for the template.
        let mut updated = created.clone();
        json_patch::merge(&mut updated, &edit);
        let mutation = mutate(&updated, Operation::Update { old: &created }, None).unwrap().unwrap();
        for op in &mutation.patch.operations().0 {
            let path = op.path().to_string();
            for immutable in [
                "/spec/volumeClaimTemplates",
                "/spec/selector",
                "/spec/serviceName",
                "/spec/podManagementPolicy",
            ] {
                assert!(!path.starts_with(immutable), "{path} touched for edit {edit}");
            }
        }
        let mut patched = updated.clone();
        json_patch::patch(&mut patched, &mutation.patch.operations()).unwrap();
        assert_eq!(patched["spec"]["template"]["spec"]["containers"][1]["name"], "xtrabackup");
    }
}

#[test]
fn an_update_of_a_storage_annotation_warns_that_claims_do_not_change() {
    let created = expand(&annotated("db", "mysql:8.4"));
    let updated = with_annotation(created.clone(), "mysql-webhook.io/storage", "20Gi");
    let mutation = mutate(&updated, Operation::Update { old: &created }, None).unwrap().unwrap();
    assert_eq!(
        mutation.warnings,
        ["annotation mysql-webhook.io/storage is \"20Gi\" but the claims were made with \"10Gi\"; \
          volumeClaimTemplates can't change: resize each PersistentVolumeClaim instead"]
    );
}

#[test]
fn opting_in_an_existing_statefulset_on_update_is_refused_with_the_way_out() {
    let mut plain = annotated("db", "mysql:8.4");
    plain["metadata"]["annotations"] = json!({});
    plain["spec"]["serviceName"] = json!("db");
    let annotated_now = annotated("db", "mysql:8.4");
    let mut annotated_now_with_service = annotated_now.clone();
    annotated_now_with_service["spec"]["serviceName"] = json!("db");
    let err = mutate(&annotated_now_with_service, Operation::Update { old: &plain }, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mysql-webhook.io/replicated was added to an existing StatefulSet that has no \"data\" volumeClaimTemplate; \
         volumeClaimTemplates can't change after creation: delete the StatefulSet with --cascade=orphan and apply it again"
    );
}

#[test]
fn unannotated_and_opted_out_objects_pass_through_unchanged() {
    let mut opted_out = annotated("db", "mysql:8.4");
    opted_out["metadata"]["annotations"]["mysql-webhook.io/replicated"] = json!("false");
    let mut plain = annotated("db", "mysql:8.4");
    plain["metadata"].as_object_mut().unwrap().remove("annotations");
    for object in [opted_out, plain] {
        assert!(mutate(&object, Operation::Create, None).unwrap().is_none());
    }

    let input = "# a comment that YAML drops\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  \
                 annotations:\n    mysql-webhook.io/replicated: \"true\"\ndata:\n  z: '1'\n  a: \"two\"\n---\n\
                 apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web, annotations: {mysql-webhook.io/replicated: \"false\"}}\n\
                 spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
                 spec: {containers: [{name: web, image: nginx}]}\n";
    let round_trip = mysql_webhook_core::manifests::to_yaml(
        &mysql_webhook_core::manifests::read_documents(input).unwrap(),
    );
    let output = common::run_cli(&["mutate", "-f", "-"], input);
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), round_trip);
    assert!(output.stderr.is_empty(), "nothing to say about objects left alone");
}

/// What kube-apiserver's defaulting adds to a StatefulSet before admission and again after a
/// webhook's patch (pkg/apis/apps/v1 and core/v1 defaults).
fn apiserver_defaults(sts: &mut Value) {
    let spec = &mut sts["spec"];
    spec["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
    spec["revisionHistoryLimit"] = json!(10);
    spec["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Retain", "whenScaled": "Retain"});
    spec["podManagementPolicy"] = json!("OrderedReady");
    for claim in spec["volumeClaimTemplates"].as_array_mut().into_iter().flatten() {
        claim["spec"]["volumeMode"] = json!("Filesystem");
        claim["status"] = json!({"phase": "Pending"});
    }
    let pod = &mut spec["template"]["spec"];
    for (key, value) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("terminationGracePeriodSeconds", json!(30)),
    ] {
        pod[key] = value;
    }
    for volume in pod["volumes"].as_array_mut().into_iter().flatten() {
        for source in ["configMap", "secret"] {
            if volume.get(source).is_some() {
                volume[source]["defaultMode"] = json!(420);
            }
        }
    }
    for list in ["initContainers", "containers"] {
        for container in pod[list].as_array_mut().into_iter().flatten() {
            container["imagePullPolicy"] = json!("IfNotPresent");
            container["terminationMessagePath"] = json!("/dev/termination-log");
            container["terminationMessagePolicy"] = json!("File");
            if container.get("resources").is_none() {
                container["resources"] = json!({});
            }
            for port in container["ports"].as_array_mut().into_iter().flatten() {
                port["protocol"] = json!("TCP");
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(probe) = container.get_mut(probe) {
                    for (key, default) in [
                        ("successThreshold", 1),
                        ("failureThreshold", 3),
                        ("timeoutSeconds", 1),
                        ("periodSeconds", 10),
                    ] {
                        if probe.get(key).is_none() {
                            probe[key] = json!(default);
                        }
                    }
                }
            }
        }
    }
    sts["metadata"]["creationTimestamp"] = Value::Null;
    sts["metadata"]["generation"] = json!(1);
    sts["metadata"]["uid"] = json!("0f4a4c8e-6a0b-4a43-9a8e-1f5d7c2b9e11");
    sts["status"] = json!({"replicas": 0, "availableReplicas": 0});
}

#[test]
fn an_expanded_object_after_api_server_defaulting_yields_no_patch() {
    for image in ["mysql:8.4", "mysql:5.7", "mariadb:11.4"] {
        let object = with_annotation(annotated("db", image), "mysql-webhook.io/metrics", "true");
        let object = with_annotation(object, "mysql-webhook.io/backup-image", "xtrabackup:custom");
        let mut stored = expand(&object);
        apiserver_defaults(&mut stored);
        for operation in [Operation::Create, Operation::Update { old: &stored }] {
            let mutation = mutate(&stored, operation, None).unwrap().unwrap();
            assert!(mutation.patch.is_empty(), "{image}: {:?}", mutation.patch);
        }
    }
}

#[test]
fn a_users_edit_of_a_managed_container_is_converged_back() {
    let mut stored = expand(&annotated("db", "mysql:8.4"));
    apiserver_defaults(&mut stored);
    stored["spec"]["template"]["spec"]["initContainers"][1]["command"] = json!(["sh", "-c", "exit 0"]);
    let mutation = mutate(&stored, Operation::Update { old: &stored }, None).unwrap().unwrap();
    let expanded = serde_json::to_value(&mutation.expanded).unwrap();
    let clone = &expanded["spec"]["template"]["spec"]["initContainers"][1];
    assert_eq!(clone["command"][0], "bash");
    assert!(clone["command"][2].as_str().unwrap().contains("clone"));
}
