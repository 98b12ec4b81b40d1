//! The bash scripts of the init containers and the backup sidecar, per flavor.
//!
//! They follow the tutorial's design (server-id from the ordinal, clone from member N-1 on port
//! 3307, replication started once from the backup's coordinates) and fix its known defects:
//! - names come from the StatefulSet and its `serviceName`, never `mysql-0.mysql`;
//! - `$HOSTNAME`, not the `hostname` binary (missing from the Oracle-based images);
//! - binlog coordinates are read by whitespace fields: MariaDB and GTID-enabled MySQL write a
//!   third column that the tutorial's greedy regex swallowed into the file name;
//! - multi-statement `*_slave_info` (GTID replicas) is parsed, not glued together by `sed`;
//! - a clone that fails (peer not serving yet, broken stream) fails loudly thanks to `pipefail`,
//!   is retried, and is staged so a half-extracted datadir is never taken for real data;
//! - the sidecar handles SIGTERM instead of running ncat/socat as PID 1, which ignores it;
//! - the coordinates are consumed before mysqld starts, so the image entrypoint's `chown` of the
//!   datadir can't race the sidecar deleting files;
//! - replication uses a dedicated account whose password comes from the Secret, never root with an
//!   empty password; passwords are read from the mounted Secret's files (see [`root_password`])
//!   and travel to the clients by `MYSQL_PWD` and stdin, never on a command line or in a
//!   container's environment;
//! - the sidecar's wait for mysqld says why it is still waiting (see [`wait_for_mysqld`]), and
//!   readiness means something: a replica is ready only while it replicates (see [`mysql_ready`]);
//! - probes and scripts call only what the images ship (README "What each image must carry"):
//!   bash builtins where the tutorial called `grep`, `seq` or `hostname`;
//! - on MariaDB, root from outside the pod is bound by `read_only` like every other account (the
//!   tutorial's replicas accepted root's writes there, and diverged);
//! - clones travel over mutual TLS (see [`tls_listen`]): only a member, holding a certificate
//!   of the StatefulSet's CA, gets a backup, and the stream is encrypted;
//! - replicas survive their own crash: MariaDB replicates by GTID, MySQL recovers its relay log
//!   (and 5.7 keeps its positions in tables), where the tutorial's applied transactions twice.
//!
//! Each script starts with a block of shell variables (names are DNS labels, safe unquoted inside
//! single quotes) followed by a literal body, so the bodies need no escaping.

use crate::consts::{
    BACKUP_TARGET_DIR, BINLOG_ARCHIVE_DIR, CONFIG_PRIMARY, CONFIG_REPLICA, CONTAINER_FETCH_BACKUP,
    CONTAINER_REPLAY_BINLOGS, CREDENTIALS_DIR, DATA_DIR, EXPORTER_CONFIG_DIR, EXPORTER_MAX_CONNECTIONS,
    EXPORTER_USER, INIT_CONF_DIR, INIT_CONFIG_MAP_DIR, MYSQL_UID, PORT_CLONE, PORT_MYSQL, REPLICATION_USER,
    SCRATCH_DIR, SECRET_KEY_EXPORTER_PASSWORD, SECRET_KEY_REPLICATION_PASSWORD, SECRET_KEY_ROOT_PASSWORD,
    SERVER_ID_OFFSET, TLS_CA_FILE, TLS_CERT_FILE, TLS_DIR, TLS_KEY_FILE,
};
use crate::flavor::{Dialect, Flavor};
use crate::plan::{Restore, Target};

/// The file of key `key` of the credentials Secret, where every container that needs it mounts
/// the Secret (`expand::credentials_volume`).
pub fn credential_file(key: &str) -> String {
    format!("{CREDENTIALS_DIR}/{key}")
}

/// Bash: root's password from the credentials Secret's file, exported as `MYSQL_PWD`, which the
/// SQL clients and the backup tools read. `$(< file)` is a bash builtin read (no `cat`). Every
/// script and probe that logs in as root starts with this; calling it again picks up a
/// corrected Secret, which the kubelet updates in the mounted files.
pub fn root_password() -> String {
    format!("MYSQL_PWD=$(< {})\nexport MYSQL_PWD\n", credential_file(SECRET_KEY_ROOT_PASSWORD))
}

/// Bash: `variable` set to the password in key `key` of the credentials Secret, escaped for the
/// inside of an SQL string literal (`'…'`): backslashes and quotes.
pub fn sql_password(variable: &str, key: &str) -> String {
    format!(
        r#"{variable}=$(< {file})
{variable}=${{{variable}//\\/\\\\}}
{variable}=${{{variable}//\'/\\\'}}
"#,
        file = credential_file(key)
    )
}

/// Bash: waits until mysqld accepts root's connections on 127.0.0.1, saying why it is still
/// waiting whenever the reason changes: the client missing from the image (fatal: waiting can't
/// help), access denied (the Secret's root password is not the server's; the file is read again
/// on each attempt), the server not up yet, or the client's own message.
pub fn wait_for_mysqld(flavor: Flavor) -> String {
    let client = flavor.client();
    format!(
        r#"echo "waiting for mysqld to accept connections"
if ! command -v {client} > /dev/null; then
  echo "this image has no {client} client: the SQL client is required (README, What each image must carry)" >&2
  exit 1
fi
reason=''
until error=$({client} -h 127.0.0.1 -u root -e 'SELECT 1' 2>&1 > /dev/null); do
  case $error in
    *"Access denied"*) now="access denied for root: the password in {root_file} is not the server's" ;;
    *"Can't connect"* | *"Lost connection"* | *"Connection refused"*) now="mysqld is not accepting connections on 127.0.0.1:{PORT_MYSQL} yet" ;;
    *) now="the client failed: ${{error%%$'\n'*}}" ;;
  esac
  if [[ $now != "$reason" ]]; then
    echo "still waiting: $now"
    reason=$now
  fi
  sleep 1
  {root_password}
done
echo "mysqld accepts connections"
"#,
        root_file = credential_file(SECRET_KEY_ROOT_PASSWORD),
        root_password = root_password().trim_end().replace('\n', "\n  "),
    )
}

/// File the clone leaves for the sidecar: the first half of the statement that points this
/// member at the primary (the tutorial's name).
const PENDING_SQL: &str = "change_master_to.sql.in";

/// What the scripts need to know about the StatefulSet.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub statefulset: &'a str,
    pub service: &'a str,
    /// `spec.ordinals.start`: the primary is the first ordinal, not always 0.
    pub first_ordinal: i32,
}

const ORDINAL: &str = r#"if [[ ! $HOSTNAME =~ -([0-9]+)$ ]]; then
  echo "hostname '$HOSTNAME' does not end in -<ordinal>" >&2
  exit 1
fi
ordinal=${BASH_REMATCH[1]}
"#;

/// socat options of both ends of the clone/backup port: the member's certificate and key, and
/// the CA bundle both ends verify the other against (`verify=1`; the bundle holds the old CA
/// too during a rollover).
fn tls_options() -> String {
    format!(
        "cert={TLS_DIR}/{TLS_CERT_FILE},key={TLS_DIR}/{TLS_KEY_FILE},cafile={TLS_DIR}/{TLS_CA_FILE},verify=1"
    )
}

/// The clone/backup port's listener, in the background: for each client that presents a
/// certificate signed by the StatefulSet's CA, one at a time, runs `command` and sends its
/// output. A client without one fails the handshake before `command` runs, so it gets no byte;
/// there is no plain-text fallback. `port` and `command` are shell words (in double quotes);
/// `command` is the argument of socat's `EXEC:` (no `,` `:` `!` or quotes in it). Every program
/// that serves the port (clones, backups) uses this, so both ends always agree.
pub fn tls_listen(port: &str, command: &str) -> String {
    format!(
        r#"socat -U "OPENSSL-LISTEN:{port},reuseaddr,fork,max-children=1,{}" "EXEC:{command}" &"#,
        tls_options()
    )
}

/// Serves `command` with [`tls_listen`] until the listener exits (the script's last command, so
/// its status is the container's), and restarts the listener whenever the TLS Secret's files
/// change: socat reads them when it starts, and a renewal (a new certificate, a new CA in the
/// bundle) must reach the port without a pod restart; `on_change` (a shell command, or empty)
/// runs then too. Handles SIGTERM (the script is PID 1). Bash builtins only (`-nt`, `: >`),
/// besides socat and sleep.
pub fn serve_reloading_tls(port: &str, command: &str, on_change: &str) -> String {
    let on_change = if on_change.is_empty() { String::new() } else { format!("\n    {on_change} || true") };
    let listen = tls_listen(port, command);
    format!(
        r#": > /tmp/tls.loaded
{listen}
listener=$!
trap 'kill "$listener" 2>/dev/null; exit 0' TERM INT
while kill -0 "$listener" 2>/dev/null; do
  sleep 10 &
  wait $! || true
  if [[ {TLS_DIR}/{TLS_CERT_FILE} -nt /tmp/tls.loaded || {TLS_DIR}/{TLS_CA_FILE} -nt /tmp/tls.loaded ]]; then
    echo "the TLS Secret changed: restarting the listener with it"
    kill "$listener" 2>/dev/null || true
    wait "$listener" || true
    : > /tmp/tls.loaded
    {listen}
    listener=$!{on_change}
  fi
done
wait "$listener"
"#
    )
}

/// The replication channel's TLS options (`MASTER` or `SOURCE` prefix): encrypted, the member's
/// certificate presented, and the primary's verified against the CA and its name (`$primary`).
/// See docs/mysql-sql.md for each version's statement.
fn replication_tls(prefix: &str) -> String {
    format!(
        "{prefix}_SSL=1, {prefix}_SSL_CA='{TLS_DIR}/{TLS_CA_FILE}', {prefix}_SSL_CERT='{TLS_DIR}/{TLS_CERT_FILE}', \
         {prefix}_SSL_KEY='{TLS_DIR}/{TLS_KEY_FILE}', {prefix}_SSL_VERIFY_SERVER_CERT=1"
    )
}

/// mysqld serves the members' certificate to every client (replicas verify it) and asks
/// clients for theirs against the CA bundle.
fn server_tls() -> String {
    format!(
        "ssl-ca={TLS_DIR}/{TLS_CA_FILE}\nssl-cert={TLS_DIR}/{TLS_CERT_FILE}\nssl-key={TLS_DIR}/{TLS_KEY_FILE}\n"
    )
}

/// A client of the clone/backup port: connects to `host`:`port` (shell words, in double quotes),
/// verifies that the server's certificate was signed by the CA and names `host`, presents this
/// member's certificate and writes what it receives to stdout.
pub fn tls_receive(host: &str, port: &str) -> String {
    format!(r#"socat -u "OPENSSL:{host}:{port},{}" STDOUT"#, tls_options())
}

/// `init-mysql`: server-id and the primary's or a replica's config, into the conf.d volume.
pub fn init(names: Names<'_>) -> String {
    format!(
        "set -euo pipefail\nfirst={first}\n{ORDINAL}\
         # server-id 0 is reserved: a server with it refuses to replicate.\n\
         printf '[mysqld]\\nserver-id=%d\\n' $(({offset} + ordinal)) > {INIT_CONF_DIR}/server-id.cnf\n\
         if (( ordinal == first )); then\n  cp {INIT_CONFIG_MAP_DIR}/{CONFIG_PRIMARY} {INIT_CONF_DIR}/\n\
         else\n  cp {INIT_CONFIG_MAP_DIR}/{CONFIG_REPLICA} {INIT_CONF_DIR}/\nfi\n",
        first = names.first_ordinal,
        offset = SERVER_ID_OFFSET,
    )
}

/// `clone-mysql`: on an empty datadir of a member after the first, stream a backup from the
/// previous member, prepare it, turn its coordinates into the pending statement, and move it
/// into place.
pub fn clone(flavor: Flavor, names: Names<'_>) -> String {
    clone_script(flavor, names, false)
}

/// `clone-mysql` of a StatefulSet annotated `restore-from`: as [`clone`], and the first member
/// starts from the backup `fetch-backup` downloaded and verified instead of an empty datadir.
pub fn clone_restoring(flavor: Flavor, names: Names<'_>) -> String {
    clone_script(flavor, names, true)
}

/// The command that opens the clone stream of member `$peer` on `$port` and writes it to
/// stdout: the one place that knows how the clone channel is reached, used by clones and by
/// backups alike.
pub fn clone_stream() -> String {
    tls_receive("$peer", "$port")
}

fn clone_script(flavor: Flavor, names: Names<'_>, restore: bool) -> String {
    let receive = clone_stream();
    let first_member = if restore { restore_first_member(flavor) } else { String::new() };
    let coordinates = coordinates(flavor);
    format!(
        r#"set -euo pipefail
statefulset='{sts}'
service='{svc}'
first={first}
port={PORT_CLONE}
datadir={DATA_DIR}
{ORDINAL}# Existing data: this member was initialised before and must keep it.
if [[ -d $datadir/mysql ]]; then
  echo "data directory already initialised, nothing to clone"
  exit 0
fi
{first_member}# The first member starts empty: the server image initialises it.
if (( ordinal == first )); then
  exit 0
fi
peer="$statefulset-$((ordinal - 1)).$service"
# Staged, so that a failed clone never leaves a mysql/ directory that would pass for real data.
staging="$datadir/.clone"
for ((attempt = 1; attempt <= 30; attempt++)); do
  find "$datadir" -mindepth 1 -delete
  mkdir -p "$staging"
  echo "cloning from $peer:$port (attempt $attempt)"
  # pipefail: a refused connection or a broken stream fails here instead of yielding an empty clone.
  if {receive} | {stream} -x -C "$staging" && {tool} --prepare --target-dir="$staging"; then
    break
  fi
  if (( attempt == 30 )); then
    echo "giving up: $peer did not serve a usable backup" >&2
    exit 1
  fi
  sleep 5
done
cd "$staging"
{coordinates}rm -f ./*_binlog_info ./*_slave_info
shopt -s dotglob
mv "$staging"/* "$datadir"/
rmdir "$staging"
chown -R {MYSQL_UID}:{MYSQL_UID} "$datadir"
"#,
        sts = names.statefulset,
        svc = names.service,
        first = names.first_ordinal,
        stream = flavor.stream_tool(),
        tool = flavor.backup_tool(),
    )
}

/// The first member of a restored StatefulSet: unpack and prepare the backup `fetch-backup` left
/// (verified) in `.restore`, then move it into place with `mysql/` last, so that the datadir
/// passes for initialised only once everything is there. The source's replication state is
/// dropped: the restored member is a primary.
fn restore_first_member(flavor: Flavor) -> String {
    let stream = flavor.stream_tool();
    let tool = flavor.backup_tool();
    format!(
        r#"restore="$datadir/.restore"
if (( ordinal == first )); then
  if [[ ! -f $restore/id ]]; then
    echo "no verified backup in $restore: {CONTAINER_FETCH_BACKUP} did not complete" >&2
    exit 1
  fi
  id=$(<"$restore/id")
  staging="$datadir/.clone"
  find "$datadir" -mindepth 1 -maxdepth 1 ! -name .restore -exec rm -rf {{}} +
  mkdir -p "$staging"
  echo "restoring backup $id"
  if ! gzip -dc "$restore/backup.xbstream.gz" | {stream} -x -C "$staging"; then
    echo "backup $id: the stream does not unpack" >&2
    exit 1
  fi
  if ! {tool} --prepare --target-dir="$staging"; then
    echo "backup $id: {tool} --prepare failed" >&2
    exit 1
  fi
  rm -f "$staging"/*_binlog_info "$staging"/*_slave_info "$staging"/master*.info "$staging"/relay-log*.info \
    "$staging"/*relay-bin*
  if [[ -f $restore/binlogs/list ]]; then
    echo "backup $id prepared; {CONTAINER_REPLAY_BINLOGS} replays the binary logs on it, then moves it into place"
    exit 0
  fi
{move}  echo "restored backup $id"
  exit 0
fi
"#,
        move = move_into_place(),
    )
}

/// Moves the prepared copy in `$staging` into `$datadir` with `mysql/` last, so the datadir
/// passes for initialised only once everything is there, then drops the downloaded backup.
fn move_into_place() -> String {
    format!(
        r#"  shopt -s dotglob
  for entry in "$staging"/*; do
    [[ $entry == "$staging/mysql" ]] || mv "$entry" "$datadir"/
  done
  mv "$staging/mysql" "$datadir/mysql"
  rmdir "$staging"
  rm -rf "$restore"
  chown -R {MYSQL_UID}:{MYSQL_UID} "$datadir"
"#
    )
}

/// The part of the clone script that reads the backup's coordinates and writes the first half of
/// the statement in the flavor's dialect. A backup of a replica carries the primary's coordinates
/// in `*_slave_info`, which wins over `*_binlog_info` (the replica's own binlog). The globs match
/// both `xtrabackup_*` and the `mariadb_backup_*` names MariaDB 11.1 switched to (MDEV-18931).
fn coordinates(flavor: Flavor) -> String {
    let (file_key, pos_key, change) = match flavor.dialect() {
        Dialect::SourceReplica => ("SOURCE_LOG_FILE", "SOURCE_LOG_POS", "CHANGE REPLICATION SOURCE TO"),
        Dialect::MasterSlave | Dialect::Mariadb => ("MASTER_LOG_FILE", "MASTER_LOG_POS", "CHANGE MASTER TO"),
    };
    // MariaDB replicates by GTID, always: a file/position replica keeps its place in
    // relay-log.info, so after a crash it applies transactions again and stops on a duplicate,
    // while `gtid_slave_pos` is an InnoDB table updated with each transaction.
    let (gtid_init, gtid_re, gtid_from_slave_info, gtid_column, gtid_from_binlog_info, statement) = if flavor
        .is_mariadb()
    {
        (
            " gtid='' by_gtid=''",
            "gtid_re=\"gtid_slave_pos[[:space:]]*=[[:space:]]*'([^']*)'\"\n",
            "  if [[ $info =~ $gtid_re ]]; then\n    gtid=${BASH_REMATCH[1]} by_gtid=1\n  fi\n",
            "gtid ",
            "  # The primary's GTID position: empty while it has logged no transaction, and replicating\n  \
                 # from an empty position starts at the beginning of its binlog.\n  by_gtid=1\n",
            format!(
                r#"if [[ -n $by_gtid ]]; then
  echo "SET GLOBAL gtid_slave_pos='$gtid'; {change} MASTER_USE_GTID=slave_pos" > {PENDING_SQL}
elif [[ -n $file && -n $pos ]]; then
  # A replica that has applied no transaction by GTID yet writes a file and position instead. Its
  # gtid_slave_pos, restored with the data (an InnoDB table), is where that data stands.
  echo "{change} MASTER_USE_GTID=slave_pos" > {PENDING_SQL}
"#
            ),
        )
    } else {
        (
            "",
            "",
            "",
            "",
            "",
            format!(
                r#"if [[ -n $file && -n $pos ]]; then
  echo "{change} {file_key}='$file', {pos_key}=$pos" > {PENDING_SQL}
"#
            ),
        )
    };
    format!(
        r#"file='' pos=''{gtid_init}
file_re="_LOG_FILE[[:space:]]*=[[:space:]]*'([^']+)'"
pos_re='_LOG_POS[[:space:]]*=[[:space:]]*([0-9]+)'
{gtid_re}shopt -s nullglob
slave_info=(./*_slave_info)
binlog_info=(./*_binlog_info)
if [[ ${{#slave_info[@]}} -gt 0 && -s ${{slave_info[0]}} ]]; then
  info=$(<"${{slave_info[0]}}")
{gtid_from_slave_info}  if [[ $info =~ $file_re ]]; then
    file=${{BASH_REMATCH[1]}}
  fi
  if [[ $info =~ $pos_re ]]; then
    pos=${{BASH_REMATCH[1]}}
  fi
elif [[ ${{#binlog_info[@]}} -gt 0 && -s ${{binlog_info[0]}} ]]; then
  # Columns: file, position and, with GTIDs, the GTID set; split on whitespace.
  read -r file pos {gtid_column}_ < "${{binlog_info[0]}}" || true
{gtid_from_binlog_info}fi
{statement}else
  echo "the backup carries no replication coordinates" >&2
  exit 1
fi
"#
    )
}

/// The backup sidecar: wait for mysqld, keep the replication and exporter accounts in line with
/// the Secret on the primary, start replication once from the pending statement on a fresh
/// clone, then serve clones on 3307.
pub fn sidecar(flavor: Flavor, names: Names<'_>) -> String {
    sidecar_with(flavor, names, "")
}

/// The sidecar of a StatefulSet with `binlog-archive`: as [`sidecar`], and the primary rotates
/// its binary log at least every `flush_interval` seconds ([`binlog_rotation`]).
pub fn archiving_sidecar(flavor: Flavor, names: Names<'_>, flush_interval: u64) -> String {
    sidecar_with(flavor, names, &binlog_rotation(flavor, flush_interval))
}

fn sidecar_with(flavor: Flavor, names: Names<'_>, rotation: &str) -> String {
    let client = flavor.client();
    let user = REPLICATION_USER;
    let tool = flavor.backup_tool();
    let (source_options, start) = match flavor.dialect() {
        Dialect::SourceReplica => (
            format!(
                "SOURCE_HOST='$primary', SOURCE_USER='{user}', SOURCE_PASSWORD='$password', \
                 SOURCE_CONNECT_RETRY=10, GET_SOURCE_PUBLIC_KEY=1, {}",
                replication_tls("SOURCE")
            ),
            "START REPLICA",
        ),
        Dialect::MasterSlave | Dialect::Mariadb => (
            format!(
                "MASTER_HOST='$primary', MASTER_USER='{user}', MASTER_PASSWORD='$password', \
                 MASTER_CONNECT_RETRY=10, {}",
                replication_tls("MASTER")
            ),
            "START SLAVE",
        ),
    };
    let reload_server_tls = match flavor.reload_tls_statement() {
        Some(statement) => format!("{client} -h 127.0.0.1 -u root -e '{statement}'"),
        // 5.7 reads its certificate at start only: a renewal takes effect at its next restart.
        None => String::new(),
    };
    // PXB 8 keeps temporary files in --target-dir even when streaming; keep them off the datadir.
    let backup = match flavor {
        Flavor::Mysql84 | Flavor::Mysql80 => format!(
            "{tool} --backup --slave-info --stream=xbstream --host=127.0.0.1 --user=root --target-dir=/tmp/backup"
        ),
        Flavor::Mysql57 | Flavor::Mariadb => {
            format!("{tool} --backup --slave-info --stream=xbstream --host=127.0.0.1 --user=root")
        }
    };
    let local_root = if flavor.is_mariadb() { mariadb_local_root() } else { String::new() };
    let exporter = exporter_account(flavor);
    let serve =
        format!("mkdir -p /tmp/backup\n{}", serve_reloading_tls("$port", &backup, &reload_server_tls));
    format!(
        r#"set -euo pipefail
statefulset='{sts}'
service='{svc}'
first={first}
port={PORT_CLONE}
# As PID 1, bash ignores SIGTERM unless trapped: without this, every pod deletion waits out the grace period.
trap 'exit 0' TERM INT
{ORDINAL}primary="$statefulset-$first.$service"
{root_password}{replication_password}cd {DATA_DIR}
{wait}if (( ordinal == first )); then
  # Re-applied on every start, so the account always matches the Secret; kept out of the binlog.
  {client} -h 127.0.0.1 -u root <<SQL
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '$password' REQUIRE SSL;
ALTER USER '{user}'@'%' IDENTIFIED BY '$password' REQUIRE SSL;
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%';
SQL
{local_root}{exporter}fi
if [[ -f {PENDING_SQL} ]]; then
  echo "starting replication from $primary at the clone's position"
  {client} -h 127.0.0.1 -u root <<SQL
$(<{PENDING_SQL}), {source_options};
{start};
SQL
  # At most once: after a restart the server resumes replication on its own.
  mv {PENDING_SQL} change_master_to.sql.orig
fi
{rotation}echo "serving clones on port $port"
{serve}"#,
        sts = names.statefulset,
        svc = names.service,
        first = names.first_ordinal,
        root_password = root_password(),
        replication_password = sql_password("password", SECRET_KEY_REPLICATION_PASSWORD),
        wait = wait_for_mysqld(flavor),
    )
}

/// On the primary: the account mysqld-exporter logs in as, `exporter`@`127.0.0.1` (the exporter
/// runs in the pod), with the monitoring privileges mysqld-exporter documents, `SELECT` on
/// `performance_schema` only (no user table), and `MAX_USER_CONNECTIONS`. Unlike the other
/// accounts it is written to the binlog, so the replicas of a cluster made by an earlier version
/// get it too; the binlog holds its password hash only: MySQL rewrites the statement itself,
/// MariaDB would log it as written, so there the hash is computed first and given instead
/// (docs/mysql-sql.md). A Secret without the key (yours, made before the account existed) is
/// said in the log and skipped: the exporter can't log in until the key is added.
fn exporter_account(flavor: Flavor) -> String {
    let client = flavor.client();
    let account = format!("'{EXPORTER_USER}'@'127.0.0.1'");
    let file = credential_file(SECRET_KEY_EXPORTER_PASSWORD);
    let (hash, identified) = if flavor.is_mariadb() {
        (
            format!(
                "    exporter_hash=$({client} -h 127.0.0.1 -u root -N <<SQL\nSELECT PASSWORD('$exporter_password');\nSQL\n)\n"
            ),
            "IDENTIFIED BY PASSWORD '$exporter_hash'",
        )
    } else {
        (String::new(), "IDENTIFIED BY '$exporter_password'")
    };
    format!(
        r#"  if [[ -f {file} ]]; then
{password}{hash}    {client} -h 127.0.0.1 -u root <<SQL
CREATE USER IF NOT EXISTS {account} {identified} WITH MAX_USER_CONNECTIONS {EXPORTER_MAX_CONNECTIONS};
ALTER USER {account} {identified} WITH MAX_USER_CONNECTIONS {EXPORTER_MAX_CONNECTIONS};
GRANT {privileges} ON *.* TO {account};
GRANT SELECT ON performance_schema.* TO {account};
SQL
  else
    echo "the credentials Secret has no key {SECRET_KEY_EXPORTER_PASSWORD}: account {EXPORTER_USER} not created (add the key and restart this pod)" >&2
  fi
"#,
        password = indent(&sql_password("exporter_password", SECRET_KEY_EXPORTER_PASSWORD), "    "),
        privileges = flavor.monitor_privileges(),
    )
}

/// `text` with every line indented by `prefix`.
fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|line| format!("{prefix}{line}\n")).collect()
}

/// MariaDB's `read_only` doesn't stop accounts holding `READ ONLY ADMIN`, and root@'%' (the
/// account clients reach through the Services) has it: a client could write to a replica, which
/// diverges and stops replicating at the primary's next conflicting row. MySQL's
/// `super_read_only` stops root too. So, on the primary, with root's password from the Secret:
/// root keeps every privilege from inside the pod (root@'127.0.0.1': probes, the exporter, this
/// sidecar, which must set `gtid_slave_pos` on a read-only replica) and loses `READ ONLY ADMIN`
/// from anywhere else. Kept out of the binlog like the replication account; replicas get both
/// accounts with their clone. Skipped when the image made no root@'%' (`MARIADB_ROOT_HOST`).
fn mariadb_local_root() -> String {
    format!(
        r#"{root_password}  mariadb -h 127.0.0.1 -u root <<SQL
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '$root_password';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '$root_password';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
SQL
  remote_root=$(mariadb -h 127.0.0.1 -u root -N -e "SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'root' AND Host = '%'")
  if [[ $remote_root == 1 ]]; then
    mariadb -h 127.0.0.1 -u root -e "SET SESSION sql_log_bin = 0; REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%'"
  fi
"#,
        root_password = indent(&sql_password("root_password", SECRET_KEY_ROOT_PASSWORD), "  "),
    )
}

/// Readiness of the sidecar: something listens on the clone port. A TCP probe would start a
/// backup on every probe, so the probe reads the socket table instead (`0CEB` is 3307, `0A`
/// is LISTEN), with bash builtins only: the images are not shown to ship `grep`.
pub fn clone_port_listening() -> String {
    format!(
        r#"for table in /proc/net/tcp /proc/net/tcp6; do
  [[ -r $table ]] || continue
  while read -r _ local _ state _; do
    if [[ $local == *:{:04X} && $state == 0A ]]; then
      exit 0
    fi
  done < "$table"
done
echo "nothing listens on port {PORT_CLONE} yet"
exit 1
"#,
        PORT_CLONE
    )
}

/// Liveness and startup of the mysql container: the server answers a ping (root, password
/// from the Secret's file).
pub fn mysql_alive(flavor: Flavor) -> String {
    format!("{}exec {} ping -h 127.0.0.1 -u root\n", root_password(), flavor.admin_client())
}

/// Readiness of the mysql container, which is what the Services and the next member's clone go
/// by. The primary (the first ordinal) is ready while it accepts writes (`read_only` off); a
/// replica while both replication threads run and, with `max_lag` (seconds), while it is at most
/// that far behind. Over TCP: the image's temporary init server listens on a socket only, so
/// this stays false until the real server is up. A failure prints why (the kubelet puts the
/// output in the pod's events). See docs/mysql-sql.md, "Replica status".
pub fn mysql_ready(flavor: Flavor, first_ordinal: i32, max_lag: Option<u64>) -> String {
    let client = flavor.client();
    let status = flavor.replica_status();
    let lag = match max_lag {
        Some(max) => format!(
            r#"if [[ ! $status =~ {behind}:\ ([0-9]+) ]]; then
  echo "replica: {behind} is unknown"
  exit 1
fi
if (( BASH_REMATCH[1] > {max} )); then
  echo "replica: ${{BASH_REMATCH[1]}} s behind the primary, more than the {max} s allowed"
  exit 1
fi
"#,
            behind = status.seconds_behind
        ),
        None => String::new(),
    };
    format!(
        r#"{root_password}first={first_ordinal}
{ORDINAL}if (( ordinal == first )); then
  read_only=$({client} -h 127.0.0.1 -u root -N -e 'SELECT @@global.read_only') || exit 1
  if [[ $read_only != 0 ]]; then
    echo "primary: read_only is on, it accepts no writes"
    exit 1
  fi
  exit 0
fi
status=$({client} -h 127.0.0.1 -u root -e '{statement}\G') || exit 1
if [[ ! $status =~ {io}:\ Yes ]]; then
  echo "replica: the replication IO thread is not running"
  exit 1
fi
if [[ ! $status =~ {sql}:\ Yes ]]; then
  echo "replica: the replication SQL thread is not running"
  exit 1
fi
{lag}"#,
        root_password = root_password(),
        statement = status.statement,
        io = status.io_running,
        sql = status.sql_running,
    )
}

/// The exporter container's command (POSIX sh: its image is busybox-based): writes the client
/// configuration mysqld-exporter reads (`--config.my-cnf`) from the credentials Secret's file into
/// an in-memory emptyDir, readable by the exporter's user only, then runs the exporter. It has
/// no password-file option, and its configuration file expands `$VARIABLES` and cuts `#`/`;`
/// comments, so a password with other than letters, digits and `-_.+=/@%,:` is refused with a
/// message. TLS to 127.0.0.1 (with `require-tls` the server requires it); the CA is given but the
/// name not checked: the certificate names the members, not 127.0.0.1, and the traffic never
/// leaves the pod.
pub fn exporter(binary: &str, args: &[String]) -> String {
    let file = credential_file(SECRET_KEY_EXPORTER_PASSWORD);
    format!(
        r#"set -eu
umask 077
if [ ! -f {file} ]; then
  echo "the credentials Secret has no key {SECRET_KEY_EXPORTER_PASSWORD}: the exporter can't log in (README, Companion objects)" >&2
  exit 1
fi
password=''
# A file without a final newline makes read fail after reading it: the check below decides.
IFS= read -r password < {file} || true
case $password in
  '' | *[!A-Za-z0-9_.+=/@%,:-]*)
    echo "{SECRET_KEY_EXPORTER_PASSWORD} in the credentials Secret is empty or has characters the exporter's configuration can't carry; use letters, digits and -_.+=/@%,:" >&2
    exit 1
    ;;
esac
printf '[client]\nuser={EXPORTER_USER}\npassword=%s\nssl-ca={TLS_DIR}/{TLS_CA_FILE}\n' "$password" > {EXPORTER_CONFIG_DIR}/my.cnf
exec {binary} --config.my-cnf={EXPORTER_CONFIG_DIR}/my.cnf {args}
"#,
        args = args.join(" "),
    )
}

/// The primary's and replicas' server configuration (the companion ConfigMap). With
/// `require_tls`, mysqld refuses TCP clients without TLS (`require_secure_transport`; local
/// socket connections stay allowed).
pub fn config(flavor: Flavor, require_tls: bool) -> [(&'static str, String); 2] {
    let server_tls =
        if require_tls { format!("{}require-secure-transport=ON\n", server_tls()) } else { server_tls() };
    [
        (
            CONFIG_PRIMARY,
            format!("# Applied on the first member only (the primary).\n[mysqld]\nlog-bin\n{server_tls}"),
        ),
        (
            CONFIG_REPLICA,
            format!(
                "# Applied on the other members (replicas).\n[mysqld]\n{}\n{}{}",
                flavor.read_only_option(),
                flavor.replica_crash_safety().iter().map(|line| format!("{line}\n")).collect::<String>(),
                server_tls
            ),
        ),
    ]
}

/// The rclone remote of a target: the S3 remote `target:` configured by the container's
/// `RCLONE_CONFIG_TARGET_*` variables, or the claim mounted at [`BACKUP_TARGET_DIR`].
pub fn remote(target: &Target) -> String {
    let (root, prefix) = match target {
        Target::S3 { bucket, prefix } => (format!("target:{bucket}"), prefix),
        Target::Pvc { prefix, .. } => (BACKUP_TARGET_DIR.to_owned(), prefix),
    };
    if prefix.is_empty() { root } else { format!("{root}/{prefix}") }
}

/// `take-backup`, the first step of a backup Job (bash, in the backup image): choose the member
/// (a replica whose replication runs, the newest ordinal first; the primary when none does),
/// stream its backup through the clone channel into the scratch volume compressed, then prove
/// the copy restores (unpack and prepare a throw-away copy) and write the manifest. Nothing is
/// published here: `publish-backup` does that once this succeeded.
pub fn take_backup(flavor: Flavor, names: Names<'_>, replicas: i32) -> String {
    let client = flavor.client();
    let status = flavor.replica_status();
    let (status, io, sql) = (status.statement, status.io_running, status.sql_running);
    format!(
        r#"set -euo pipefail
{root_password}statefulset='{sts}'
service='{svc}'
first={first}
replicas={replicas}
flavor='{flavor}'
port={PORT_CLONE}
scratch={SCRATCH_DIR}
id=$(date -u +%Y%m%dT%H%M%SZ)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# A replica is suitable while both replication threads run: its data is the primary's, recent.
replicating() {{
  local status
  status=$({client} --connect-timeout=5 -h "$1" -u root -e '{status}\G' 2>/dev/null) || return 1
  [[ $status =~ {io}:\ Yes && $status =~ {sql}:\ Yes ]]
}}
member=$first
for ((candidate = first + replicas - 1; candidate > first; candidate--)); do
  if replicating "$statefulset-$candidate.$service"; then
    member=$candidate
    break
  fi
done
peer="$statefulset-$member.$service"
echo "backup $id: streaming from $peer"
# pipefail: a refused connection or a broken stream fails the Job instead of leaving a short copy.
{receive} | gzip -c > "$scratch/backup.xbstream.gz"
sha256=$(sha256sum "$scratch/backup.xbstream.gz")
sha256=${{sha256%% *}}
size=$(stat -c %s "$scratch/backup.xbstream.gz")
echo "backup $id: $size bytes, sha256 $sha256; checking that it restores"
check="$scratch/check"
mkdir -p "$check"
gzip -dc "$scratch/backup.xbstream.gz" | {stream} -x -C "$check"
{tool} --prepare --target-dir="$check" > "$scratch/prepare.log" 2>&1 || {{
  cat "$scratch/prepare.log" >&2
  echo "backup $id: {tool} --prepare failed: the copy would not restore" >&2
  exit 1
}}
file='' position='' gtid=''
shopt -s nullglob
for info in "$check"/*_slave_info "$check"/*_binlog_info; do
  text=$(<"$info")
  if [[ $info == *_binlog_info ]]; then
    # The member's own binlog: file, position and, with GTIDs, the GTID set.
    read -r f p g _ <<< "$text" || true
    file=${{file:-$f}} position=${{position:-$p}} gtid=${{gtid:-${{g:-}}}}
  else
    # A replica: the primary's coordinates.
    [[ $text =~ gtid_slave_pos[[:space:]]*=[[:space:]]*\'([^\']*)\' ]] && gtid=${{BASH_REMATCH[1]}}
    [[ $text =~ _LOG_FILE[[:space:]]*=[[:space:]]*\'([^\']+)\' ]] && file=${{BASH_REMATCH[1]}}
    [[ $text =~ _LOG_POS[[:space:]]*=[[:space:]]*([0-9]+) ]] && position=${{BASH_REMATCH[1]}}
  fi
done
version=''
for info in "$check"/*backup_info; do
  version=$(sed -n 's/^server_version = //p' "$info")
done
rm -rf "$check"
finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# One key per line, values without quotes or backslashes: read back with sed by the restore.
clean() {{ printf '%s' "${{1//[\"\\]/}}"; }}
cat > "$scratch/manifest.json" <<JSON
{{
  "id": "$id",
  "statefulset": "$statefulset",
  "member": "$peer",
  "flavor": "$flavor",
  "server_version": "$(clean "$version")",
  "binlog_file": "$(clean "$file")",
  "binlog_position": "$(clean "$position")",
  "gtid": "$(clean "$gtid")",
  "started": "$started",
  "finished": "$finished",
  "size": $size,
  "sha256": "$sha256",
  "format": "{stream}+gzip",
  "prepared": true
}}
JSON
echo "$id" > "$scratch/id"
echo "backup $id taken from $peer and checked"
"#,
        sts = names.statefulset,
        svc = names.service,
        first = names.first_ordinal,
        receive = clone_stream(),
        stream = flavor.stream_tool(),
        tool = flavor.backup_tool(),
        root_password = root_password(),
    )
}

/// The ids of the complete backups in `$remote` (those with a manifest), oldest first: an
/// interrupted backup has no manifest and is never counted, restored or listed as good. POSIX sh.
const COMPLETE_BACKUPS: &str = r#"complete_backups() {
  rclone lsf -R --files-only --include '/*/manifest.json' "$remote" |
    sed -n 's|^\([0-9]\{8\}T[0-9]\{6\}Z\)/manifest\.json$|\1|p' | sort
}
"#;

/// `publish-backup`, the second step of a backup Job (POSIX sh, in the client image): upload
/// the checked backup under a temporary name, rename it, write the manifest last (a backup
/// without one is incomplete), then apply retention: the oldest complete backups beyond `keep`
/// are removed, never the one just made, and leftovers of interrupted backups older than the
/// oldest kept one go too.
pub fn publish_backup(target: &Target, keep: u32) -> String {
    format!(
        r#"set -eu
remote='{remote}'
keep={keep}
scratch={SCRATCH_DIR}
{COMPLETE_BACKUPS}id=$(cat "$scratch/id")
echo "publishing backup $id to $remote"
rclone copyto "$scratch/backup.xbstream.gz" "$remote/$id/backup.xbstream.gz.partial"
rclone moveto "$remote/$id/backup.xbstream.gz.partial" "$remote/$id/backup.xbstream.gz"
# Last: the manifest is what makes the backup complete.
rclone copyto "$scratch/manifest.json" "$remote/$id/manifest.json"
echo "backup $id published"
complete=$(complete_backups)
count=$(printf '%s\n' "$complete" | grep -c . || true)
if [ "$count" -gt "$keep" ]; then
  for old in $(printf '%s\n' "$complete" | head -n $((count - keep))); do
    echo "retention: removing backup $old (keeping the newest $keep)"
    rclone purge "$remote/$old"
  done
fi
oldest=$(complete_backups | head -n 1)
for entry in $(rclone lsf --dirs-only "$remote" | sed -n 's|^\([0-9]\{{8\}}T[0-9]\{{6\}}Z\)/$|\1|p'); do
  if ! printf '%s\n' "$complete" | grep -qx "$entry" && expr "$entry" \< "$oldest" > /dev/null; then
    echo "retention: removing incomplete backup $entry"
    rclone purge "$remote/$entry"
  fi
done
"#,
        remote = remote(target),
    )
}

/// The shell function `field <key>` that reads a value of the manifest at `path` (one key per
/// line, as `take-backup` writes it). POSIX sh.
fn manifest_field(path: &str) -> String {
    format!(
        r#"field() {{ sed -n "s/^ *\"$1\": *\"\{{0,1\}}\([^\",]*\)\"\{{0,1\}},\{{0,1\}}$/\1/p" "{path}"; }}
"#
    )
}

/// `fetch-backup`, the init container of a restored StatefulSet (POSIX sh, in the client
/// image): on the first member with an empty datadir, download the backup (the newest complete
/// one for `latest`; with `restore-to-time`, the newest finished by then); check the SHA-256
/// against the manifest and, for a restore to a time, download and check the binary logs to
/// replay ([`fetch_binlogs`]); leave it all in `.restore` only when everything matches. Any
/// failure names the backup and the problem and leaves nothing behind.
pub fn fetch_backup(names: Names<'_>, restore: &Restore) -> String {
    let (latest, binlogs) = match &restore.to_time {
        Some(time) => (latest_before(time), fetch_binlogs(time)),
        None => (
            r#"  id=$(complete_backups | tail -n 1)
  [ -n "$id" ] || { id=latest; fail "there is no complete backup (none has a manifest)"; }
  echo "latest complete backup: $id"
"#
            .to_owned(),
            String::new(),
        ),
    };
    format!(
        r#"set -eu
first={first}
remote='{remote}'
id='{id}'
datadir={DATA_DIR}
{COMPLETE_BACKUPS}# The container runtime sets HOSTNAME (the pod's name) in every container's environment.
# shellcheck disable=SC3028
pod=$HOSTNAME
ordinal=${{pod##*-}}
case $ordinal in
  '' | *[!0-9]*) echo "hostname '$pod' does not end in -<ordinal>" >&2; exit 1 ;;
esac
if [ "$ordinal" != "$first" ] || [ -d "$datadir/mysql" ] || [ -f "$datadir/.restore/id" ]; then
  exit 0
fi
download="$datadir/.restore-download"
fail() {{
  echo "restore of backup $id from $remote failed: $*" >&2
  rm -rf "$download"
  exit 1
}}
{field}rm -rf "$download"
mkdir -p "$download"
if [ "$id" = latest ]; then
{latest}fi
rclone copyto "$remote/$id/manifest.json" "$download/manifest.json" ||
  fail "it has no manifest.json: it does not exist or never completed"
rclone copyto "$remote/$id/backup.xbstream.gz" "$download/backup.xbstream.gz" ||
  fail "its data (backup.xbstream.gz) can't be downloaded"
expected=$(field sha256)
actual=$(sha256sum "$download/backup.xbstream.gz" | cut -d ' ' -f 1)
[ -n "$expected" ] || fail "its manifest has no sha256"
[ "$expected" = "$actual" ] ||
  fail "checksum mismatch: the manifest says sha256 $expected, the data has $actual: the backup is corrupt"
{binlogs}printf '%s\n' "$id" > "$download/id"
mv "$download" "$datadir/.restore"
echo "backup $id downloaded and verified (sha256 $actual)"
"#,
        first = names.first_ordinal,
        remote = remote(&restore.source),
        id = restore.id,
        field = manifest_field("$download/manifest.json"),
    )
}

/// `latest` with `restore-to-time`: the newest complete backup that finished by then (a backup
/// id is its start time, so the later ones are skipped unread).
fn latest_before(time: &str) -> String {
    let stop_id: String = time.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    format!(
        r#"  for candidate in $(complete_backups | sort -r); do
    if expr "$candidate" \> '{stop_id}' > /dev/null; then
      continue
    fi
    rclone copyto "$remote/$candidate/manifest.json" "$download/manifest.json" || continue
    if ! expr "$(field finished)" \> '{time}' > /dev/null; then
      id=$candidate
      break
    fi
  done
  [ "$id" != latest ] || fail "no complete backup finished at or before {time} (restore-to-time)"
  echo "latest complete backup finished by {time}: $id"
"#
    )
}

/// The binary logs a restore to `time` replays, downloaded into `$download/binlogs` with their
/// list and the time, each checked against its SHA-256. Refused, naming the backup and the
/// problem: a time before the backup's end (its data already holds later changes), a time after
/// the newest archived log was closed (the changes since are not archived: restoring to it would
/// silently lose them), a missing log, a corrupt one. The logs needed are those closed after the
/// backup started (and one before, in case the clocks of the Job's pod and the primary differ),
/// from the backup's binlog file on when the manifest names one.
fn fetch_binlogs(time: &str) -> String {
    format!(
        r#"stop='{time}'
finished=$(field finished)
started=$(field started)
if expr "$finished" \> "$stop" > /dev/null; then
  fail "restore-to-time $stop is before the end of the backup (finished at $finished): its data already holds changes made after that time; name an earlier backup, or a later time"
fi
archive="$remote/{BINLOG_ARCHIVE_DIR}"
listing=$(rclone lsf --files-only --include '*.meta' "$archive" 2>&1) ||
  fail "the binary log archive $archive can't be read: $listing"
logs=$(printf '%s\n' "$listing" | sed -n 's/\.meta$//p' | sort)
[ -n "$logs" ] || fail "the binary log archive $archive holds no binary log (is binlog-archive set on the source?)"
mkdir -p "$download/binlogs"
needed='' newest='' newest_closed='' bounded=''
for log in $(printf '%s\n' "$logs" | sort -r); do
  rclone copyto "$archive/$log.meta" "$download/binlogs/$log.meta" ||
    fail "binary log $log: its .meta can't be downloaded"
  closed=$(sed -n 's/^closed //p' "$download/binlogs/$log.meta")
  if [ -z "$newest" ]; then
    newest=$log newest_closed=$closed
  fi
  needed="$log $needed"
  if expr "$closed" \< "$started" > /dev/null; then
    bounded=1
    break
  fi
done
if expr "$newest_closed" \< "$stop" > /dev/null; then
  fail "restore-to-time $stop is after the end of the archived binary logs (the newest, $newest, was closed at $newest_closed): later changes are not archived yet (the primary closes its log at least every binlog-flush-interval) or were lost; name a time up to $newest_closed"
fi
oldest=${{needed%% *}}
if [ -z "$bounded" ]; then
  case $oldest in
    *.000001) ;;
    *) fail "the binary log archive $archive begins at $oldest, closed after the backup started: the logs before it are missing" ;;
  esac
fi
file=$(field binlog_file)
if [ -n "$file" ]; then
  from=''
  for log in $needed; do
    [ "$log" != "$file" ] || from=1
    [ -z "$from" ] || trimmed="${{trimmed:-}} $log"
  done
  [ -n "$from" ] || fail "its binary log position is in $file, which the archive $archive does not hold"
  needed=${{trimmed# }}
elif [ -z "$(field gtid)" ]; then
  fail "its manifest records no binary log position (binlog_file or gtid) to replay from"
fi
previous=''
for log in $needed; do
  # The log's number without its leading zeros (arithmetic would read them as octal).
  number=${{log##*.}}
  number=${{number#"${{number%%[!0]*}}"}}
  number=${{number:-0}}
  if [ -n "$previous" ] && [ "$number" -ne $((previous + 1)) ]; then
    fail "binary log $log follows number $previous in the archive $archive: the logs between are missing"
  fi
  previous=$number
  rclone copyto "$archive/$log" "$download/binlogs/$log" || fail "binary log $log can't be downloaded"
  expected=$(sed -n 's/^sha256 //p' "$download/binlogs/$log.meta")
  actual=$(sha256sum "$download/binlogs/$log" | cut -d ' ' -f 1)
  [ "$expected" = "$actual" ] ||
    fail "binary log $log: checksum mismatch: its .meta says sha256 $expected, the data has $actual: the archive is corrupt"
  echo "$log" >> "$download/binlogs/list"
done
rm -f "$download"/binlogs/*.meta
echo "$stop" > "$download/binlogs/stop"
echo "binary logs $(tr '\n' ' ' < "$download/binlogs/list")downloaded and verified, to replay up to $stop"
"#
    )
}

/// `replay-binlogs`, the init container of a StatefulSet restored to a time (bash, in the mysql
/// image, which has the server and its binlog tool): on the first member, after `clone-mysql`
/// prepared the backup in `.clone`, start a private server on it (socket only, no binary log,
/// replication stopped), pipe the archived logs into it from the backup's position (MariaDB: its
/// GTID; MySQL: its file and position) up to `restore-to-time` (`--stop-datetime`, in UTC),
/// stop it, and only then move the copy into place with `mysql/` last. A failure names the
/// backup and the problem and removes the copy: the datadir is never half restored.
pub fn replay_binlogs(flavor: Flavor, names: Names<'_>) -> String {
    let start = if flavor.is_mariadb() {
        r#"gtid=$(field gtid)
if [[ -n $gtid ]]; then
  start=(--start-position="$gtid")
elif [[ -n $position ]]; then
  start=(--start-position="$position")
fi
"#
    } else {
        r#"if [[ -n $position ]]; then
  start=(--start-position="$position")
fi
"#
    };
    format!(
        r#"set -euo pipefail
{root_password}first={first}
datadir={DATA_DIR}
restore="$datadir/.restore"
staging="$datadir/.clone"
{ORDINAL}if (( ordinal != first )) || [[ -d $datadir/mysql || ! -f $restore/binlogs/list ]]; then
  exit 0
fi
id=$(<"$restore/id")
stop=$(<"$restore/binlogs/stop")
socket=/tmp/replay.sock
server=''
fail() {{
  echo "restore of backup $id to $stop failed: $*" >&2
  if [[ -n $server ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" || true
  fi
  rm -rf "$staging"
  exit 1
}}
[[ -d $staging/mysql ]] ||
  fail "no prepared backup in $staging (an earlier replay failed and removed it): delete the pod to restore again"
{field}position=$(field binlog_position)
start=()
{start}(( ${{#start[@]}} )) || fail "its manifest records no binary log position to replay from"
mapfile -t logs < "$restore/binlogs/list"
chown -R mysql:mysql "$staging"
echo "replaying binary logs ${{logs[*]}} on backup $id (${{start[*]}}) up to $stop"
{server} --user=mysql --datadir="$staging" --socket="$socket" --pid-file=/tmp/replay.pid --skip-networking \
  --skip-log-bin {options} > /tmp/replay-server.log 2>&1 &
server=$!
until {admin} --socket="$socket" -u root ping > /dev/null 2>&1; do
  kill -0 "$server" 2>/dev/null ||
    fail "the server did not start on the prepared backup: $(tail -n 20 /tmp/replay-server.log)"
  sleep 1
done
cd "$restore/binlogs"
# --stop-datetime is read in the tool's time zone: UTC, like the annotation once normalised.
stop_local=${{stop%Z}}
if ! TZ=UTC {tool} "${{start[@]}}" --stop-datetime="${{stop_local/T/ }}" "${{logs[@]}}" |
  {client} --socket="$socket" -u root; then
  fail "replaying the binary logs failed (the error is above)"
fi
cd /
{admin} --socket="$socket" -u root shutdown || fail "the server did not shut down"
wait "$server" || true
server=''
{move}echo "restored backup $id to $stop: replayed ${{#logs[@]}} binary logs"
"#,
        first = names.first_ordinal,
        root_password = root_password(),
        field = manifest_field("$restore/manifest.json"),
        server = flavor.server(),
        options = flavor.replay_server_options(),
        admin = flavor.admin_client(),
        tool = flavor.binlog_tool(),
        client = flavor.client(),
        move = move_into_place(),
    )
}

/// `ship-binlogs`, a container of every member when `binlog-archive` is set (POSIX sh, in the
/// client image, with the data volume read-only): on the primary, every 10 s, uploads each
/// closed binary log (all but the last of the index file) that the archive lacks, under a
/// temporary name, renamed when complete, then its `.meta` (SHA-256, size, and when it was
/// closed: its last write, the rotation) last, so a log without one is incomplete. Idempotent: a
/// log with a `.meta` is not sent again, and one whose archived copy has another size (a new
/// datadir reusing the names) stops the shipper with the reason, never overwritten. On the
/// other members it waits: only the primary writes binary logs here.
pub fn ship_binlogs(names: Names<'_>, target: &Target) -> String {
    format!(
        r#"set -eu
first={first}
archive='{remote}/{BINLOG_ARCHIVE_DIR}'
datadir={DATA_DIR}
trap 'exit 0' TERM INT
# The container runtime sets HOSTNAME (the pod's name) in every container's environment.
# shellcheck disable=SC3028
pod=$HOSTNAME
if [ "${{pod##*-}}" != "$first" ]; then
  echo "$pod is a replica: only the primary ships binary logs"
  while :; do
    sleep 3600 &
    wait $! || true
  done
fi
index="$datadir/$pod-bin.index"
ship() {{
  [ -f "$index" ] || return 0
  archived=$(rclone lsf --files-only --format ps --separator ' ' "$archive") || return 1
  count=$(grep -c . "$index" || true)
  n=0
  while IFS= read -r entry; do
    n=$((n + 1))
    # The last one is the active log.
    [ "$n" -lt "$count" ] || break
    log=${{entry##*/}}
    size=$(stat -c %s "$datadir/$log") || return 1
    if printf '%s\n' "$archived" | grep -q "^$log\.meta "; then
      printf '%s\n' "$archived" | grep -qx "$log $size" && continue
      echo "binary log $log in $archive is not this server's (another size): a new datadir reuses the names; archiving stops: give the StatefulSet a new backup-target prefix" >&2
      exit 1
    fi
    sha256=$(sha256sum "$datadir/$log" | cut -d ' ' -f 1) || return 1
    closed=$(date -u -r "$datadir/$log" +%Y-%m-%dT%H:%M:%SZ) || return 1
    rclone copyto "$datadir/$log" "$archive/$log.partial" || return 1
    rclone moveto "$archive/$log.partial" "$archive/$log" || return 1
    printf 'sha256 %s\nsize %s\nclosed %s\n' "$sha256" "$size" "$closed" | rclone rcat "$archive/$log.meta" ||
      return 1
    echo "shipped $log ($size bytes, sha256 $sha256, closed $closed)"
  done < "$index"
}}
rclone mkdir "$archive"
echo "shipping the closed binary logs of $pod to $archive"
while :; do
  ship || echo "shipping failed; retrying in 10 s" >&2
  sleep 10 &
  wait $! || true
done
"#,
        first = names.first_ordinal,
        remote = remote(target),
    )
}

/// The primary's rotation of its binary log when archiving (bash, in the sidecar, in the
/// background; the binary log is `<pod>-bin`, the name `log-bin` without a value gives): every `interval` seconds, `FLUSH BINARY LOGS` when the active log changed since
/// the last rotation, so a change waits at most that long to be in a closed log the shipper
/// sends, and an idle server makes no empty logs.
fn binlog_rotation(flavor: Flavor, interval: u64) -> String {
    format!(
        r#"if (( ordinal == first )); then
  # Archiving: the loss window is bounded by this rotation (README "Backups and restore").
  (
    index="{DATA_DIR}/$HOSTNAME-bin.index"
    state() {{
      local active
      active=$(tail -n 1 "$index")
      echo "$active $(stat -c %s "{DATA_DIR}/${{active##*/}}")"
    }}
    last=''
    while sleep {interval}; do
      [[ -f $index ]] || continue
      if [[ $(state) != "$last" ]] && {client} -h 127.0.0.1 -u root -e 'FLUSH BINARY LOGS'; then
        sleep 1
        last=$(state) || last=''
      fi
    done
  ) &
fi
"#,
        client = flavor.client(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: Names<'static> = Names { statefulset: "orders-db", service: "orders-hl", first_ordinal: 0 };

    #[test]
    fn clone_reads_coordinates_by_fields_not_with_the_greedy_regex() {
        for flavor in Flavor::ALL {
            let script = clone(flavor, NAMES);
            assert!(script.contains("read -r file pos "), "{flavor}");
            assert!(!script.contains("(.*?)"), "{flavor}");
        }
    }

    #[test]
    fn clone_fails_loudly_and_retries() {
        for flavor in Flavor::ALL {
            let script = clone(flavor, NAMES);
            assert!(script.starts_with("set -euo pipefail"), "{flavor}");
            assert!(script.contains("for ((attempt = 1; attempt <= 30; attempt++)); do"), "{flavor}");
            assert!(script.contains("peer=\"$statefulset-$((ordinal - 1)).$service\""), "{flavor}");
        }
    }

    #[test]
    fn sidecar_uses_the_dialect_of_each_flavor() {
        let mysql84 = sidecar(Flavor::Mysql84, NAMES);
        assert!(mysql84.contains("START REPLICA") && mysql84.contains("SOURCE_HOST="));
        assert!(!mysql84.contains("MASTER_") && !mysql84.contains("START SLAVE"));
        let mysql57 = sidecar(Flavor::Mysql57, NAMES);
        assert!(mysql57.contains("START SLAVE") && mysql57.contains("MASTER_HOST="));
        let mariadb = sidecar(Flavor::Mariadb, NAMES);
        assert!(mariadb.contains("mariadb -h 127.0.0.1"));
        assert!(clone(Flavor::Mariadb, NAMES).contains("MASTER_USE_GTID=slave_pos"));
        assert!(clone(Flavor::Mysql84, NAMES).contains("CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE="));
    }

    #[test]
    fn clones_travel_over_mutual_tls_only() {
        let tls = "cert=/etc/mysql-webhook/tls/tls.crt,key=/etc/mysql-webhook/tls/tls.key,\
                   cafile=/etc/mysql-webhook/tls/ca.crt,verify=1";
        for flavor in Flavor::ALL {
            let (clone, sidecar) = (clone(flavor, NAMES), sidecar(flavor, NAMES));
            assert!(
                sidecar.contains(&format!("\"OPENSSL-LISTEN:$port,reuseaddr,fork,max-children=1,{tls}\""))
            );
            assert!(clone.contains(&format!("socat -u \"OPENSSL:$peer:$port,{tls}\" STDOUT")));
            for plain in ["TCP-LISTEN", "TCP:", "ncat", "verify=0"] {
                assert!(!clone.contains(plain) && !sidecar.contains(plain), "{flavor}: {plain}");
            }
        }
    }

    #[test]
    fn replication_is_encrypted_verified_and_required() {
        for flavor in Flavor::ALL {
            let script = sidecar(flavor, NAMES);
            let prefix = if flavor.dialect() == Dialect::SourceReplica { "SOURCE" } else { "MASTER" };
            for option in ["_SSL=1", "_SSL_CA='/etc/mysql-webhook/tls/ca.crt'", "_SSL_VERIFY_SERVER_CERT=1"] {
                assert!(script.contains(&format!("{prefix}{option}")), "{flavor}: {prefix}{option}");
            }
            assert_eq!(script.matches("IDENTIFIED BY '$password' REQUIRE SSL;").count(), 2, "{flavor}");
            for (_, cnf) in config(flavor, false) {
                assert!(cnf.contains("\nssl-cert=/etc/mysql-webhook/tls/tls.crt\n"), "{flavor}");
            }
        }
        assert!(
            sidecar(Flavor::Mariadb, NAMES).contains("mariadb -h 127.0.0.1 -u root -e 'FLUSH SSL' || true")
        );
        assert!(sidecar(Flavor::Mysql84, NAMES).contains("-e 'ALTER INSTANCE RELOAD TLS' || true"));
        assert!(!sidecar(Flavor::Mysql57, NAMES).contains("RELOAD TLS"), "5.7 can't reload");
    }

    #[test]
    fn sidecar_traps_sigterm_and_never_execs_the_listener() {
        for flavor in Flavor::ALL {
            let script = sidecar(flavor, NAMES);
            assert!(script.contains("trap 'exit 0' TERM INT"), "{flavor}");
            assert!(!script.contains("exec ncat") && !script.contains("exec socat"), "{flavor}");
        }
    }

    #[test]
    fn replication_never_uses_root_or_an_empty_password() {
        for flavor in Flavor::ALL {
            let script = sidecar(flavor, NAMES);
            assert!(!script.contains("_USER='root'"), "{flavor}");
            assert!(!script.contains("_PASSWORD=''"), "{flavor}");
            assert!(script.contains("_USER='replication'"), "{flavor}");
        }
    }

    #[test]
    fn mariadb_replicas_use_read_only_not_super_read_only() {
        assert!(config(Flavor::Mariadb, false)[1].1.contains("\nread-only\n"));
        assert!(!config(Flavor::Mariadb, false)[1].1.contains("super"));
        assert!(config(Flavor::Mysql84, false)[1].1.contains("\nsuper-read-only\n"));
    }

    #[test]
    fn mariadb_replicates_by_gtid_also_from_a_primary_that_logged_nothing_yet() {
        let script = clone(Flavor::Mariadb, NAMES);
        let binlog_branch = &script[script.find("elif [[ ${#binlog_info[@]}").unwrap()..];
        let binlog_branch = &binlog_branch[..binlog_branch.find("\nfi\n").unwrap()];
        assert!(binlog_branch.contains("read -r file pos gtid _") && binlog_branch.contains("by_gtid=1"));
        assert!(script.contains("gtid=${BASH_REMATCH[1]} by_gtid=1"), "a GTID replica's backup");
        assert!(script.contains("if [[ -n $by_gtid ]]; then"), "not only when the GTID is non-empty");
        // A backup of a replica that applied nothing by GTID carries a file and position: GTID
        // all the same, from the position restored with the data.
        assert!(
            script.contains("echo \"CHANGE MASTER TO MASTER_USE_GTID=slave_pos\" > change_master_to.sql.in")
        );
        assert!(!script.contains("MASTER_LOG_FILE='$file'"));
        for flavor in [Flavor::Mysql84, Flavor::Mysql80, Flavor::Mysql57] {
            assert!(!clone(flavor, NAMES).contains("gtid"), "{flavor}");
        }
    }

    #[test]
    fn mysql_replicas_are_crash_safe() {
        let replica = |flavor| config(flavor, false)[1].1.clone();
        for flavor in [Flavor::Mysql84, Flavor::Mysql80, Flavor::Mysql57] {
            assert!(replica(flavor).contains("\nrelay-log-recovery=ON\n"), "{flavor}");
        }
        assert!(replica(Flavor::Mysql57).contains("\nrelay-log-info-repository=TABLE\n"));
        assert!(replica(Flavor::Mysql57).contains("\nmaster-info-repository=TABLE\n"));
        // Removed in 8.4 (mysqld would refuse to start), the default since 8.0.2.
        assert!(
            !replica(Flavor::Mysql84).contains("repository")
                && !replica(Flavor::Mysql80).contains("repository")
        );
        assert!(!config(Flavor::Mysql84, false)[0].1.contains("relay-log"), "replicas only");
    }

    #[test]
    fn mariadb_root_is_bound_by_read_only_from_outside_the_pod() {
        let mariadb = sidecar(Flavor::Mariadb, NAMES);
        let revoke = mariadb.find("REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%'").expect("revoked");
        let local = mariadb.find("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION");
        // In place before the first clone is served, so every replica's clone carries both.
        assert!(local.expect("granted") < revoke && revoke < mariadb.find("serving clones").unwrap());
        assert!(
            mariadb.contains("IDENTIFIED BY '$root_password'")
                && mariadb.contains("root_password=$(< /etc/mysql-webhook/credentials/root-password)")
        );
        // MySQL's super_read_only stops root already.
        for flavor in [Flavor::Mysql84, Flavor::Mysql80, Flavor::Mysql57] {
            assert!(!sidecar(flavor, NAMES).contains("READ_ONLY ADMIN"), "{flavor}");
        }
    }

    /// Runs `script` with bash in a scratch root where `/proc/net/tcp*` are `tables`: the probe
    /// reads fixed paths, so the test rewrites them to files of its own.
    fn run_listening_probe(tcp: &str, tcp6: &str) -> bool {
        let dir = std::env::temp_dir().join(format!("listening-{}-{}", std::process::id(), tcp.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tcp"), tcp).unwrap();
        std::fs::write(dir.join("tcp6"), tcp6).unwrap();
        let script = clone_port_listening().replace("/proc/net/", &format!("{}/", dir.display()));
        let status = std::process::Command::new("bash").args(["-c", &script]).output().unwrap().status;
        std::fs::remove_dir_all(&dir).unwrap();
        status.success()
    }

    #[test]
    fn sidecar_readiness_finds_a_listener_on_3307_with_bash_builtins_only() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let listening = format!(
            "{header}   0: 00000000:0CEB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1\n"
        );
        let connected = format!(
            "{header}   0: 0A00000B:0CEB 0A00000C:9C40 01 00000000:00000000 00:00000000 00000000   999        0 1\n"
        );
        let other = format!(
            "{header}   0: 00000000:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1\n"
        );
        assert!(run_listening_probe(&listening, header));
        assert!(run_listening_probe(
            header,
            &listening.replace("00000000:0CEB", "00000000000000000000000000000000:0CEB")
        ));
        assert!(!run_listening_probe(&connected, header), "an established connection is not a listener");
        assert!(!run_listening_probe(&other, header), "another port");
        for tool in ["grep", "awk", "sed", "ss", "netstat"] {
            assert!(!clone_port_listening().contains(tool), "{tool}");
        }
    }

    #[test]
    fn readiness_of_a_replica_requires_both_threads_and_the_lag() {
        for flavor in Flavor::ALL {
            let status = flavor.replica_status();
            let probe = mysql_ready(flavor, 0, Some(30));
            assert!(probe.contains(&format!("-e '{}\\G'", status.statement)), "{flavor}");
            assert!(probe.contains(&format!("{}:\\ Yes", status.io_running)), "{flavor}");
            assert!(probe.contains(&format!("{}:\\ Yes", status.sql_running)), "{flavor}");
            assert!(probe.contains(&format!("{}:\\ ([0-9]+)", status.seconds_behind)), "{flavor}");
            assert!(probe.contains("(( BASH_REMATCH[1] > 30 ))"), "{flavor}");
            assert!(
                !mysql_ready(flavor, 0, None).contains("Seconds_Behind"),
                "{flavor}: no lag without max-lag"
            );
            assert!(probe.contains("SELECT @@global.read_only"), "{flavor}: the primary accepts writes");
            assert!(probe.starts_with("MYSQL_PWD=$(< /etc/mysql-webhook/credentials/root-password)\n"));
        }
        assert!(mysql_ready(Flavor::Mysql84, 0, None).contains("SHOW REPLICA STATUS\\G"));
        assert!(mysql_ready(Flavor::Mysql80, 0, None).contains("Replica_SQL_Running"));
        assert!(mysql_ready(Flavor::Mysql57, 0, None).contains("SHOW SLAVE STATUS\\G"));
        assert!(mysql_ready(Flavor::Mariadb, 3, None).contains("first=3"));
    }

    #[test]
    fn passwords_are_read_from_the_mounted_files_never_from_the_environment() {
        for flavor in Flavor::ALL {
            for script in [
                sidecar(flavor, NAMES),
                mysql_ready(flavor, 0, None),
                mysql_alive(flavor),
                take_backup(flavor, NAMES, 3),
            ] {
                assert!(
                    script.contains(
                        "MYSQL_PWD=$(< /etc/mysql-webhook/credentials/root-password)\nexport MYSQL_PWD\n"
                    ),
                    "{flavor}"
                );
                assert!(
                    !script.contains("REPLICATION_PASSWORD") && !script.contains("${MYSQL_PWD"),
                    "{flavor}"
                );
            }
            assert!(
                sidecar(flavor, NAMES)
                    .contains("password=$(< /etc/mysql-webhook/credentials/replication-password)")
            );
        }
    }

    #[test]
    fn the_sidecar_says_why_it_is_still_waiting_for_mysqld() {
        for flavor in Flavor::ALL {
            let script = sidecar(flavor, NAMES);
            let client = flavor.client();
            assert!(script.contains(&format!("if ! command -v {client} > /dev/null; then")), "{flavor}");
            for reason in
                ["access denied for root", "mysqld is not accepting connections", "the client failed: "]
            {
                assert!(script.contains(reason), "{flavor}: {reason}");
            }
            assert!(!script.contains("SELECT 1' >/dev/null 2>&1"), "{flavor}: errors are not swallowed");
        }
    }

    /// The wait loop, run for real against a stand-in client that fails as told.
    #[test]
    fn the_wait_loop_logs_each_reason_once_and_stops_when_mysqld_answers() {
        let dir = std::env::temp_dir().join(format!("wait-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        // Fails with the next line of `answers`, succeeds when they run out.
        let client = format!(
            "#!/bin/bash\nn=$(< {0}/count); echo $((n + 1)) > {0}/count\nline=$(sed -n \"$((n + 1))p\" {0}/answers)\n[[ -z $line ]] && exit 0\necho \"$line\" >&2\nexit 1\n",
            dir.display()
        );
        std::fs::write(dir.join("bin/mariadb"), client).unwrap();
        std::fs::write(dir.join("count"), "0").unwrap();
        std::fs::write(
            dir.join("answers"),
            "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)\n\
             ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)\n\
             ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .args(["+x", &format!("{}/bin/mariadb", dir.display())])
            .status()
            .unwrap();
        let script = wait_for_mysqld(Flavor::Mariadb)
            .replace("sleep 1", "true")
            .replace("/etc/mysql-webhook/credentials/root-password", &format!("{}/count", dir.display()));
        let output = std::process::Command::new("bash")
            .args(["-c", &format!("set -euo pipefail\n{script}")])
            .env("PATH", format!("{}/bin:/usr/bin:/bin", dir.display()))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let log = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{log}{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            [
                "waiting for mysqld to accept connections",
                "still waiting: mysqld is not accepting connections on 127.0.0.1:3306 yet",
                "still waiting: access denied for root: the password in /etc/mysql-webhook/credentials/root-password is not the server's"
                    .replace("/etc/mysql-webhook/credentials/root-password", &format!("{}/count", dir.display()))
                    .as_str(),
                "mysqld accepts connections",
            ]
        );
    }

    #[test]
    fn the_exporter_account_has_monitoring_privileges_only_and_no_password_in_the_binlog() {
        for flavor in Flavor::ALL {
            let script = sidecar(flavor, NAMES);
            assert!(script.contains("WITH MAX_USER_CONNECTIONS 3;"), "{flavor}");
            assert!(
                script.contains("GRANT SELECT ON performance_schema.* TO 'exporter'@'127.0.0.1';"),
                "{flavor}"
            );
            assert!(
                !script.contains("ON *.* TO 'exporter'@'127.0.0.1' WITH")
                    && !script.contains("SELECT ON *.*")
            );
            let account = &script[script.find("exporter_password=").unwrap()..];
            assert!(!account.contains("sql_log_bin"), "{flavor}: replicated to replicas made before it");
        }
        let mariadb = sidecar(Flavor::Mariadb, NAMES);
        assert!(mariadb.contains("SELECT PASSWORD('$exporter_password');"));
        assert!(mariadb.contains("IDENTIFIED BY PASSWORD '$exporter_hash'"));
        assert!(!mariadb.contains("IDENTIFIED BY '$exporter_password'"), "MariaDB would log it in clear");
        assert!(mariadb.contains("GRANT PROCESS, REPLICATION CLIENT, REPLICA MONITOR ON *.*"));
        assert!(sidecar(Flavor::Mysql84, NAMES).contains("GRANT PROCESS, REPLICATION CLIENT ON *.*"));
    }

    #[test]
    fn require_tls_turns_on_require_secure_transport_in_both_configurations() {
        for flavor in Flavor::ALL {
            for (_, cnf) in config(flavor, true) {
                assert!(cnf.contains("\nrequire-secure-transport=ON\n"), "{flavor}");
            }
            for (_, cnf) in config(flavor, false) {
                assert!(!cnf.contains("secure-transport"), "{flavor}");
            }
        }
    }

    #[test]
    fn the_exporter_writes_its_configuration_and_refuses_a_password_it_cant_carry() {
        let script = exporter("/bin/mysqld_exporter", &["--tls.insecure-skip-verify".into()]);
        assert!(script.contains("umask 077"));
        assert!(script.ends_with("exec /bin/mysqld_exporter --config.my-cnf=/etc/mysql-webhook/exporter/my.cnf --tls.insecure-skip-verify\n"));
        let run = |password: &str| {
            let dir =
                std::env::temp_dir().join(format!("exporter-{}-{}", std::process::id(), password.len()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("exporter-password"), password).unwrap();
            let script = script
                .replace("/etc/mysql-webhook/credentials", &dir.display().to_string())
                .replace("/etc/mysql-webhook/exporter", &dir.display().to_string())
                .replace("exec /bin/mysqld_exporter", "echo");
            let output = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
            let config = std::fs::read_to_string(dir.join("my.cnf")).unwrap_or_default();
            std::fs::remove_dir_all(&dir).unwrap();
            (output.status.success(), config, String::from_utf8_lossy(&output.stderr).into_owned())
        };
        let (ok, config, _) = run("Abc123xyz");
        assert!(ok);
        assert_eq!(
            config,
            "[client]\nuser=exporter\npassword=Abc123xyz\nssl-ca=/etc/mysql-webhook/tls/ca.crt\n"
        );
        for bad in ["has$dollar", "has#hash", "", "quote'"] {
            let (ok, config, error) = run(bad);
            assert!(!ok && config.is_empty(), "{bad:?}");
            assert!(error.contains("exporter-password in the credentials Secret"), "{error}");
        }
    }

    #[test]
    fn clone_counts_attempts_with_bash_arithmetic_not_seq() {
        assert!(!clone(Flavor::Mariadb, NAMES).contains("seq "));
    }

    #[test]
    fn first_ordinal_is_the_primary() {
        let names = Names { first_ordinal: 5, ..NAMES };
        assert!(init(names).contains("first=5"));
        assert!(sidecar(Flavor::Mysql84, names).contains("first=5"));
    }
}
