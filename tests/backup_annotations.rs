//! The backup, restore and point-in-time annotations: every bad value and every combination that
//! can't work is refused with a message naming the annotation, the value and what is accepted;
//! good values are planned as written.

mod common;

use common::{annotated, with_annotation};
use mysql_webhook_core::plan::Target;
use mysql_webhook_core::{MutateError, Operation, mutate};
use serde_json::Value;

fn base() -> Value {
    annotated("orders", "mariadb:11.4")
}

fn with(mut sts: Value, annotations: &[(&str, &str)]) -> Value {
    for (key, value) in annotations {
        sts = with_annotation(sts, &format!("mysql-webhook.io/{key}"), value);
    }
    sts
}

fn denial(object: &Value) -> String {
    match mutate(object, Operation::Create, None) {
        Err(MutateError::Refused(invalid)) => invalid.to_string(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn backups(object: &Value) -> mysql_webhook_core::plan::Backups {
    mutate(object, Operation::Create, None).expect("accepted").expect("opted in").plan.backups
}

const S3: (&str, &str) = ("backup-secret", "orders-s3");

#[test]
fn bad_backup_annotations_are_refused_with_the_annotation_and_what_is_accepted() {
    let schedule = |value| with(base(), &[("backup-schedule", value), ("backup-target", "pvc://backups")]);
    let cases: Vec<(Value, &str)> = vec![
        (
            schedule("0 3 * *"),
            r#"annotation mysql-webhook.io/backup-schedule: "0 3 * *" is not a cron schedule: it has 4 fields, not 5; use five fields (minute hour day-of-month month day-of-week) such as "0 3 * * *", or @hourly, @daily, @weekly, @monthly, @yearly"#,
        ),
        (
            schedule("61 3 * * *"),
            r#"annotation mysql-webhook.io/backup-schedule: "61 3 * * *" is not a cron schedule: minute "61" is not a value from 0 to 59; use five fields (minute hour day-of-month month day-of-week) such as "0 3 * * *", or @hourly, @daily, @weekly, @monthly, @yearly"#,
        ),
        (
            schedule("0 5-2 * * *"),
            r#"annotation mysql-webhook.io/backup-schedule: "0 5-2 * * *" is not a cron schedule: hour range "5-2" runs backwards; use five fields (minute hour day-of-month month day-of-week) such as "0 3 * * *", or @hourly, @daily, @weekly, @monthly, @yearly"#,
        ),
        (
            schedule("*/0 * * * *"),
            r#"annotation mysql-webhook.io/backup-schedule: "*/0 * * * *" is not a cron schedule: minute step "0" is not a positive number up to 59; use five fields (minute hour day-of-month month day-of-week) such as "0 3 * * *", or @hourly, @daily, @weekly, @monthly, @yearly"#,
        ),
        (
            schedule("@often"),
            r#"annotation mysql-webhook.io/backup-schedule: "@often" is not a cron schedule: @often is not a known macro; use five fields (minute hour day-of-month month day-of-week) such as "0 3 * * *", or @hourly, @daily, @weekly, @monthly, @yearly"#,
        ),
        (
            schedule("TZ=UTC 0 3 * * *"),
            r#"annotation mysql-webhook.io/backup-schedule: "TZ=UTC 0 3 * * *" is not a cron schedule: a time zone in the schedule is not supported; the schedule is in the controller manager's time zone; use five fields (minute hour day-of-month month day-of-week) such as "0 3 * * *", or @hourly, @daily, @weekly, @monthly, @yearly"#,
        ),
        (
            with(base(), &[("backup-schedule", "0 3 * * *")]),
            "annotation mysql-webhook.io/backup-schedule needs annotation mysql-webhook.io/backup-target: it says where backups go",
        ),
        (
            with(base(), &[("backup-target", "ftp://host/x")]),
            r#"annotation mysql-webhook.io/backup-target: "ftp://host/x" is not a backup target: the scheme "ftp" is not known; use pvc://<claim>/<prefix> or s3://<bucket>/<prefix>"#,
        ),
        (
            with(base(), &[("backup-target", "backups/orders")]),
            r#"annotation mysql-webhook.io/backup-target: "backups/orders" is not a backup target: it has no scheme; use pvc://<claim>/<prefix> or s3://<bucket>/<prefix>"#,
        ),
        (
            with(base(), &[("backup-target", "pvc://Backups/orders")]),
            r#"annotation mysql-webhook.io/backup-target: "pvc://Backups/orders" is not a backup target: the claim name is not a valid PersistentVolumeClaim name; use pvc://<claim>/<prefix> or s3://<bucket>/<prefix>"#,
        ),
        (
            with(base(), &[("backup-target", "pvc://backups/../etc"), S3]),
            r#"annotation mysql-webhook.io/backup-target: "pvc://backups/../etc" is not a backup target: the prefix must be path segments of letters, digits, '-', '_' and '.' (no empty, . or .. segment); use pvc://<claim>/<prefix> or s3://<bucket>/<prefix>"#,
        ),
        (
            with(base(), &[("backup-target", "s3://b/orders"), S3]),
            r#"annotation mysql-webhook.io/backup-target: "s3://b/orders" is not a backup target: the bucket name must be 3 to 63 lowercase letters, digits, '-' and '.'; use pvc://<claim>/<prefix> or s3://<bucket>/<prefix>"#,
        ),
        (
            with(base(), &[("backup-target", "s3://backups/orders")]),
            "annotation mysql-webhook.io/backup-target needs annotation mysql-webhook.io/backup-secret: an s3:// target needs a Secret with the keys endpoint, access-key-id and secret-access-key (and optionally region)",
        ),
        (
            with(base(), &[("backup-keep", "0")]),
            r#"annotation mysql-webhook.io/backup-keep: "0" is not accepted; use a positive integer such as 7"#,
        ),
        (
            with(base(), &[("backup-keep", "+3")]),
            r#"annotation mysql-webhook.io/backup-keep: "+3" is not accepted; use a positive integer such as 7"#,
        ),
        (
            with(base(), &[("backup-client-image", "rclone with spaces")]),
            r#"annotation mysql-webhook.io/backup-client-image: "rclone with spaces" is not an image reference; use e.g. rclone/rclone:1.69.1"#,
        ),
        (
            with(base(), &[("restore-from", "s3://backups/orders/yesterday"), S3]),
            r#"annotation mysql-webhook.io/restore-from: "s3://backups/orders/yesterday" does not name a backup: "yesterday" is neither a backup id (YYYYMMDDTHHMMSSZ) nor latest; use <target>/<backup-id> such as s3://backups/orders/20261202T030000Z, or <target>/latest"#,
        ),
        (
            with(base(), &[("restore-from", "s3://backups/orders/latest")]),
            "annotation mysql-webhook.io/restore-from needs annotation mysql-webhook.io/backup-secret: an s3:// target needs a Secret with the keys endpoint, access-key-id and secret-access-key (and optionally region)",
        ),
        (
            with(base(), &[("restore-to-time", "2026-12-02T03:00:00Z")]),
            "annotation mysql-webhook.io/restore-to-time needs annotation mysql-webhook.io/restore-from: binary logs are replayed on top of a backup",
        ),
        (
            with(
                base(),
                &[("restore-from", "pvc://backups/orders/latest"), ("restore-to-time", "yesterday 3pm")],
            ),
            r#"annotation mysql-webhook.io/restore-to-time: "yesterday 3pm" is not an RFC 3339 time; use e.g. 2026-12-02T14:30:00Z or 2026-12-02T15:30:00+01:00"#,
        ),
        (
            with(
                base(),
                &[
                    ("restore-from", "pvc://backups/orders/20261202T030000Z"),
                    ("restore-to-time", "2026-12-02T03:30:00+01:00"),
                ],
            ),
            "annotation mysql-webhook.io/restore-to-time: 2026-12-02T02:30:00Z is before backup 20261202T030000Z, taken at 2026-12-02T03:00:00Z; name a later time, or an earlier backup in mysql-webhook.io/restore-from",
        ),
        (
            with(base(), &[("binlog-archive", "yes")]),
            r#"annotation mysql-webhook.io/binlog-archive: "yes" is not accepted; use "true" or "false""#,
        ),
        (
            with(base(), &[("binlog-archive", "true")]),
            "annotation mysql-webhook.io/binlog-archive needs annotation mysql-webhook.io/backup-target: it says where binary logs go",
        ),
        (
            with(
                base(),
                &[
                    ("binlog-archive", "true"),
                    ("backup-target", "pvc://backups"),
                    ("binlog-flush-interval", "5s"),
                ],
            ),
            r#"annotation mysql-webhook.io/binlog-flush-interval: "5s" is not accepted; use a duration from 10s to 24h such as 30s, 5m or 1h"#,
        ),
        (
            with(base(), &[("binlog-flush-interval", "5m")]),
            r#"annotation mysql-webhook.io/binlog-flush-interval needs annotation mysql-webhook.io/binlog-archive: the interval bounds how much archiving can lose; set binlog-archive: "true""#,
        ),
    ];
    for (object, expected) in cases {
        assert_eq!(denial(&object), expected);
    }
}

#[test]
fn good_backup_annotations_are_planned_as_written() {
    for schedule in ["0 3 * * *", "*/30 * * * *", "0 2-4/2 1,15 jan-MAR mon-fri", "@daily", "5 4 ? * 7"] {
        let planned =
            backups(&with(base(), &[("backup-schedule", schedule), ("backup-target", "pvc://backups")]));
        assert_eq!(planned.schedule.as_deref(), Some(schedule));
    }
    let planned = backups(&with(
        base(),
        &[
            ("backup-target", "s3://company-backups/prod/orders/"),
            S3,
            ("backup-keep", "3"),
            ("restore-from", "s3://company-backups/prod/orders/20261202T030000Z"),
        ],
    ));
    let target = Target::S3 { bucket: "company-backups".into(), prefix: "prod/orders".into() };
    assert_eq!(planned.target, Some(target.clone()));
    assert_eq!(planned.keep, 3);
    assert_eq!(planned.secret.as_deref(), Some("orders-s3"));
    assert_eq!(planned.client_image, "rclone/rclone:1.69.1");
    let restore = planned.restore.expect("a restore");
    assert_eq!((restore.source, restore.id.as_str()), (target, "20261202T030000Z"));

    let defaults = backups(&base());
    assert_eq!((defaults.target, defaults.schedule, defaults.keep, defaults.restore), (None, None, 7, None));
    let pvc = backups(&with(base(), &[("restore-from", "pvc://backups/latest")]));
    assert_eq!(pvc.restore.unwrap().source, Target::Pvc { claim: "backups".into(), prefix: String::new() });
}

#[test]
fn point_in_time_annotations_are_planned_with_the_time_in_utc_and_the_interval_in_seconds() {
    let archive = backups(&with(
        base(),
        &[("binlog-archive", "true"), ("backup-target", "pvc://backups"), ("binlog-flush-interval", "1h30m")],
    ));
    assert_eq!(archive.binlog_archive.map(|a| a.flush_interval), Some(5400));
    let default = backups(&with(base(), &[("binlog-archive", "true"), ("backup-target", "pvc://backups")]));
    assert_eq!(default.binlog_archive.map(|a| a.flush_interval), Some(300), "5m by default");
    let off = backups(&with(base(), &[("binlog-archive", "false"), ("backup-target", "pvc://backups")]));
    assert_eq!(off.binlog_archive, None);

    let to_time = backups(&with(
        base(),
        &[
            ("restore-from", "pvc://backups/orders/20261202T030000Z"),
            ("restore-to-time", "2026-12-02T14:30:00.5+01:00"),
        ],
    ));
    assert_eq!(
        to_time.restore.unwrap().to_time.as_deref(),
        Some("2026-12-02T13:30:00Z"),
        "UTC, to the second"
    );
    // With latest, the restore picks the newest backup finished by then.
    let latest = backups(&with(
        base(),
        &[("restore-from", "pvc://backups/orders/latest"), ("restore-to-time", "2026-12-02T03:00:00Z")],
    ));
    assert_eq!(latest.restore.unwrap().to_time.as_deref(), Some("2026-12-02T03:00:00Z"));
    // The very instant the backup started is accepted (its end is checked at restore).
    let same = backups(&with(
        base(),
        &[
            ("restore-from", "pvc://backups/orders/20261202T030000Z"),
            ("restore-to-time", "2026-12-02T03:00:00Z"),
        ],
    ));
    assert!(same.restore.is_some());
}

#[test]
fn restore_to_time_is_refused_on_an_update_that_adds_or_changes_it() {
    let from = ("restore-from", "pvc://backups/orders/latest");
    let created = serde_json::to_value(
        mutate(&with(base(), &[from]), Operation::Create, None).unwrap().unwrap().expanded,
    )
    .unwrap();
    let adding = with(created.clone(), &[("restore-to-time", "2026-12-02T03:00:00Z")]);
    let err = mutate(&adding, Operation::Update { old: &created }, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("mysql-webhook.io/restore-to-time) can only be set when the StatefulSet is created"),
        "{err}"
    );
    let changing = with(adding.clone(), &[("restore-to-time", "2026-12-02T04:00:00Z")]);
    assert!(mutate(&changing, Operation::Update { old: &adding }, None).is_err());
    let mut scaled = adding.clone();
    scaled["spec"]["replicas"] = 5.into();
    assert!(mutate(&scaled, Operation::Update { old: &adding }, None).is_ok(), "kept as it was: accepted");
}

#[test]
fn restore_from_is_refused_on_an_update_that_adds_it_and_kept_on_one_that_keeps_it() {
    let created =
        serde_json::to_value(mutate(&base(), Operation::Create, None).unwrap().unwrap().expanded).unwrap();
    let adding = with(created.clone(), &[("restore-from", "pvc://backups/orders/latest")]);
    let err = mutate(&adding, Operation::Update { old: &created }, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "annotation mysql-webhook.io/restore-from (and mysql-webhook.io/restore-to-time) can only be set when the StatefulSet is created (its first member is made from the backup then); to restore, create a new StatefulSet with it"
    );
    let restored = with(created, &[("restore-from", "pvc://backups/orders/latest")]);
    let mut scaled = restored.clone();
    scaled["spec"]["replicas"] = 5.into();
    assert!(mutate(&scaled, Operation::Update { old: &restored }, None).is_ok(), "it stays on later updates");
}

fn expanded(object: &Value) -> Value {
    let mutation = mutate(object, Operation::Create, None).expect("accepted").expect("opted in");
    serde_json::to_value(mutation.expanded).unwrap()
}

fn names(containers: &Value) -> Vec<&str> {
    containers.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[test]
fn binlog_archive_adds_a_read_only_shipper_and_the_rotation_and_leaves_with_the_annotation() {
    let archiving = with(
        base(),
        &[
            ("binlog-archive", "true"),
            ("backup-target", "pvc://backups/orders"),
            ("binlog-flush-interval", "2m"),
        ],
    );
    let mutation = mutate(&archiving, Operation::Create, None).unwrap().unwrap();
    assert!(
        mutation
            .plan
            .defaults
            .iter()
            .any(|w| w.starts_with("binlog-archive to pvc://backups: every member mounts the claim")),
        "{:?}",
        mutation.plan.defaults
    );
    let sts = expanded(&archiving);
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(names(&pod["containers"]), ["mysql", "mariadb-backup", "ship-binlogs"]);
    let shipper = &pod["containers"][2];
    assert_eq!(
        shipper["image"], "rclone/rclone:1.69.1",
        "the client image: the database image has no S3 client"
    );
    let mounts: Vec<(&str, &str, bool)> = shipper["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["mountPath"].as_str().unwrap(), m["readOnly"] == true))
        .collect();
    assert_eq!(mounts, [("binlog-target", "/mnt/backup-target", false), ("data", "/var/lib/mysql", true)]);
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "binlog-target").unwrap();
    assert_eq!(volume["persistentVolumeClaim"], serde_json::json!({"claimName": "backups"}));
    let sidecar = pod["containers"][1]["command"][2].as_str().unwrap();
    assert!(
        sidecar.contains("while sleep 120; do") && sidecar.contains("-e 'FLUSH BINARY LOGS'"),
        "{sidecar}"
    );
    let script = shipper["command"][2].as_str().unwrap();
    assert!(script.contains("archive='/mnt/backup-target/orders/binlogs'"), "{script}");

    // Removed on an update without it: nothing of the archive stays in the pod.
    let mut update = with(sts.clone(), &[("binlog-archive", "false")]);
    update["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("mysql-webhook.io/binlog-flush-interval");
    let mutation = mutate(&update, Operation::Update { old: &sts }, None).unwrap().unwrap();
    let pod = serde_json::to_value(&mutation.expanded).unwrap()["spec"]["template"]["spec"].clone();
    assert_eq!(names(&pod["containers"]), ["mysql", "mariadb-backup"]);
    assert!(!pod["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "binlog-target"));
    assert!(!pod["containers"][1]["command"][2].as_str().unwrap().contains("FLUSH BINARY LOGS"));
}

#[test]
fn restore_to_time_replays_in_the_mysql_image_after_the_backup_is_prepared() {
    let sts = expanded(&with(
        base(),
        &[("restore-from", "pvc://backups/orders/latest"), ("restore-to-time", "2026-12-02T03:00:00Z")],
    ));
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(
        names(&pod["initContainers"]),
        ["init-mysql", "fetch-backup", "clone-mysql", "replay-binlogs"]
    );
    let replay = &pod["initContainers"][3];
    assert_eq!(replay["image"], "mariadb:11.4", "the server and mariadb-binlog");
    let script = replay["command"][2].as_str().unwrap();
    assert!(script.contains("TZ=UTC mariadb-binlog \"${start[@]}\" --stop-datetime="), "{script}");
    assert!(script.contains("mariadbd --user=mysql") && script.contains("--skip-networking"), "{script}");
    let fetch = pod["initContainers"][1]["command"][2].as_str().unwrap();
    assert!(
        fetch.contains("stop='2026-12-02T03:00:00Z'")
            && fetch.contains("if expr \"$candidate\" \\> '20261202T030000Z'")
    );
    let clone = pod["initContainers"][2]["command"][2].as_str().unwrap();
    assert!(clone.contains("replay-binlogs replays the binary logs on it, then moves it into place"));

    let mysql = expanded(&with(
        annotated("orders", "mysql:8.4"),
        &[("restore-from", "pvc://backups/orders/latest"), ("restore-to-time", "2026-12-02T03:00:00Z")],
    ));
    let script = mysql["spec"]["template"]["spec"]["initContainers"][3]["command"][2].as_str().unwrap();
    assert!(script.contains("TZ=UTC mysqlbinlog") && script.contains("mysqld --user=mysql"), "{script}");
    assert!(script.contains("--skip-replica-start --mysqlx=OFF") && !script.contains("gtid"), "{script}");

    let plain = expanded(&with(base(), &[("restore-from", "pvc://backups/orders/latest")]));
    assert_eq!(
        names(&plain["spec"]["template"]["spec"]["initContainers"]),
        ["init-mysql", "fetch-backup", "clone-mysql"]
    );
}
