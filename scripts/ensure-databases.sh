#!/usr/bin/env bash
# Make sure the machine's PostgreSQL and MariaDB answer (they are normally started already).
set -uo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! mariadb-admin --no-defaults -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null \
        && mariadb-admin --no-defaults -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1 \
        && exit 0
    sleep 1
done
echo "PostgreSQL or MariaDB is not reachable on 127.0.0.1" >&2
exit 1
