//! Every name the product puts on or reads from Kubernetes objects: annotation keys, labels, the
//! field manager, container, volume and port names, mount paths. One place, so a rename is one edit
//! and nothing drifts between the webhook, the controller and the CLI.

/// Prefix of every annotation, label and field manager the product owns.
pub const PREFIX: &str = "mysql-webhook.io/";

/// `"true"` opts a StatefulSet into the expansion.
pub const ANNOTATION_REPLICATED: &str = "mysql-webhook.io/replicated";
pub const ANNOTATION_STORAGE: &str = "mysql-webhook.io/storage";
pub const ANNOTATION_STORAGE_CLASS: &str = "mysql-webhook.io/storage-class";
pub const ANNOTATION_FLAVOR: &str = "mysql-webhook.io/flavor";
pub const ANNOTATION_BACKUP_IMAGE: &str = "mysql-webhook.io/backup-image";
pub const ANNOTATION_ROOT_PASSWORD_SECRET: &str = "mysql-webhook.io/root-password-secret";
pub const ANNOTATION_READ_SERVICE: &str = "mysql-webhook.io/read-service";
pub const ANNOTATION_METRICS: &str = "mysql-webhook.io/metrics";
/// A cert-manager Issuer (`<name>`, `Issuer/<name>`) or ClusterIssuer (`ClusterIssuer/<name>`)
/// whose Certificate provides the TLS identity instead of the controller.
pub const ANNOTATION_TLS_ISSUER: &str = "mysql-webhook.io/tls-issuer";
/// `"true"` turns on `require_secure_transport`: mysqld refuses every TCP client without TLS.
pub const ANNOTATION_REQUIRE_TLS: &str = "mysql-webhook.io/require-tls";
/// A duration (`30s`, `5m`): a replica is ready only while it is at most this far behind.
pub const ANNOTATION_MAX_LAG: &str = "mysql-webhook.io/max-lag";

/// Backups, restore and point-in-time recovery (README "Backups and restore").
pub const ANNOTATION_BACKUP_SCHEDULE: &str = "mysql-webhook.io/backup-schedule";
pub const ANNOTATION_BACKUP_TARGET: &str = "mysql-webhook.io/backup-target";
pub const ANNOTATION_BACKUP_SECRET: &str = "mysql-webhook.io/backup-secret";
pub const ANNOTATION_BACKUP_KEEP: &str = "mysql-webhook.io/backup-keep";
pub const ANNOTATION_BACKUP_CLIENT_IMAGE: &str = "mysql-webhook.io/backup-client-image";
pub const ANNOTATION_RESTORE_FROM: &str = "mysql-webhook.io/restore-from";
pub const ANNOTATION_RESTORE_TO_TIME: &str = "mysql-webhook.io/restore-to-time";
pub const ANNOTATION_BINLOG_ARCHIVE: &str = "mysql-webhook.io/binlog-archive";
pub const ANNOTATION_BINLOG_FLUSH_INTERVAL: &str = "mysql-webhook.io/binlog-flush-interval";

/// Comma-separated names of policies the StatefulSet asks to be excepted from; honoured only
/// where `policies.yaml` allows it (policies/README.md).
pub const ANNOTATION_POLICY_EXCEPTIONS: &str = "mysql-webhook.io/policy-exceptions";

/// Every annotation under [`PREFIX`] that users may set; anything else under the prefix is a typo.
pub const KNOWN_ANNOTATIONS: [&str; 21] = [
    ANNOTATION_REPLICATED,
    ANNOTATION_STORAGE,
    ANNOTATION_STORAGE_CLASS,
    ANNOTATION_FLAVOR,
    ANNOTATION_BACKUP_IMAGE,
    ANNOTATION_ROOT_PASSWORD_SECRET,
    ANNOTATION_READ_SERVICE,
    ANNOTATION_METRICS,
    ANNOTATION_TLS_ISSUER,
    ANNOTATION_REQUIRE_TLS,
    ANNOTATION_MAX_LAG,
    ANNOTATION_BACKUP_SCHEDULE,
    ANNOTATION_BACKUP_TARGET,
    ANNOTATION_BACKUP_SECRET,
    ANNOTATION_BACKUP_KEEP,
    ANNOTATION_BACKUP_CLIENT_IMAGE,
    ANNOTATION_RESTORE_FROM,
    ANNOTATION_RESTORE_TO_TIME,
    ANNOTATION_BINLOG_ARCHIVE,
    ANNOTATION_BINLOG_FLUSH_INTERVAL,
    ANNOTATION_POLICY_EXCEPTIONS,
];

/// Label the webhook puts on every expanded StatefulSet: the controller watches by label because
/// annotations can't be selected server-side.
pub const LABEL_MANAGED: &str = "mysql-webhook.io/managed";
/// kubectl's copy of the object as last applied; not passed to policies (it is the object again).
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Label on companion objects naming the StatefulSet they belong to.
pub const LABEL_STATEFULSET: &str = "mysql-webhook.io/statefulset";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mysql-webhook";
/// Label the API server sets on every Namespace to its name: a namespace selector can always
/// select by name.
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// Server-side apply field manager of the controller.
pub const FIELD_MANAGER: &str = "mysql-webhook.io";

/// The wg-policy PolicyReport the audit writes, one per managed StatefulSet (README.md, "Audit and
/// policy reports"); its CRD is in deploy/components/policy-reports.
pub const REPORT_GROUP: &str = "wgpolicyk8s.io";
pub const REPORT_VERSION: &str = "v1alpha2";
pub const REPORT_API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const REPORT_KIND: &str = "PolicyReport";
pub const REPORT_PLURAL: &str = "policyreports";
/// A report is named this prefix and its StatefulSet's name.
pub const REPORT_NAME_PREFIX: &str = "mysql-webhook-";
/// Result property naming the annotation that excepted the StatefulSet from a policy.
pub const REPORT_PROPERTY_EXCEPTION: &str = "exception";
/// The user the audit's requests carry, so policies that look at `userInfo` see someone.
pub const AUDIT_USER: &str = "mysql-webhook-audit";

/// The AdmissionReview version the webhook reads and answers (`admissionReviewVersions: ["v1"]`).
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
pub const ADMISSION_REVIEW_KIND: &str = "AdmissionReview";

/// Files of the serving certificate, named like the keys of a `kubernetes.io/tls` Secret (and
/// cert-manager's `ca.crt`), so a mounted Secret is read as it is.
pub const TLS_CA_FILE: &str = "ca.crt";
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
/// The CA's key: written by `certs` beside `ca.crt` for renewals (never part of the served
/// Secret), and in a members' TLS Secret the controller made (it signs the renewals; never
/// mounted in a pod: the volume projects the three keys above only).
pub const TLS_CA_KEY_FILE: &str = "ca.key";

/// The TLS identity of a StatefulSet's members: Secret `<name>` + this suffix, with the keys
/// [`TLS_CA_FILE`] (the CA bundle), [`TLS_CERT_FILE`] and [`TLS_KEY_FILE`] (cert-manager's
/// layout, so a cert-manager Certificate can provide the same Secret), mounted read-only at
/// [`TLS_DIR`] in the members' containers.
pub const TLS_SECRET_SUFFIX: &str = "-tls";
/// During a CA rollover, the next CA's private key: in the bundle already, not signing yet.
pub const TLS_CA_NEXT_KEY_FILE: &str = "ca-next.key";
pub const VOLUME_TLS: &str = "tls";
pub const TLS_DIR: &str = "/etc/mysql-webhook/tls";
/// cert-manager's Certificate, when annotation [`ANNOTATION_TLS_ISSUER`] names an issuer.
pub const CERT_MANAGER_API_VERSION: &str = "cert-manager.io/v1";

/// Prefix of every metric the webhook exports.
pub const METRICS_PREFIX: &str = "mysql_webhook";

/// Keys of the credentials Secret.
pub const SECRET_KEY_ROOT_PASSWORD: &str = "root-password";
pub const SECRET_KEY_REPLICATION_PASSWORD: &str = "replication-password";
/// The MySQL account replicas connect as; never root.
pub const REPLICATION_USER: &str = "replication";
/// The password of [`EXPORTER_USER`]; added by the controller to credentials Secrets it made
/// before the account existed.
pub const SECRET_KEY_EXPORTER_PASSWORD: &str = "exporter-password";
/// The account mysqld-exporter logs in as: monitoring privileges only, from inside the pod.
pub const EXPORTER_USER: &str = "exporter";
/// Its `MAX_USER_CONNECTIONS`, and the exporter's `--exporter.max-open-conns`.
pub const EXPORTER_MAX_CONNECTIONS: u32 = 3;
/// The credentials Secret, mounted read-only: the passwords are files, never environment
/// variables of the containers.
pub const VOLUME_CREDENTIALS: &str = "credentials";
pub const CREDENTIALS_DIR: &str = "/etc/mysql-webhook/credentials";
/// The exporter's client configuration (user, password, CA), written at its start into an
/// in-memory emptyDir from the credentials files.
pub const VOLUME_EXPORTER_CONFIG: &str = "exporter-config";
pub const EXPORTER_CONFIG_DIR: &str = "/etc/mysql-webhook/exporter";

/// Keys of the companion ConfigMap.
pub const CONFIG_PRIMARY: &str = "primary.cnf";
pub const CONFIG_REPLICA: &str = "replica.cnf";

/// Container names. `init-mysql` and `clone-mysql` are the tutorial's.
pub const CONTAINER_MYSQL: &str = "mysql";
pub const CONTAINER_INIT: &str = "init-mysql";
pub const CONTAINER_CLONE: &str = "clone-mysql";
pub const CONTAINER_EXPORTER: &str = "mysqld-exporter";

/// Volume names and where they are mounted.
pub const VOLUME_DATA: &str = "data";
pub const VOLUME_CONF: &str = "conf";
pub const VOLUME_CONFIG_MAP: &str = "config-map";
pub const DATA_DIR: &str = "/var/lib/mysql";
/// The data volume is mounted with this subPath so the claim's root (lost+found) is not the datadir.
pub const DATA_SUB_PATH: &str = "mysql";
pub const CONF_DIR: &str = "/etc/mysql/conf.d";
pub const INIT_CONF_DIR: &str = "/mnt/conf.d";
pub const INIT_CONFIG_MAP_DIR: &str = "/mnt/config-map";

/// Ports.
pub const PORT_MYSQL: i32 = 3306;
pub const PORT_CLONE: i32 = 3307;
pub const PORT_METRICS: i32 = 9104;
pub const PORT_NAME_MYSQL: &str = "mysql";
pub const PORT_NAME_CLONE: &str = "clone";
pub const PORT_NAME_METRICS: &str = "metrics";

/// server-id = offset + ordinal: server-id 0 is reserved (a server with it refuses to replicate).
pub const SERVER_ID_OFFSET: u32 = 100;
/// UID of the `mysql` user in the docker-library and MariaDB images.
pub const MYSQL_UID: i64 = 999;

pub const DEFAULT_STORAGE: &str = "10Gi";
pub const EXPORTER_IMAGE: &str = "prom/mysqld-exporter:v0.17.2";
/// The exporter's program in [`EXPORTER_IMAGE`] (its ENTRYPOINT).
pub const EXPORTER_BINARY: &str = "/bin/mysqld_exporter";

/// Backups. The S3 client runs from a maintained image of its own: the database images carry
/// none. Pinned, overridable with [`ANNOTATION_BACKUP_CLIENT_IMAGE`].
pub const BACKUP_CLIENT_IMAGE: &str = "rclone/rclone:1.69.1";
pub const DEFAULT_BACKUP_KEEP: u32 = 7;
/// Keys of the Secret named by [`ANNOTATION_BACKUP_SECRET`] (an S3 endpoint and its keys).
pub const BACKUP_SECRET_KEYS: [&str; 4] = ["endpoint", "access-key-id", "secret-access-key", "region"];
/// The CronJob `<name>-backup`; its containers, and the pods' backup-related containers.
pub const BACKUP_JOB_SUFFIX: &str = "-backup";
pub const CONTAINER_TAKE_BACKUP: &str = "take-backup";
pub const CONTAINER_PUBLISH_BACKUP: &str = "publish-backup";
pub const CONTAINER_FETCH_BACKUP: &str = "fetch-backup";
/// Volumes and mount paths of the backup machinery.
pub const VOLUME_SCRATCH: &str = "backup-scratch";
pub const SCRATCH_DIR: &str = "/mnt/backup";
pub const VOLUME_BACKUP_TARGET: &str = "backup-target";
/// Where a `pvc://` target's claim is mounted.
pub const BACKUP_TARGET_DIR: &str = "/mnt/backup-target";
pub const VOLUME_BACKUP_SECRET: &str = "backup-secret";
pub const BACKUP_SECRET_DIR: &str = "/etc/mysql-webhook/backup-secret";
/// How long one backup Job may run before Kubernetes stops it.
pub const BACKUP_DEADLINE_SECONDS: i64 = 6 * 3600;
/// Point-in-time recovery: the primary's `ship-binlogs` container (client image) uploads each
/// closed binary log under `<target>/binlogs/`; a restore to a time downloads them in
/// `fetch-backup` and `replay-binlogs` (the mysql image: the server and its binlog tool) replays
/// them before the datadir is moved into place.
pub const CONTAINER_SHIP_BINLOGS: &str = "ship-binlogs";
pub const CONTAINER_REPLAY_BINLOGS: &str = "replay-binlogs";
/// The archive's claim, for a `pvc://` target (writable, unlike a restore's).
pub const VOLUME_BINLOG_TARGET: &str = "binlog-target";
/// Directory of the archived binary logs under the target's prefix.
pub const BINLOG_ARCHIVE_DIR: &str = "binlogs";
/// `binlog-flush-interval` when not set: 5 minutes.
pub const DEFAULT_BINLOG_FLUSH_INTERVAL_SECONDS: u64 = 300;
/// Label on backup Jobs and their pods, naming the StatefulSet (the controller watches by it).
pub const LABEL_BACKUP: &str = "mysql-webhook.io/backup-of";
/// Annotation the controller puts on a finished backup Job once it recorded its Event
/// (`BackupSucceeded` or `BackupFailed`), so each Job is reported once, across restarts and
/// replicas. Not a user annotation: it is on Jobs, never on a StatefulSet.
pub const ANNOTATION_BACKUP_REPORTED: &str = "mysql-webhook.io/backup-reported";
