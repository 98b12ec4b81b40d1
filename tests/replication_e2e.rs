//! End-to-end: the expanded `mariadb` flavor runs for real, without Kubernetes. What
//! `mysql-webhook mutate --with-secret` emits is run by the pod runner in `e2e/` (network
//! namespaces, per-container UTS/mount/PID namespaces, Debian's MariaDB, mariadb-backup, socat),
//! and each test asserts that the members really form a replicating cluster.
//!
//! Needs root and `apt-get install mariadb-server mariadb-backup mariadb-client socat`
//! (`.ci/run` does both); fails with that message otherwise.
//! Run alone: `cargo test --release --test replication_e2e`.

mod e2e;

use e2e::{Cluster, GRACE, Manifests};
use serde_json::json;

/// A three-member MariaDB StatefulSet as a user writes it, in the `default` namespace.
fn cluster(replicas: u32) -> Cluster {
    e2e::require_environment();
    let input = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "annotations": {"mysql-webhook.io/replicated": "true"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "mysql", "image": "mariadb:11.4"}]}
            }
        }
    });
    let mut cluster = Cluster::new(Manifests::expand(&input));
    cluster.scale(replicas);
    cluster
}

const TABLE: &str = "CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.orders (id INT PRIMARY KEY, item VARCHAR(20))";

#[test]
fn three_members_come_up_with_distinct_server_ids_and_only_the_primary_writable() {
    let cluster = cluster(3);
    for ordinal in 0..3 {
        assert_eq!(
            cluster.sql(ordinal, "SELECT @@server_id"),
            (100 + ordinal).to_string(),
            "server-id = 100 + ordinal"
        );
        let read_only = if ordinal == 0 { "0" } else { "1" };
        assert_eq!(cluster.sql(ordinal, "SELECT @@read_only"), read_only, "member {ordinal}");
    }
    for ordinal in 0..3 {
        for container in ["mysql", "mariadb-backup"] {
            assert_eq!(cluster.restarts(ordinal, container), 0, "{container} of member {ordinal} restarted");
        }
    }
    // The sidecar is ready only once it serves clones, so no clone ever hits a closed port.
    for ordinal in 1..3 {
        assert!(
            !cluster.log(ordinal, "clone-mysql").contains("(attempt 2)"),
            "member {ordinal} had to retry its clone"
        );
    }
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'primary')");
    // A replica refuses writes from an account without READ ONLY ADMIN (MariaDB's read_only
    // does not stop root, which has it: see the README's limits).
    cluster.wait_for(1, "SELECT COUNT(*) FROM shop.orders", "1");
    cluster.sql(1, "CREATE USER IF NOT EXISTS app@'%' IDENTIFIED BY 'app-pass'; GRANT INSERT, SELECT ON shop.* TO app@'%'");
    let refused =
        cluster.sql_as(1, "app", "app-pass", "INSERT INTO shop.orders VALUES (2, 'replica')").unwrap_err();
    assert!(refused.contains("--read-only"), "{refused}");
}

#[test]
fn a_row_written_on_the_primary_reaches_every_replica() {
    let cluster = cluster(3);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'keyboard')");
    for ordinal in 1..3 {
        cluster.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 1", "keyboard");
    }
}

#[test]
fn replication_runs_as_the_replication_user_with_the_generated_password() {
    let cluster = cluster(3);
    for ordinal in 1..3 {
        let status = cluster.replica_status(ordinal);
        assert_eq!(status["Master_User"], "replication", "member {ordinal}");
        assert_eq!(status["Master_Host"], "db-0.db");
        assert_eq!(status["Slave_IO_Running"], "Yes", "{status:?}");
        assert_eq!(status["Slave_SQL_Running"], "Yes", "{status:?}");
    }
    let replication_password = cluster.manifests.secret_value("replication-password");
    assert_eq!(replication_password.len(), 32);
    cluster
        .sql_as(0, "replication", &replication_password, "SELECT 1")
        .expect("the replication account has the Secret's password");
    let root_password = cluster.manifests.secret_value("root-password");
    assert_ne!(root_password, replication_password);
    let empty = cluster.sql_as(0, "root", "", "SELECT 1").unwrap_err();
    assert!(empty.contains("Access denied"), "root never has an empty password: {empty}");
}

#[test]
fn scaling_to_four_clones_from_a_replica_and_replicates() {
    let mut cluster = cluster(3);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'before')");
    cluster.wait_for(2, "SELECT COUNT(*) FROM shop.orders", "1");
    cluster.scale(4);
    assert!(
        cluster.log(3, "clone-mysql").contains("cloning from db-2.db:3307"),
        "member 3 clones from member 2"
    );
    cluster.wait_for(3, "SELECT item FROM shop.orders WHERE id = 1", "before");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (2, 'after')");
    cluster.wait_for(3, "SELECT item FROM shop.orders WHERE id = 2", "after");
    assert_eq!(
        cluster.replica_status(3)["Master_Host"],
        "db-0.db",
        "it replicates from the primary, not from its donor"
    );
    assert_eq!(cluster.sql(3, "SELECT @@server_id"), "103");
}

#[test]
fn restarting_member_1_does_not_clone_again_and_replication_resumes() {
    let mut cluster = cluster(3);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'before')");
    cluster.wait_for(1, "SELECT COUNT(*) FROM shop.orders", "1");
    let took = cluster.delete_pod(1);
    // Every container handles SIGTERM: the pod goes well before the grace period ends.
    assert!(took < GRACE, "deleting member 1 took {took:?}: a container ignored SIGTERM");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (2, 'while away')");
    cluster.start_pod(1);
    assert!(cluster.log(1, "clone-mysql").contains("data directory already initialised, nothing to clone"));
    assert_eq!(
        cluster.log(1, "clone-mysql").matches("cloning from").count(),
        1,
        "cloned once, at the first start"
    );
    cluster.wait_for(1, "SELECT item FROM shop.orders WHERE id = 2", "while away");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (3, 'after')");
    cluster.wait_for(1, "SELECT item FROM shop.orders WHERE id = 3", "after");
    assert_eq!(cluster.replica_status(1)["Slave_IO_Running"], "Yes");
}
