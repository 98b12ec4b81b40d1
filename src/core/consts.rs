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
/// Comma-separated names of policies the StatefulSet asks to be excepted from; honoured only
/// where `policies.yaml` allows it (policies/README.md).
pub const ANNOTATION_POLICY_EXCEPTIONS: &str = "mysql-webhook.io/policy-exceptions";

/// Every annotation under [`PREFIX`] that users may set; anything else under the prefix is a typo.
pub const KNOWN_ANNOTATIONS: [&str; 9] = [
    ANNOTATION_REPLICATED,
    ANNOTATION_STORAGE,
    ANNOTATION_STORAGE_CLASS,
    ANNOTATION_FLAVOR,
    ANNOTATION_BACKUP_IMAGE,
    ANNOTATION_ROOT_PASSWORD_SECRET,
    ANNOTATION_READ_SERVICE,
    ANNOTATION_METRICS,
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

/// The AdmissionReview version the webhook reads and answers (`admissionReviewVersions: ["v1"]`).
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
pub const ADMISSION_REVIEW_KIND: &str = "AdmissionReview";

/// Files of the serving certificate, named like the keys of a `kubernetes.io/tls` Secret (and
/// cert-manager's `ca.crt`), so a mounted Secret is read as it is.
pub const TLS_CA_FILE: &str = "ca.crt";
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
/// The CA's key, written by `certs` beside `ca.crt` for renewals; never part of the served Secret.
pub const TLS_CA_KEY_FILE: &str = "ca.key";

/// Prefix of every metric the webhook exports.
pub const METRICS_PREFIX: &str = "mysql_webhook";

/// Keys of the credentials Secret.
pub const SECRET_KEY_ROOT_PASSWORD: &str = "root-password";
pub const SECRET_KEY_REPLICATION_PASSWORD: &str = "replication-password";
/// The MySQL account replicas connect as; never root.
pub const REPLICATION_USER: &str = "replication";

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
