#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and benchmarks: initdb in a temp dir,
# loopback only, trust auth, a `hookrelay` database, TLS offered (see below). Prints the URL to use as
# HOOKRELAY_TEST_POSTGRES_URL on stdout; `scripts/pg-cluster.sh stop DIR` stops it.
# Installs Debian's postgresql package when no server binaries are found (needs root).
set -euo pipefail

find_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

if [ "${1:-}" = stop ]; then
  bin=$(find_bin)
  as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/pg_ctl" -D "$2/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$2"
  exit 0
fi

bin=$(find_bin || true)
if [ -z "$bin" ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get install -y -qq postgresql >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq postgresql >/dev/null 2>&1; }; } || true
  bin=$(find_bin || true)
fi
[ -n "$bin" ] || { echo "no PostgreSQL server binaries (initdb) found" >&2; exit 1; }

dir=${1:-$(mktemp -d /tmp/hookrelay-pg.XXXXXX)}
mkdir -p "$dir"
# The server refuses to run as root: as root, the cluster belongs to the postgres user.
as=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  as=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
# TLS on, with a CA of its own (`$dir/ca.crt`, for postgres.ca_file) that signs the server's
# certificate for 127.0.0.1; the URL printed is plain (sslmode=disable), the TLS tests ask for it.
ssl=()
if command -v openssl >/dev/null 2>&1; then
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=hookrelay-test-ca \
      -keyout ca.key -out ca.crt >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.crt >/dev/null 2>&1
    cp server.crt server.key data/
    chmod 600 data/server.key
    if [ "$(id -u)" = 0 ]; then chown postgres data/server.crt data/server.key; fi
  ) && ssl=(-c ssl=on)
fi
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=on -c synchronous_commit=on ${ssl[*]}" \
  start >/dev/null
"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt -c "CREATE DATABASE hookrelay" >/dev/null
echo "$dir" > "$dir/dir"
echo "postgres://postgres@127.0.0.1:$port/hookrelay?sslmode=disable"
