//! End-to-end backups and restores with real MariaDB servers: the backup Job's own scripts
//! (from the CronJob `mysql-webhook mutate` emits) take a backup of a running 3-member cluster
//! through the clone channel, to a directory (a PersistentVolumeClaim) and to an S3 server the
//! test starts on 127.0.0.1 (moto, with Debian's rclone as the client); a new cluster annotated
//! `restore-from` starts from it with exactly the same rows, and replicates. Retention, a
//! corrupted backup and an interrupted one are checked the same way. Point in time: the members'
//! own shipper archives the binary logs (to both kinds of target), and a cluster restored to a
//! time between two writes has the first and not the second.
//!
//! Needs what `replication_e2e` needs, plus `rclone` (Debian) and `moto[server]` (PyPI);
//! `.ci/run` installs them.

mod e2e;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use e2e::{Cluster, Manifests, shared_claim};

const EXAMPLE: &str = "deploy/examples/mariadb.yaml";

const ROWS: &str = "CREATE DATABASE shop; \
                    CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(20)); \
                    INSERT INTO shop.orders VALUES (1, 'keyboard'), (2, 'mouse'), (3, 'screen')";

/// `CHECKSUM TABLE` of the test's table on member `ordinal`.
fn checksum(cluster: &Cluster, ordinal: u32) -> String {
    cluster.sql(ordinal, "CHECKSUM TABLE shop.orders")
}

/// A cluster of the example with `annotations`, 3 members, the rows written and replicated to
/// every member (so the backup, taken from a replica, has them).
fn source_cluster(annotations: &[(&str, &str)], configure: impl FnOnce(&mut Manifests)) -> Cluster {
    let mut manifests = Manifests::mutate_with(EXAMPLE, annotations);
    configure(&mut manifests);
    let cluster = Cluster::start(manifests, 3);
    cluster.sql(0, ROWS);
    cluster.wait_for(2, "SELECT COUNT(*) FROM shop.orders", "3");
    cluster
}

/// A new cluster restored from `from`, with `members` members. The backup carries the source's
/// accounts, so the new cluster is given the source's credentials Secret (README: restore).
fn restored_cluster(source: &Cluster, from: &str, members: u32) -> Cluster {
    let mut manifests = Manifests::mutate_with(EXAMPLE, &[("restore-from", from)]);
    manifests.secret = source.manifests.secret.clone();
    Cluster::start(manifests, members)
}

/// The restored cluster has the source's rows, and replicates a new one.
fn assert_same_rows_and_replicating(source: &Cluster, restored: &Cluster) {
    let expected = checksum(source, 0);
    for ordinal in 0..3 {
        assert_eq!(checksum(restored, ordinal), expected, "member {ordinal} of the restored cluster");
    }
    restored.sql(0, "INSERT INTO shop.orders VALUES (4, 'after restore')");
    for ordinal in 1..3 {
        restored.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 4", "after restore");
        let status = restored.replica_status(ordinal);
        assert_eq!(
            (status["Slave_IO_Running"].as_str(), status["Slave_SQL_Running"].as_str()),
            ("Yes", "Yes")
        );
    }
}

/// `mysql-webhook backups list` as JSON.
fn list(target: &str, secret_file: Option<&Path>) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mysql-webhook"));
    // As for the server's own client: the test's S3 server speaks plain HTTP.
    command.env_remove("AWS_CA_BUNDLE").args(["backups", "list", "--target", target, "--output", "json"]);
    if let Some(file) = secret_file {
        command.arg("--secret-file").arg(file);
    }
    let output = command.output().expect("running mysql-webhook backups list");
    assert!(
        output.status.success(),
        "backups list --target {target}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn ids(listing: &serde_json::Value, complete: bool) -> Vec<String> {
    let backups = listing["backups"].as_array().expect("a list of backups");
    backups
        .iter()
        .filter(|b| b["complete"] == complete)
        .map(|b| b["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn a_backup_to_a_directory_restores_the_same_rows_into_a_new_cluster_that_replicates() {
    let target = shared_claim("backups");
    let mut source =
        source_cluster(&[("backup-schedule", "0 3 * * *"), ("backup-target", "pvc://backups/mysql")], |_| {});
    let started = Instant::now();
    let log = source.run_backup_job(&[], &|| false).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("backup to a directory took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        log.contains("streaming from mysql-2.mysql"),
        "a healthy replica is chosen, the newest first:\n{log}"
    );

    let listing = list(&target.join("mysql").display().to_string(), None);
    let complete = ids(&listing, true);
    assert_eq!(complete.len(), 1, "{listing}");
    let backup = &listing["backups"][0];
    assert_eq!(backup["verified"], true, "{backup}");
    assert!(backup["gtid"].as_str().is_some_and(|g| g.starts_with("0-100-")), "{backup}");

    let started = Instant::now();
    let restored = restored_cluster(&source, &format!("pvc://backups/mysql/{}", complete[0]), 3);
    eprintln!("restored cluster Ready in {:.1} s", started.elapsed().as_secs_f64());
    assert!(restored.log(0, "clone-mysql").contains(&format!("restored backup {}", complete[0])));
    assert_same_rows_and_replicating(&source, &restored);
}

/// An S3 server (moto) on 127.0.0.1, killed when dropped.
struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server is not installed; run pip install 'moto[server]' (or .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let server = S3Server { child, port };
        let made = server.rclone().args(["mkdir", "s3:backups"]).status().expect("running rclone");
        assert!(made.success(), "creating the bucket");
        server
    }

    /// rclone on the host with the remote `s3:` pointing at the server.
    fn rclone(&self) -> Command {
        let mut command = Command::new("rclone");
        // A CA bundle for real AWS (set on some machines) breaks rclone's plain-HTTP client.
        command.env_remove("AWS_CA_BUNDLE").envs([
            ("RCLONE_CONFIG_S3_TYPE", "s3"),
            ("RCLONE_CONFIG_S3_PROVIDER", "Other"),
            ("RCLONE_CONFIG_S3_ENDPOINT", &format!("http://127.0.0.1:{}", self.port)),
            ("RCLONE_CONFIG_S3_ACCESS_KEY_ID", "test"),
            ("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", "test"),
            ("RCLONE_CONFIG_S3_REGION", "us-east-1"),
        ]);
        command
    }

    /// Gives a cluster the Secret `s3` reaching this server from its pods.
    fn connect(&self, cluster_manifests: &mut Manifests, endpoint: &str) {
        cluster_manifests.add_secret(
            "s3",
            &[
                ("endpoint", &format!("http://{endpoint}")),
                ("access-key-id", "test"),
                ("secret-access-key", "test"),
                ("region", "us-east-1"),
            ],
        );
    }

    /// A Secret file for `backups list` from the host.
    fn secret_file(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("s3-secret.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3}}\nstringData:\n  endpoint: http://127.0.0.1:{}\n  \
                 access-key-id: test\n  secret-access-key: test\n  region: us-east-1\n",
                self.port
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_backup_to_s3_restores_the_same_rows_into_a_new_cluster_that_replicates() {
    let s3 = S3Server::start();
    let annotations = [
        ("backup-schedule", "0 3 * * *"),
        ("backup-target", "s3://backups/shop/mysql"),
        ("backup-secret", "s3"),
    ];
    // The members don't read the Secret; the Job does, with the forwarder's address.
    let mut source = Cluster::start(Manifests::mutate_with(EXAMPLE, &annotations), 3);
    let endpoint = source.expose_host_port(s3.port);
    s3.connect(&mut source.manifests, &endpoint);
    source.sql(0, ROWS);
    source.wait_for(2, "SELECT COUNT(*) FROM shop.orders", "3");
    let started = Instant::now();
    source.run_backup_job(&[], &|| false).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("backup to S3 took {:.1} s", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().unwrap();
    let listing = list("s3://backups/shop/mysql", Some(&s3.secret_file(dir.path())));
    assert_eq!(ids(&listing, true).len(), 1, "{listing}");

    let manifests = Manifests::mutate_with(
        EXAMPLE,
        &[("restore-from", "s3://backups/shop/mysql/latest"), ("backup-secret", "s3")],
    );
    let mut restored = Cluster::start(manifests, 0);
    restored.manifests.secret = source.manifests.secret.clone();
    let endpoint = restored.expose_host_port(s3.port);
    s3.connect(&mut restored.manifests, &endpoint);
    restored.scale(3);
    assert_same_rows_and_replicating(&source, &restored);
}

/// Ids of the backup directories under `dir` that hold a file ending in `suffix`.
fn holding(dir: &Path, suffix: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|entry| {
        std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .any(|file| file.file_name().to_string_lossy().ends_with(suffix))
    })
}

#[test]
fn an_interrupted_backup_is_never_listed_as_good_and_retention_keeps_the_newest_n() {
    let target = shared_claim("backups").join("retention");
    let target_text = target.display().to_string();
    let mut source = source_cluster(
        &[
            ("backup-schedule", "0 3 * * *"),
            ("backup-target", "pvc://backups/retention"),
            ("backup-keep", "2"),
        ],
        |_| {},
    );
    // Killed while it uploads (slowed down so that it is caught in the act).
    let killed = source.run_backup_job(&[("RCLONE_BWLIMIT", "16k")], &|| holding(&target, ".partial"));
    let failure = killed.expect_err("the backup was killed");
    assert!(failure.contains("publish-backup killed"), "{failure}");
    let listing = list(&target_text, None);
    assert_eq!(ids(&listing, true), Vec::<String>::new(), "{listing}");
    let interrupted = ids(&listing, false);
    assert_eq!(interrupted.len(), 1, "{listing}");
    assert_eq!(listing["backups"][0]["verified"], false);

    let mut taken = Vec::new();
    for _ in 0..3 {
        // Ids are the start time to the second.
        std::thread::sleep(Duration::from_millis(1100));
        let log = source.run_backup_job(&[], &|| false).unwrap_or_else(|e| panic!("{e}"));
        let id = log.lines().find_map(|l| l.strip_prefix("backup ")?.split(':').next()).expect("an id");
        taken.push(id.to_owned());
    }
    let listing = list(&target_text, None);
    assert_eq!(ids(&listing, true), taken[1..], "the newest 2 are kept: {listing}");
    assert_eq!(ids(&listing, false), Vec::<String>::new(), "the interrupted one is cleaned up: {listing}");
}

#[test]
fn a_backup_with_one_flipped_byte_is_refused_at_restore_and_leaves_no_datadir() {
    let target = shared_claim("backups").join("corrupt");
    let mut source = source_cluster(
        &[("backup-schedule", "0 3 * * *"), ("backup-target", "pvc://backups/corrupt")],
        |_| {},
    );
    source.run_backup_job(&[], &|| false).unwrap_or_else(|e| panic!("{e}"));
    let id = ids(&list(&target.display().to_string(), None), true).remove(0);
    let data = target.join(&id).join("backup.xbstream.gz");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();

    let mut manifests = Manifests::mutate_with(EXAMPLE, &[("restore-from", "pvc://backups/corrupt/latest")]);
    manifests.secret = source.manifests.secret.clone();
    let mut restored = Cluster::start(manifests, 0);
    let failure = restored.try_start_pod(0).expect_err("a corrupt backup is refused");
    assert!(
        failure.contains(&format!(
            "restore of backup {id} from /mnt/backup-target/corrupt failed: checksum mismatch: the manifest says sha256"
        )),
        "{failure}"
    );
    assert!(failure.contains("the backup is corrupt"), "{failure}");
    let left: Vec<_> =
        std::fs::read_dir(restored.data_dir(0)).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing is left in the datadir: {left:?}");
}

/// Point in time: the source archives its binary logs (`binlog-archive`, the shipper and the
/// rotation of the real pods) to `target`; after a backup, rows A are written, then the time T
/// is taken, then rows B. Returns the backup's id and T.
fn rows_a_time_b(source: &mut Cluster) -> (String, String) {
    let log = source.run_backup_job(&[], &|| false).unwrap_or_else(|e| panic!("{e}"));
    let id =
        log.lines().find_map(|l| l.strip_prefix("backup ")?.split(':').next()).expect("an id").to_owned();
    source.sql(0, "INSERT INTO shop.orders VALUES (10, 'a: after the backup'), (11, 'a: before T')");
    // T is the next whole second: A's events carry an earlier second, B's a later one.
    let now = time::OffsetDateTime::now_utc();
    std::thread::sleep(Duration::from_nanos(u64::from(1_000_000_000 - now.nanosecond())));
    let time = utc(time::OffsetDateTime::now_utc());
    std::thread::sleep(Duration::from_millis(1200));
    source.sql(0, "INSERT INTO shop.orders VALUES (20, 'b: after T'), (21, 'b: after T too')");
    (id, time)
}

fn utc(time: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Waits until the archive `remote` (an rclone remote of `rclone`) holds a binary log closed at
/// or after `time`: the rotation and the shipper bring B's log there within the flush interval
/// and a shipping round.
fn wait_archived(rclone: &dyn Fn() -> Command, remote: &str, time: &str) -> Duration {
    let started = Instant::now();
    loop {
        let output = rclone().args(["cat", "--include", "*.meta", remote]).output().expect("running rclone");
        let text = String::from_utf8_lossy(&output.stdout);
        if text.lines().filter_map(|l| l.strip_prefix("closed ")).any(|closed| closed >= time) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no binary log closed after {time} in {remote}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every archived log is complete (its `.meta` was written last, so every `.meta` has its log)
/// and has the SHA-256 its `.meta` says; none was shipped twice, whatever the rounds.
fn assert_archive_is_checked_and_shipped_once(archive: &Path, shipper_log: &str) {
    use sha2::{Digest, Sha256};
    let mut metas = 0;
    for entry in std::fs::read_dir(archive).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(log) = name.strip_suffix(".meta") else { continue };
        metas += 1;
        let meta = std::fs::read_to_string(entry.path()).unwrap();
        let data = std::fs::read(archive.join(log)).unwrap_or_else(|e| panic!("{log} has a .meta: {e}"));
        let sha256: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert!(meta.contains(&format!("sha256 {sha256}\n")), "{log}: {meta}");
        assert_eq!(shipper_log.matches(&format!("shipped {log} ")).count(), 1, "{log}:\n{shipper_log}");
    }
    assert!(metas >= 2, "at least the log before the backup and the one with B: {metas}");
}

/// The restored cluster has the source's rows up to T (A) and none after (B) on every member,
/// and replicates a new row.
fn assert_rows_up_to_the_time_and_replicating(restored: &Cluster) {
    for ordinal in 0..3 {
        assert_eq!(
            restored.sql(ordinal, "SELECT GROUP_CONCAT(id ORDER BY id) FROM shop.orders"),
            "1,2,3,10,11",
            "member {ordinal}: the backup's rows and A, not B"
        );
    }
    restored.sql(0, "INSERT INTO shop.orders VALUES (30, 'after restore')");
    for ordinal in 1..3 {
        restored.wait_for(ordinal, "SELECT item FROM shop.orders WHERE id = 30", "after restore");
        let status = restored.replica_status(ordinal);
        assert_eq!(
            (status["Slave_IO_Running"].as_str(), status["Slave_SQL_Running"].as_str()),
            ("Yes", "Yes")
        );
    }
}

const ARCHIVING: [(&str, &str); 3] =
    [("backup-schedule", "0 3 * * *"), ("binlog-archive", "true"), ("binlog-flush-interval", "10s")];

#[test]
fn a_cluster_restored_to_a_time_from_a_directory_has_the_rows_before_it_and_not_after_and_replicates() {
    let target = shared_claim("backups").join("pitr");
    let mut annotations = ARCHIVING.to_vec();
    annotations.push(("backup-target", "pvc://backups/pitr"));
    let mut source = source_cluster(&annotations, |_| {});
    let (id, time) = rows_a_time_b(&mut source);
    let archive = target.join("binlogs").display().to_string();
    let waited = wait_archived(&|| Command::new("rclone"), &archive, &time);
    eprintln!("the binary log of B archived {:.1} s after it was written", waited.as_secs_f64() + 1.2);
    assert!(
        source.log(0, "ship-binlogs").contains("shipped mysql-0-bin.0000"),
        "{}",
        source.log(0, "ship-binlogs")
    );
    assert!(source.log(1, "ship-binlogs").contains("only the primary ships"));
    assert_archive_is_checked_and_shipped_once(&target.join("binlogs"), &source.log(0, "ship-binlogs"));

    let mut manifests = Manifests::mutate_with(
        EXAMPLE,
        &[("restore-from", &format!("pvc://backups/pitr/{id}")), ("restore-to-time", &time)],
    );
    manifests.secret = source.manifests.secret.clone();
    let restored = Cluster::start(manifests, 3);
    let replay = restored.log(0, "replay-binlogs");
    assert!(replay.contains(&format!("restored backup {id} to {time}: replayed")), "{replay}");
    assert_rows_up_to_the_time_and_replicating(&restored);

    // Refused by fetch-backup, naming the backup and the problem, with nothing restored: a time
    // the archive doesn't reach yet; a time before the backup ended (its id, its start, passes
    // admission); a corrupt archived log.
    let later = utc(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    let failure = refused_restore(&source, "pvc://backups/pitr/latest", &later);
    let prefix = format!("restore of backup {id} from /mnt/backup-target/pitr failed: ");
    assert!(
        failure.contains(&format!(
            "{prefix}restore-to-time {later} is after the end of the archived binary logs"
        )),
        "{failure}"
    );
    let start =
        format!("{}-{}-{}T{}:{}:{}Z", &id[0..4], &id[4..6], &id[6..8], &id[9..11], &id[11..13], &id[13..15]);
    let failure = refused_restore(&source, &format!("pvc://backups/pitr/{id}"), &start);
    assert!(
        failure.contains(&format!(
            "{prefix}restore-to-time {start} is before the end of the backup (finished at "
        )),
        "{failure}"
    );
    let newest = newest_archived_log(&target.join("binlogs"));
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&newest, bytes).unwrap();
    let failure = refused_restore(&source, &format!("pvc://backups/pitr/{id}"), &time);
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        failure.contains(&format!("{prefix}binary log {name}: checksum mismatch"))
            && failure.contains("the archive is corrupt"),
        "{failure}"
    );
}

/// A restore of `from` to `time` that fetch-backup refuses: its message, with the datadir left empty.
fn refused_restore(source: &Cluster, from: &str, time: &str) -> String {
    let mut manifests = Manifests::mutate_with(EXAMPLE, &[("restore-from", from), ("restore-to-time", time)]);
    manifests.secret = source.manifests.secret.clone();
    let mut refused = Cluster::start(manifests, 0);
    let failure = refused.try_start_pod(0).expect_err("the restore is refused");
    let left: Vec<_> =
        std::fs::read_dir(refused.data_dir(0)).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing is left in the datadir: {left:?}");
    failure
}

/// The newest archived binary log in `archive` (the one with the highest number).
fn newest_archived_log(archive: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(archive)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| archive.join(format!("{}.meta", p.file_name().unwrap().to_string_lossy())).exists())
        .collect();
    logs.sort();
    logs.pop().expect("an archived log")
}

#[test]
fn a_cluster_restored_to_a_time_from_s3_has_the_rows_before_it_and_not_after_and_replicates() {
    let s3 = S3Server::start();
    let mut annotations = ARCHIVING.to_vec();
    annotations.extend([("backup-target", "s3://backups/shop/pitr"), ("backup-secret", "s3")]);
    // The members' shipper reads the Secret: it exists before the first member starts.
    let mut source = Cluster::start(Manifests::mutate_with(EXAMPLE, &annotations), 0);
    let endpoint = source.expose_host_port(s3.port);
    s3.connect(&mut source.manifests, &endpoint);
    source.scale(3);
    source.sql(0, ROWS);
    source.wait_for(2, "SELECT COUNT(*) FROM shop.orders", "3");
    let (id, time) = rows_a_time_b(&mut source);
    wait_archived(&|| s3.rclone(), "s3:backups/shop/pitr/binlogs", &time);

    // latest: the newest backup finished by the time.
    let manifests = Manifests::mutate_with(
        EXAMPLE,
        &[
            ("restore-from", "s3://backups/shop/pitr/latest"),
            ("restore-to-time", &time),
            ("backup-secret", "s3"),
        ],
    );
    let mut restored = Cluster::start(manifests, 0);
    restored.manifests.secret = source.manifests.secret.clone();
    let endpoint = restored.expose_host_port(s3.port);
    s3.connect(&mut restored.manifests, &endpoint);
    restored.scale(3);
    let fetch = restored.log(0, "fetch-backup");
    assert!(fetch.contains(&format!("latest complete backup finished by {time}: {id}")), "{fetch}");
    assert_rows_up_to_the_time_and_replicating(&restored);
}
