#!/usr/bin/env bash
# Stand-in for the mariadb image's docker-entrypoint.sh, run against Debian's MariaDB. It honours
# what the image documents and the expansion relies on: MARIADB_ROOT_PASSWORD (or
# MYSQL_ROOT_PASSWORD), or the file named by MARIADB_ROOT_PASSWORD_FILE (or
# MYSQL_ROOT_PASSWORD_FILE; a variable and its _FILE together are refused, as the image's file_env
# does), is required to initialise an empty datadir, root@'%' and root@localhost get
# that password (the root@127.0.0.1, ::1 and @hostname accounts install-db makes are dropped, as
# the image does), /docker-entrypoint-initdb.d is processed, the datadir is chowned to mysql when
# started as root, and the server runs as mysql. The *_ALLOW_EMPTY_* and *_RANDOM_* variables are
# refused (the expansion refuses them too), so a test can't pass on a root without the Secret's password.
set -euo pipefail
if [[ ${1:-} != mariadbd && ${1:-} != mysqld ]]; then
  exec "$@"
fi
for variable in MARIADB_ALLOW_EMPTY_ROOT_PASSWORD MARIADB_RANDOM_ROOT_PASSWORD MYSQL_ALLOW_EMPTY_PASSWORD \
  MYSQL_RANDOM_ROOT_PASSWORD; do
  if [[ -n ${!variable:-} ]]; then
    echo "entrypoint: $variable is not supported by this stand-in" >&2
    exit 1
  fi
done
for variable in MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD; do
  file=${variable}_FILE
  if [[ -n ${!variable:-} && -n ${!file:-} ]]; then
    echo "entrypoint: both $variable and $file are set (but are exclusive)" >&2
    exit 1
  fi
  if [[ -n ${!file:-} ]]; then
    export "$variable=$(< "${!file}")"
  fi
done
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
password=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
find "$datadir" \! -user mysql -exec chown mysql:mysql '{}' +

if [[ ! -d $datadir/mysql ]]; then
  if [[ -z $password ]]; then
    echo "entrypoint: database is uninitialized and MARIADB_ROOT_PASSWORD is not set" >&2
    exit 1
  fi
  echo "entrypoint: initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >/dev/null
  "$@" --user=mysql --skip-networking --socket="$socket" &
  temporary=$!
  for _ in $(seq 60); do
    mariadb-admin --socket="$socket" -u root ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  quoted=${password//\\/\\\\}
  quoted=${quoted//\'/\\\'}
  mariadb --socket="$socket" -u root <<SQL
SET @@SESSION.SQL_LOG_BIN=0;
DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname, '\'');
CREATE USER 'root'@'%' IDENTIFIED BY '$quoted';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$quoted';
FLUSH PRIVILEGES;
SQL
  for file in /docker-entrypoint-initdb.d/*; do
    [[ -e $file ]] || continue
    case $file in
      *.sh)
        # shellcheck source=/dev/null
        . "$file"
        ;;
      *.sql) MYSQL_PWD=$password mariadb --socket="$socket" -u root < "$file" ;;
    esac
  done
  MYSQL_PWD=$password mariadb-admin --socket="$socket" -u root shutdown
  wait "$temporary" || true
  echo "entrypoint: initialised"
fi
exec "$@" --user=mysql
