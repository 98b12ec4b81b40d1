//! The database flavors the expansion supports and everything that differs between them: images,
//! backup and stream tools, the file names a backup leaves, the replication SQL dialect, the
//! read-only setting and the client binaries. The facts and their sources are in README.md
//! ("Flavors"); the scripts that use them live in `scripts`.

use std::fmt;

use crate::image::ImageRef;

/// How a replica reports its replication threads and lag (docs/mysql-sql.md, "Replica status").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub statement: &'static str,
    pub io_running: &'static str,
    pub sql_running: &'static str,
    pub seconds_behind: &'static str,
}

/// A supported server line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    Mysql84,
    Mysql80,
    Mysql57,
    Mariadb,
}

/// How a replica is pointed at its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `CHANGE MASTER TO MASTER_…; START SLAVE` (MySQL 5.7).
    MasterSlave,
    /// `CHANGE REPLICATION SOURCE TO SOURCE_…; START REPLICA` (MySQL 8.0.23+; the only form in 8.4).
    SourceReplica,
    /// MariaDB's `CHANGE MASTER TO … MASTER_USE_GTID=slave_pos`.
    Mariadb,
}

impl Flavor {
    pub const ALL: [Flavor; 4] = [Flavor::Mysql84, Flavor::Mysql80, Flavor::Mysql57, Flavor::Mariadb];

    /// The annotation value naming this flavor.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Mysql84 => "mysql-8.4",
            Flavor::Mysql80 => "mysql-8.0",
            Flavor::Mysql57 => "mysql-5.7",
            Flavor::Mariadb => "mariadb",
        }
    }

    pub fn parse(value: &str) -> Option<Flavor> {
        Flavor::ALL.into_iter().find(|f| f.as_str() == value)
    }

    /// Image of the clone init container and the backup sidecar when the `backup-image`
    /// annotation doesn't name one. MariaDB's server image carries mariadb-backup itself, so the
    /// mysql container's image is used there. The clone port speaks mutual TLS with socat, which
    /// the Percona XtraBackup 8.x images install; 5.7 has no default: the tutorial's image has
    /// ncat only, whose listen mode can't verify client certificates, and Percona's 2.4 image
    /// has neither socat nor the client.
    pub fn default_backup_image(self, mysql_image: &str) -> Option<String> {
        match self {
            Flavor::Mysql84 => Some("percona/percona-xtrabackup:8.4".into()),
            Flavor::Mysql80 => Some("percona/percona-xtrabackup:8.0".into()),
            Flavor::Mysql57 => None,
            Flavor::Mariadb => Some(mysql_image.into()),
        }
    }

    pub fn is_mariadb(self) -> bool {
        self == Flavor::Mariadb
    }

    /// Name of the backup sidecar container.
    pub fn sidecar_name(self) -> &'static str {
        if self.is_mariadb() { "mariadb-backup" } else { "xtrabackup" }
    }

    pub fn backup_tool(self) -> &'static str {
        if self.is_mariadb() { "mariadb-backup" } else { "xtrabackup" }
    }

    pub fn stream_tool(self) -> &'static str {
        if self.is_mariadb() { "mbstream" } else { "xbstream" }
    }

    /// The SQL client; MariaDB 11 images no longer ship the `mysql` name.
    pub fn client(self) -> &'static str {
        if self.is_mariadb() { "mariadb" } else { "mysql" }
    }

    /// The server binary of the mysql image (a restore to a time runs it on the restored data).
    pub fn server(self) -> &'static str {
        if self.is_mariadb() { "mariadbd" } else { "mysqld" }
    }

    /// The tool that turns binary logs into SQL (docs/mysql-sql.md, "Point-in-time recovery").
    pub fn binlog_tool(self) -> &'static str {
        if self.is_mariadb() { "mariadb-binlog" } else { "mysqlbinlog" }
    }

    /// Options of the private server a restore to a time replays binary logs into, besides the
    /// datadir, socket and `--skip-networking --skip-log-bin`: replication stays stopped (8.4
    /// knows only the `replica` spelling, 5.7 only the `slave` one) and MySQL 8's X plugin
    /// listens nowhere (docs/mysql-sql.md, "Point-in-time recovery").
    pub fn replay_server_options(self) -> &'static str {
        match self {
            Flavor::Mysql84 => "--skip-replica-start --mysqlx=OFF",
            Flavor::Mysql80 => "--skip-slave-start --mysqlx=OFF",
            Flavor::Mysql57 | Flavor::Mariadb => "--skip-slave-start",
        }
    }

    pub fn admin_client(self) -> &'static str {
        if self.is_mariadb() { "mariadb-admin" } else { "mysqladmin" }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Flavor::Mysql84 | Flavor::Mysql80 => Dialect::SourceReplica,
            Flavor::Mysql57 => Dialect::MasterSlave,
            Flavor::Mariadb => Dialect::Mariadb,
        }
    }

    /// The replica.cnf line that keeps replicas read-only. MariaDB has no `super-read-only`
    /// (mariadbd refuses to start with it).
    pub fn read_only_option(self) -> &'static str {
        if self.is_mariadb() { "read-only" } else { "super-read-only" }
    }

    /// replica.cnf lines that make a replica survive its own crash (a SIGKILL, the OOM killer, a
    /// node failure) without applying a transaction twice. The applier's position must be saved
    /// in the same transaction as the data (an InnoDB table), and the relay log, which may end
    /// torn or hold events fetched twice, be fetched again from that position. MySQL 8.0 and 8.4
    /// keep the position in a table already and need `relay-log-recovery`; 5.7 keeps both
    /// positions in files by default. MariaDB replicates by GTID instead (see
    /// `scripts::clone`): its `gtid_slave_pos` is such a table, and a GTID replica fetches its
    /// relay log again on every start.
    pub fn replica_crash_safety(self) -> &'static [&'static str] {
        match self {
            Flavor::Mysql57 => {
                &["master-info-repository=TABLE", "relay-log-info-repository=TABLE", "relay-log-recovery=ON"]
            }
            Flavor::Mysql84 | Flavor::Mysql80 => &["relay-log-recovery=ON"],
            Flavor::Mariadb => &[],
        }
    }

    /// The statement that makes a running server read its certificate, key and CA bundle again
    /// (after a renewal); MySQL 5.7 has none and reads them at start only. See docs/mysql-sql.md.
    pub fn reload_tls_statement(self) -> Option<&'static str> {
        match self {
            Flavor::Mysql84 | Flavor::Mysql80 => Some("ALTER INSTANCE RELOAD TLS"),
            Flavor::Mysql57 => None,
            Flavor::Mariadb => Some("FLUSH SSL"),
        }
    }

    /// `SHOW REPLICA STATUS` and its `Replica_*`/`Source` columns on MySQL 8 (8.0.22+, the only
    /// form in 8.4); `SHOW SLAVE STATUS` and `Slave_*`/`Master` on 5.7 and MariaDB.
    pub fn replica_status(self) -> ReplicaStatus {
        match self.dialect() {
            Dialect::SourceReplica => ReplicaStatus {
                statement: "SHOW REPLICA STATUS",
                io_running: "Replica_IO_Running",
                sql_running: "Replica_SQL_Running",
                seconds_behind: "Seconds_Behind_Source",
            },
            Dialect::MasterSlave | Dialect::Mariadb => ReplicaStatus {
                statement: "SHOW SLAVE STATUS",
                io_running: "Slave_IO_Running",
                sql_running: "Slave_SQL_Running",
                seconds_behind: "Seconds_Behind_Master",
            },
        }
    }

    /// The global privileges of the exporter account: what mysqld-exporter documents
    /// (`PROCESS, REPLICATION CLIENT`), and on MariaDB `REPLICA MONITOR` too, which `SHOW SLAVE
    /// STATUS` needs there since 10.5.9 (docs/mysql-sql.md).
    pub fn monitor_privileges(self) -> &'static str {
        if self.is_mariadb() {
            "PROCESS, REPLICATION CLIENT, REPLICA MONITOR"
        } else {
            "PROCESS, REPLICATION CLIENT"
        }
    }

    /// The environment variable the server image reads the root password from.
    pub fn root_password_env(self) -> &'static str {
        if self.is_mariadb() { "MARIADB_ROOT_PASSWORD" } else { "MYSQL_ROOT_PASSWORD" }
    }

    /// The variable naming a file the server image reads the root password from instead (both
    /// images' entrypoints: `file_env`); the expansion sets this one, never the password itself.
    pub fn root_password_file_env(self) -> &'static str {
        if self.is_mariadb() { "MARIADB_ROOT_PASSWORD_FILE" } else { "MYSQL_ROOT_PASSWORD_FILE" }
    }

    /// Variables that would leave root without a password (or one nobody knows): refused.
    pub fn insecure_password_envs(self) -> &'static [&'static str] {
        if self.is_mariadb() {
            &[
                "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
                "MARIADB_RANDOM_ROOT_PASSWORD",
                "MYSQL_ALLOW_EMPTY_PASSWORD",
                "MYSQL_RANDOM_ROOT_PASSWORD",
            ]
        } else {
            &["MYSQL_ALLOW_EMPTY_PASSWORD", "MYSQL_RANDOM_ROOT_PASSWORD"]
        }
    }

    /// The Percona XtraBackup images run as UID 1001, which can't read a datadir owned by
    /// `mysql` (999, mode 0640); the sidecar runs as the mysql user there.
    pub fn sidecar_run_as(self) -> Option<i64> {
        matches!(self, Flavor::Mysql84 | Flavor::Mysql80).then_some(crate::consts::MYSQL_UID)
    }

    /// The clone container writes into a fresh claim owned by root, so it must run as root in
    /// images whose default user isn't.
    pub fn clone_run_as(self) -> Option<i64> {
        matches!(self, Flavor::Mysql84 | Flavor::Mysql80).then_some(0)
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an image names no flavor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageFlavorError {
    #[error("image {image:?} is not a MySQL or MariaDB image this webhook knows")]
    UnknownRepository { image: String },
    #[error("image {image:?} has no version tag")]
    NoVersion { image: String },
    #[error("image {image:?} is MySQL {version}, which is not supported (supported: 5.7, 8.0, 8.4)")]
    UnsupportedVersion { image: String, version: String },
}

/// Derives the flavor from the mysql container's image as users write it: `mysql:8.4`,
/// `docker.io/library/mysql:8.0.40`, `registry:5000/mirror/mysql:8.4@sha256:…`, `mariadb:11.4`,
/// `percona/percona-server:8.0`, `mysql:lts`.
pub fn flavor_from_image(image: &str) -> Result<Flavor, ImageFlavorError> {
    let reference = ImageRef::parse(image);
    let (name, parent) = (reference.name(), reference.namespace());
    if name == "mariadb" || (name == "server" && parent == Some("mariadb")) {
        return Ok(Flavor::Mariadb);
    }
    if !matches!(name, "mysql" | "mysql-server" | "percona" | "percona-server") {
        return Err(ImageFlavorError::UnknownRepository { image: image.into() });
    }
    let tag = reference.tag.ok_or_else(|| ImageFlavorError::NoVersion { image: image.into() })?;
    if tag == "lts" {
        return Ok(Flavor::Mysql84);
    }
    // `8.4`, `8.4.3`, `8.4.3-oracle`, `8.0.36-28` → major.minor.
    let mut numbers = tag.split(['.', '-']);
    let major = numbers.next().filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    let minor = numbers.next().filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    match (major, minor) {
        (Some("5"), Some("7")) => Ok(Flavor::Mysql57),
        (Some("8"), Some("0")) => Ok(Flavor::Mysql80),
        (Some("8"), Some("4")) => Ok(Flavor::Mysql84),
        (Some(major), Some(minor)) => Err(ImageFlavorError::UnsupportedVersion {
            image: image.into(),
            version: format!("{major}.{minor}"),
        }),
        _ => Err(ImageFlavorError::NoVersion { image: image.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_flavor_from_images_as_users_write_them() {
        let cases = [
            ("mysql:8.4", Flavor::Mysql84),
            ("mysql:8.4.3", Flavor::Mysql84),
            ("mysql:8.4.3-oracle", Flavor::Mysql84),
            ("mysql:lts", Flavor::Mysql84),
            ("docker.io/library/mysql:8.0.40", Flavor::Mysql80),
            ("registry.example.com:5000/mirror/mysql:8.4@sha256:0123abcd", Flavor::Mysql84),
            ("localhost/mysql:5.7", Flavor::Mysql57),
            ("mysql:5.7.44", Flavor::Mysql57),
            ("mysql/mysql-server:8.0", Flavor::Mysql80),
            ("percona/percona-server:8.0", Flavor::Mysql80),
            ("percona:8.0.36-28", Flavor::Mysql80),
            ("mariadb:11.4", Flavor::Mariadb),
            ("mariadb", Flavor::Mariadb),
            ("docker.io/mariadb/server:10.11", Flavor::Mariadb),
            ("mariadb:10.11@sha256:abc", Flavor::Mariadb),
            // An upper-case first component is a registry host, as the runtime reads it.
            ("Mirror/mysql:8.0", Flavor::Mysql80),
        ];
        for (image, expected) in cases {
            assert_eq!(flavor_from_image(image), Ok(expected), "{image}");
        }
    }

    #[test]
    fn refuses_images_that_name_no_flavor() {
        assert!(matches!(flavor_from_image("mysql"), Err(ImageFlavorError::NoVersion { .. })));
        assert!(matches!(flavor_from_image("mysql:latest"), Err(ImageFlavorError::NoVersion { .. })));
        assert!(matches!(flavor_from_image("mysql@sha256:abc"), Err(ImageFlavorError::NoVersion { .. })));
        assert!(matches!(flavor_from_image("postgres:16"), Err(ImageFlavorError::UnknownRepository { .. })));
        assert!(matches!(
            flavor_from_image("mysql:9.1"),
            Err(ImageFlavorError::UnsupportedVersion { version, .. }) if version == "9.1"
        ));
        assert!(matches!(flavor_from_image("mysql:8"), Err(ImageFlavorError::NoVersion { .. })));
    }

    #[test]
    fn flavor_names_round_trip() {
        for flavor in Flavor::ALL {
            assert_eq!(Flavor::parse(flavor.as_str()), Some(flavor));
        }
        assert_eq!(Flavor::parse("mysql-9"), None);
    }
}
