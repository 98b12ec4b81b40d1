//! End-to-end: the expanded `mariadb` example runs for real, without Kubernetes. What
//! `mysql-webhook mutate --with-secret` emits for `deploy/examples/mariadb.yaml` is run by the pod
//! runner in `e2e/` (network namespaces, per-container UTS/mount/PID namespaces, Debian's MariaDB,
//! mariadb-backup and socat), and each test asserts that the members really form a replicating
//! cluster. Each test brings up its own cluster (about 10 s), so they run in parallel and alone.
//!
//! Needs root and `apt-get install mariadb-server mariadb-client mariadb-backup socat` (`.ci/run`
//! does both); fails with that message otherwise. Run alone:
//! `cargo test --release --test replication_e2e` (add `-- --nocapture` for the timings).

mod e2e;

use e2e::{Cluster, GRACE, Manifests};
use mysql_webhook::member_tls::{self as certs, Renewal};
use mysql_webhook_core::companions::{TlsIdentity, member_dns_names, tls_secret};

/// The README's MariaDB example (`mysql`, three members, `mariadb:11.4`), expanded and started.
fn example_cluster() -> Cluster {
    let manifests = example();
    let replicas = manifests.replicas();
    assert_eq!(replicas, 3);
    Cluster::start(manifests, replicas)
}

fn example() -> Manifests {
    Manifests::mutate("deploy/examples/mariadb.yaml")
}

const TABLE: &str = "CREATE DATABASE IF NOT EXISTS shop; \
                     CREATE TABLE IF NOT EXISTS shop.orders (id INT PRIMARY KEY, item VARCHAR(20))";

const SIDECAR: &str = "mariadb-backup";

#[test]
fn three_members_come_up_without_restarts_or_clone_retries() {
    let cluster = example_cluster();
    for ordinal in 0..3 {
        assert_eq!(cluster.sql(ordinal, "SELECT 1"), "1", "member {ordinal} serves queries");
        for container in ["mysql", SIDECAR] {
            assert_eq!(cluster.restarts(ordinal, container), 0, "{container} of member {ordinal} restarted");
        }
    }
    // The sidecar is Ready only once it serves clones, so the next member's clone never hits a
    // closed port.
    for ordinal in 1..3 {
        let clone = cluster.log(ordinal, "clone-mysql");
        assert!(clone.contains("(attempt 1)"), "member {ordinal} cloned:\n{clone}");
        assert!(!clone.contains("(attempt 2)"), "member {ordinal} had to retry its clone:\n{clone}");
        let status = cluster.replica_status(ordinal);
        assert_eq!(
            (status["Slave_IO_Running"].as_str(), status["Slave_SQL_Running"].as_str()),
            ("Yes", "Yes")
        );
        // By GTID even though the primary had logged nothing when they cloned: crash-safe.
        assert_eq!(status["Using_Gtid"], "Slave_Pos", "member {ordinal}");
    }
}

#[test]
fn server_ids_are_distinct_and_one_hundred_plus_the_ordinal() {
    let cluster = example_cluster();
    let ids: Vec<String> = (0..3).map(|ordinal| cluster.sql(ordinal, "SELECT @@server_id")).collect();
    assert_eq!(ids, ["100", "101", "102"]);
}

#[test]
fn only_the_primary_is_writable_and_the_replicas_are_read_only() {
    let cluster = example_cluster();
    assert_eq!(cluster.sql(0, "SELECT @@read_only"), "0");
    assert_eq!(
        cluster.sql(0, "SELECT CURRENT_USER()"),
        "root@%",
        "the test is a client from outside the pods"
    );
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'primary')");
    // An application account too, created on the primary and replicated.
    cluster.sql(0, "CREATE USER app@'%' IDENTIFIED BY 'app-pass'; GRANT INSERT, SELECT ON shop.* TO app@'%'");
    cluster
        .sql_as(0, "app", "app-pass", "INSERT INTO shop.orders VALUES (2, 'app')")
        .expect("the primary is writable");
    for ordinal in 1..3 {
        assert_eq!(cluster.sql(ordinal, "SELECT @@read_only"), "1", "member {ordinal}");
        cluster.wait_for(ordinal, "SELECT COUNT(*) FROM shop.orders", "2");
        let app = cluster.sql_as(ordinal, "app", "app-pass", "INSERT INTO shop.orders VALUES (3, 'replica')");
        let error = app.expect_err("a replica refuses the application's writes");
        assert!(error.contains("--read-only"), "member {ordinal}: {error}");
        // MariaDB's read_only doesn't stop READ ONLY ADMIN, which root@'%' had: the sidecar
        // takes it away, so root from outside the pod can't write to a replica either.
        let password = cluster.manifests.secret_value("root-password");
        let root =
            cluster.sql_as(ordinal, "root", &password, "INSERT INTO shop.orders VALUES (3, 'replica')");
        let error = root.expect_err("a replica refuses root's writes");
        assert!(error.contains("--read-only"), "member {ordinal}: {error}");
    }
}

#[test]
fn a_row_written_on_the_primary_reaches_every_replica() {
    let cluster = example_cluster();
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'keyboard')");
    for ordinal in 1..3 {
        let lag = cluster.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 1", "keyboard");
        eprintln!("the row reached member {ordinal} within {} ms", lag.as_millis());
    }
}

#[test]
fn scaling_to_four_clones_from_a_replica_and_replicates() {
    // The primary alone takes writes first, so the replicas clone a non-empty GTID position
    // (the other scenarios clone before any write: an empty one), and member 3 clones from a
    // GTID replica: the backup's two-statement slave_info.
    let mut cluster = Cluster::start(example(), 1);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'before')");
    cluster.scale(3);
    cluster.wait_for(2, "SELECT COUNT(*) FROM shop.orders", "1");
    cluster.scale(4);
    let clone = cluster.log(3, "clone-mysql");
    assert!(clone.contains("cloning from mysql-2.mysql:3307"), "member 3 clones from member 2:\n{clone}");
    cluster.wait_for(3, "SELECT item FROM shop.orders WHERE id = 1", "before");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (2, 'after')");
    cluster.wait_for(3, "SELECT item FROM shop.orders WHERE id = 2", "after");
    for ordinal in 1..4 {
        let status = cluster.replica_status(ordinal);
        assert_eq!(status["Master_Host"], "mysql-0.mysql", "member {ordinal} replicates from the primary");
        assert_eq!(status["Using_Gtid"], "Slave_Pos", "member {ordinal}");
    }
    assert_eq!(cluster.sql(3, "SELECT @@server_id"), "103");
}

#[test]
fn deleting_and_restarting_member_1_does_not_clone_again_and_replication_resumes() {
    let mut cluster = example_cluster();
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'before')");
    cluster.wait_for(1, "SELECT COUNT(*) FROM shop.orders", "1");
    let took = cluster.delete_pod(1);
    // Every container handles SIGTERM: the pod goes well before the grace period ends.
    assert!(took < GRACE, "deleting member 1 took {took:?}: a container ignored SIGTERM");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (2, 'while away')");
    cluster.start_pod(1);
    let clone = cluster.log(1, "clone-mysql");
    assert!(clone.contains("data directory already initialised, nothing to clone"), "{clone}");
    assert_eq!(clone.matches("cloning from").count(), 1, "cloned once, at the first start:\n{clone}");
    cluster.wait_for(1, "SELECT item FROM shop.orders WHERE id = 2", "while away");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (3, 'after')");
    cluster.wait_for(1, "SELECT item FROM shop.orders WHERE id = 3", "after");
    let status = cluster.replica_status(1);
    assert_eq!((status["Slave_IO_Running"].as_str(), status["Slave_SQL_Running"].as_str()), ("Yes", "Yes"));
}

#[test]
fn replication_runs_as_the_replication_user_with_the_generated_password() {
    let cluster = example_cluster();
    let replication_password = cluster.manifests.secret_value("replication-password");
    let root_password = cluster.manifests.secret_value("root-password");
    assert_eq!(replication_password.len(), 32, "generated: 32 characters");
    assert_ne!(root_password, replication_password);
    for ordinal in 1..3 {
        let status = cluster.replica_status(ordinal);
        assert_eq!(status["Master_User"], "replication", "member {ordinal}");
        assert_eq!(status["Master_Host"], "mysql-0.mysql", "member {ordinal}");
    }
    cluster
        .sql_as_over(true, 0, "replication", &replication_password, "SELECT 1")
        .expect("the replication account has the Secret's password");
    // root: the Secret's password on every member (the replicas got it through the clone), and
    // never an empty one.
    for ordinal in 0..3 {
        cluster.sql_as(ordinal, "root", &root_password, "SELECT 1").expect("root has the Secret's password");
        let empty = cluster.sql_as(ordinal, "root", "", "SELECT 1").expect_err("root has a password");
        assert!(empty.contains("Access denied"), "member {ordinal}: {empty}");
    }
}

#[test]
fn replicas_catch_up_after_the_primary_is_deleted_and_restarted() {
    let mut cluster = example_cluster();
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'before')");
    cluster.wait_for(2, "SELECT COUNT(*) FROM shop.orders", "1");
    cluster.delete_pod(0);
    cluster.start_pod(0);
    let server = cluster.log(0, "mysql");
    assert_eq!(server.matches("entrypoint: initialising").count(), 1, "member 0 kept its data:\n{server}");
    cluster.sql(0, "INSERT INTO shop.orders VALUES (2, 'after')");
    // The replicas reconnect on their own (MASTER_CONNECT_RETRY).
    for ordinal in 1..3 {
        cluster.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 2", "after");
    }
}

#[test]
fn replicas_whose_server_is_killed_restart_and_catch_up() {
    let cluster = example_cluster();
    cluster.sql(0, TABLE);
    // Many small transactions, so each replica is killed in the middle of applying them. A
    // replica that kept its place in a file (relay-log.info) applied some again on restart and
    // stopped on a duplicate key. Member 1 cloned the primary's backup, member 2 a replica's.
    for (ordinal, first_id) in [(1, 1), (2, 1001)] {
        let rows: Vec<String> = (first_id..first_id + 300)
            .map(|id| format!("INSERT INTO shop.orders VALUES ({id}, 'row')"))
            .collect();
        cluster.sql(0, &rows.join("; "));
        cluster.crash(ordinal, "mysql");
    }
    cluster.sql(0, "INSERT INTO shop.orders VALUES (5000, 'after')");
    for ordinal in 1..3 {
        cluster.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 5000", "after");
        assert_eq!(cluster.sql(ordinal, "SELECT COUNT(*) FROM shop.orders"), "601");
        let status = cluster.replica_status(ordinal);
        assert_eq!(
            (status["Slave_IO_Running"].as_str(), status["Slave_SQL_Running"].as_str()),
            ("Yes", "Yes")
        );
    }
}

#[test]
fn replication_is_encrypted_and_verified_and_the_account_refused_without_tls() {
    let cluster = example_cluster();
    for ordinal in 1..3 {
        let status = cluster.replica_status(ordinal);
        assert_eq!(
            (status["Master_SSL_Allowed"].as_str(), status["Master_SSL_Verify_Server_Cert"].as_str()),
            ("Yes", "Yes"),
            "member {ordinal}"
        );
        assert_eq!(status["Master_SSL_CA_File"], "/etc/mysql-webhook/tls/ca.crt", "member {ordinal}");
        assert_eq!(status["Slave_IO_Running"], "Yes", "member {ordinal}: {}", status["Last_IO_Error"]);
    }
    // The primary sees the replicas' connections encrypted.
    let ssl_sessions = cluster.sql(0, "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'");
    let accepts: u32 = ssl_sessions.split('\t').nth(1).unwrap().parse().unwrap();
    assert!(accepts >= 2, "{ssl_sessions}");
    let password = cluster.manifests.secret_value("replication-password");
    let plain = cluster.sql_as_over(false, 0, "replication", &password, "SELECT 1");
    let error = plain.expect_err("the replication account requires TLS");
    assert!(error.contains("Access denied"), "{error}");
    cluster.sql_as_over(true, 0, "replication", &password, "SELECT 1").expect("over TLS it logs in");
    assert_eq!(cluster.sql(0, "SELECT ssl_type FROM mysql.user WHERE User = 'replication'"), "ANY");
}

/// The plan of the example, for the names its certificate carries.
fn example_plan() -> mysql_webhook_core::Plan {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/mariadb.yaml"))
        .unwrap();
    let sts = serde_yaml_ng::from_str(&text).unwrap();
    mysql_webhook_core::plan(&sts, None).unwrap().expect("the example is annotated")
}

#[test]
fn a_client_without_a_member_certificate_gets_no_backup_byte() {
    let mut cluster = Cluster::start(example(), 2);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'secret')");
    // Another CA's certificate for the very same names: what an outsider could make.
    let plan = example_plan();
    let outsider = certs::member_identity("mysql", member_dns_names(&plan)).unwrap();
    let outsider = cluster.write_secret_files(&tls_secret(&plan, &outsider), "outsider-tls");
    let member = cluster.write_secret_files(&cluster.manifests.tls.clone(), "stolen-tls");
    let with = |dir: &std::path::Path| format!(",verify=0,cert={0}/tls.crt,key={0}/tls.key", dir.display());
    for ordinal in 0..2 {
        assert_eq!(cluster.read_clone_port(ordinal, "TCP", "", 5), 0, "plain text, member {ordinal}");
        assert_eq!(
            cluster.read_clone_port(ordinal, "OPENSSL", ",verify=0", 10),
            0,
            "no certificate, member {ordinal}"
        );
        assert_eq!(
            cluster.read_clone_port(ordinal, "OPENSSL", &with(&outsider), 10),
            0,
            "another CA, member {ordinal}"
        );
    }
    // The same client with a member's certificate gets the backup: the certificate is the only
    // thing that kept it out above.
    let received = cluster.read_clone_port(1, "OPENSSL", &with(&member), 60);
    assert!(received > 1_000_000, "a member's certificate gets a backup, got {received} bytes");
    // The listeners survived the refused clients: a new member still clones, from member 1.
    cluster.scale(3);
    let clone = cluster.log(2, "clone-mysql");
    assert!(clone.contains("(attempt 1)") && !clone.contains("(attempt 2)"), "{clone}");
    cluster.wait_for(2, "SELECT item FROM shop.orders WHERE id = 1", "secret");
}

#[test]
fn the_cluster_keeps_working_through_a_ca_rollover_and_a_certificate_renewal() {
    let mut cluster = Cluster::start(example(), 1);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'before')");
    let plan = example_plan();
    let reloaded = "the TLS Secret changed: restarting the listener with it";
    // Renews as the controller would, and waits until every running member's listener took it.
    let renew = |cluster: &mut Cluster, renewal, members: u32| {
        let before: Vec<usize> =
            (0..members).map(|ordinal| cluster.log(ordinal, SIDECAR).matches(reloaded).count()).collect();
        let identity = TlsIdentity::from_secret(&cluster.manifests.tls).unwrap();
        let renewed = certs::renew(&identity, renewal, "mysql", member_dns_names(&plan)).unwrap();
        cluster.renew_tls(tls_secret(&plan, &renewed));
        for (ordinal, count) in (0..members).zip(before) {
            cluster.wait_for_log(ordinal, SIDECAR, reloaded, count + 1);
        }
    };
    // First half of a rollover: member 0 trusts the new CA; member 1 clones with the old
    // certificate.
    renew(&mut cluster, Renewal::Authority, 1);
    cluster.scale(2);
    // Second half: both present a certificate of the new CA and still trust the old one.
    renew(&mut cluster, Renewal::Promotion, 2);
    let bundle = &cluster.manifests.tls.data.as_ref().unwrap()["ca.crt"].0;
    assert_eq!(String::from_utf8_lossy(bundle).matches("BEGIN CERTIFICATE").count(), 2);
    cluster.scale(3);
    // Then a plain renewal from the new CA; a member restarted after it clones nothing and
    // catches up.
    renew(&mut cluster, Renewal::Certificate, 3);
    cluster.delete_pod(2);
    cluster.start_pod(2);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (2, 'after')");
    for ordinal in 1..3 {
        cluster.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 1", "before");
        cluster.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 2", "after");
        let clone = cluster.log(ordinal, "clone-mysql");
        assert!(!clone.contains("(attempt 2)"), "member {ordinal} had to retry its clone:\n{clone}");
    }
}

#[test]
fn the_exporter_account_reads_status_but_no_user_table_and_writes_nothing() {
    let cluster = Cluster::start(example(), 2);
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'private')");
    cluster.wait_for(1, "SELECT COUNT(*) FROM shop.orders", "1");
    let password = cluster.manifests.secret_value("exporter-password");
    assert_eq!(password.len(), 32, "generated");
    // As mysqld-exporter connects: from inside the pod, over TCP to 127.0.0.1 (the sidecar's
    // container has the client), with the password from the mounted Secret's file.
    let exporter = |ordinal: u32, sql: &str| {
        let script = format!(
            "MYSQL_PWD=$(< /etc/mysql-webhook/credentials/exporter-password) mariadb -h 127.0.0.1 -u exporter -N -e \"{sql}\""
        );
        cluster.exec(ordinal, SIDECAR, &script)
    };
    for ordinal in 0..2 {
        let (ok, uptime) = exporter(ordinal, "SHOW GLOBAL STATUS LIKE 'Uptime'");
        assert!(ok && uptime.starts_with("Uptime\t"), "member {ordinal}: {uptime}");
        let (ok, out) = exporter(ordinal, "SELECT COUNT(*) FROM performance_schema.threads");
        assert!(ok, "member {ordinal} performance_schema: {out}");
        let (ok, out) = exporter(ordinal, "SELECT COUNT(*) FROM information_schema.INNODB_CMP");
        assert!(ok, "member {ordinal} (PROCESS): {out}");
        let (ok, out) = exporter(ordinal, "SELECT * FROM shop.orders");
        assert!(!ok && out.contains("command denied"), "member {ordinal} reads a user table: {out}");
        let (ok, out) = exporter(ordinal, "SELECT User FROM mysql.user");
        assert!(!ok && out.contains("command denied"), "member {ordinal} reads mysql.user: {out}");
    }
    // Writes, on the primary (a replica's read_only would refuse them anyway).
    let (ok, out) = exporter(0, "INSERT INTO shop.orders VALUES (2, 'exporter')");
    assert!(!ok && out.contains("command denied"), "the exporter writes: {out}");
    let (ok, out) = exporter(0, "CREATE DATABASE exporters");
    assert!(!ok && out.contains("denied"), "the exporter creates a database: {out}");
    // The replica got the account through replication, and its status is readable there.
    let (ok, status) = exporter(1, "SHOW SLAVE STATUS");
    assert!(ok && status.contains("mysql-0.mysql"), "{status}");
    assert_eq!(cluster.sql(0, "SELECT max_user_connections FROM mysql.user WHERE User = 'exporter'"), "3");
    // Only from inside the pod.
    let outside = cluster.sql_as(0, "exporter", &password, "SELECT 1").expect_err("the account is local");
    assert!(outside.contains("Access denied"), "{outside}");
    // No file of the primary's datadir (binlogs included) holds the password in clear.
    for entry in std::fs::read_dir(cluster.data_dir(0)).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let found = bytes.windows(password.len()).any(|w| w == password.as_bytes());
            assert!(!found, "{} holds the exporter password", entry.path().display());
        }
    }
}

#[test]
fn a_replica_whose_replication_stops_is_unready_until_it_runs_again() {
    let cluster = Cluster::start(example(), 2);
    let probe_period = std::time::Duration::from_secs(2);
    // Polls the generated readiness probe of member 1's mysql container, as the kubelet runs it
    // every period, until it says `ready`; within three periods.
    let expect = |ready: bool| {
        let deadline = std::time::Instant::now() + 3 * probe_period;
        loop {
            let (passes, output) = cluster.readiness(1, "mysql");
            if passes == ready {
                return output;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "member 1 not ready={ready} in 3 periods: {output}"
            );
            std::thread::sleep(probe_period / 4);
        }
    };
    expect(true);
    assert!(cluster.readiness(0, "mysql").0, "the primary accepts writes");
    cluster.sql(1, "STOP SLAVE");
    let why = expect(false);
    assert!(why.contains("replication IO thread is not running"), "{why}");
    cluster.sql(1, "START SLAVE");
    expect(true);
    cluster.sql(1, "STOP SLAVE SQL_THREAD");
    let why = expect(false);
    assert!(why.contains("replication SQL thread is not running"), "{why}");
    cluster.sql(1, "START SLAVE SQL_THREAD");
    expect(true);
    // The primary made read-only accepts no writes: not ready either. (Set from inside the pod:
    // root@'%' lacks READ ONLY ADMIN on MariaDB.)
    let as_local_root = |sql: &str| {
        let script = format!(
            "MYSQL_PWD=$(< /etc/mysql-webhook/credentials/root-password) mariadb -h 127.0.0.1 -u root -e '{sql}'"
        );
        let (ok, output) = cluster.exec(0, SIDECAR, &script);
        assert!(ok, "{sql}: {output}");
    };
    as_local_root("SET GLOBAL read_only = ON");
    let (ready, why) = cluster.readiness(0, "mysql");
    assert!(!ready && why.contains("read_only is on"), "{why}");
    as_local_root("SET GLOBAL read_only = OFF");
    assert!(cluster.readiness(0, "mysql").0);
}

#[test]
fn the_sidecar_says_what_it_waited_for() {
    let cluster = Cluster::start(example(), 1);
    let log = cluster.log(0, SIDECAR);
    // mysqld initialises its datadir first; the sidecar said so instead of spinning silently.
    assert!(
        log.contains("still waiting: mysqld is not accepting connections on 127.0.0.1:3306 yet"),
        "{log}"
    );
    assert!(log.contains("mysqld accepts connections"), "{log}");
}

#[test]
fn require_tls_refuses_a_plain_tcp_client_and_the_cluster_still_works() {
    let cluster =
        Cluster::start(Manifests::mutate_with("deploy/examples/mariadb.yaml", &[("require-tls", "true")]), 2);
    // Up and Ready (the probes and the sidecar log in over TLS), member 1 cloned (mariadb-backup
    // too), and replicating.
    cluster.sql(0, TABLE);
    cluster.sql(0, "INSERT INTO shop.orders VALUES (1, 'tls')");
    cluster.wait_for(1, "SELECT item FROM shop.orders WHERE id = 1", "tls");
    for ordinal in 0..2 {
        assert_eq!(cluster.sql(ordinal, "SELECT @@require_secure_transport"), "1", "member {ordinal}");
        let password = cluster.manifests.secret_value("root-password");
        let plain = cluster.sql_as_over(false, ordinal, "root", &password, "SELECT 1");
        let error = plain.expect_err("a plain TCP client is refused");
        // MariaDB answers a client without TLS "Access denied" once its password checks (MySQL:
        // "Connections using insecure transport are prohibited"): the same password over TLS
        // below is served, so transport is what was refused.
        assert!(error.contains("Access denied"), "member {ordinal}: {error}");
        cluster.sql_as_over(true, ordinal, "root", &password, "SELECT 1").expect("over TLS it is served");
        assert!(cluster.readiness(ordinal, "mysql").0, "member {ordinal}'s probe logs in");
    }
    assert_eq!(cluster.replica_status(1)["Slave_IO_Running"], "Yes");
}
