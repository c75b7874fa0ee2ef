#!/usr/bin/env bash
# Builds the offline release bundle: target/dist/hookrelay-<version>-linux-<arch>.tar.gz with the
# release binary, hooks.d, examples, schemas, templates, deploy/ and an install README
# (packaging/INSTALL.md). Prints the archive's path. `scripts/package.sh --smoke ARCHIVE`
# unpacks one in a temp dir and runs it from there only: `check` on its hooks.d, then `serve`,
# /readyz and one hook accepted.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --smoke ]; then
  archive=$(realpath "$2")
  tmp=$(mktemp -d)
  trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  tar -C "$tmp" -xzf "$archive"
  cd "$tmp"/hookrelay-*
  bin/hookrelay check hooks.d >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  HOOKRELAY_LISTEN=127.0.0.1:$port HOOKRELAY_DATA_DIR=$tmp/data HOOKRELAY_HOOKS_DIR=hooks.d \
    bin/hookrelay serve >"$tmp/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$tmp/log"; exit 1; }
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Hook-Token: $(cat hooks.d/secrets/demo-token)" \
    -H 'Content-Type: application/json' -d '{"type":"smoke.test","id":"1"}' "http://127.0.0.1:$port/hooks/demo")
  [ "$status" = 202 ] || { echo "the unpacked relay answered $status to a hook" >&2; cat "$tmp/log"; exit 1; }
  kill -TERM "$pid"
  wait "$pid"
  echo "bundle smoke test passed: $archive"
  exit 0
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name=hookrelay-$version-linux-$(uname -m)
dist=target/dist
cargo build --release --locked
rm -rf "${dist:?}/$name"
mkdir -p "$dist/$name/bin"
cp target/release/hookrelay "$dist/$name/bin/"
# The release profile keeps debug info for profiling; the bundle does not need it.
if command -v strip >/dev/null 2>&1; then strip --strip-debug "$dist/$name/bin/hookrelay"; fi
cp -r hooks.d examples schemas templates deploy "$dist/$name/"
cp packaging/INSTALL.md "$dist/$name/README.md"
# Reproducible order and owners; no build paths inside.
tar -C "$dist" --sort=name --owner=0 --group=0 --numeric-owner -czf "$dist/$name.tar.gz" "$name"
echo "$dist/$name.tar.gz"
