#!/usr/bin/env bash
# Paired runs of Rampart builds or settings against each other (not against Mosquitto): each
# configuration in turn gets a fresh data dir, a tenant `bench` with DEVICES devices, and the
# same QoS 1 load: flat out, then each paced RATE. Rounds alternate the configurations, so a
# drift of the machine hits all of them alike. One JSON-ish line per configuration and round.
#
#   bench/paired.sh ROUNDS NAME=BINARY[:ENV=VALUE,...] ...
#   e.g. bench/paired.sh 3 before=/tmp/rampart-old after=target/release/rampart \
#          one-worker=target/release/rampart:TOKIO_WORKER_THREADS=1
#
# Settings (environment): DEVICES=100 PAYLOAD=256 DURATION=15 RATES="30000 16000"
# WORK=$(mktemp -d). Each line ends with the size of the SQLite WAL file after the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1
shift
devices=${DEVICES:-100} payload=${PAYLOAD:-256} duration=${DURATION:-15} rates=${RATES:-30000 16000}
work=${WORK:-$(mktemp -d)}
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')-Aa1
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true' EXIT

run_config() { # NAME BINARY ENV
  local name=$1 binary=$2 settings=$3 dir=$work/$1
  rm -rf "$dir" && mkdir -p "$dir"
  local -a env_args=()
  [ -n "$settings" ] && IFS=, read -r -a env_args <<<"$settings"
  env "${env_args[@]}" RAMPART_ADMIN_PASSWORD="$password" "$binary" serve --data-dir "$dir/rampart" \
    --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$dir/rampart.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    jq -e .mqtt "$dir/rampart/endpoints.json" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$dir/rampart.log" >&2; exit 1; }
    sleep 0.1
  done
  local http mqtt ca=$dir/rampart/tls/ca.pem
  http=$(jq -r .http "$dir/rampart/endpoints.json")
  mqtt=$(jq -r .mqtt "$dir/rampart/endpoints.json")
  api() { curl -sS --fail-with-body --cacert "$ca" -H 'content-type: application/json' "$@"; }
  login() { api -X POST "https://$http/api/v1/auth/login" -d "{\"tenant\":\"$1\",\"username\":\"admin\",\"password\":\"$password\"}" | jq -r .access_token; }
  api -X POST "https://$http/api/v1/tenants" -H "authorization: Bearer $(login platform)" \
    -d "{\"id\":\"bench\",\"name\":\"bench\",\"admin\":{\"username\":\"admin\",\"password\":\"$password\"}}" >/dev/null
  RAMPART_TOKEN=$(login bench) "$binary" bench provision --url "https://$http" --ca "$ca" --devices "$devices" \
    --out "$dir/creds.csv" --parallel 32 >/dev/null 2>&1
  local line="$name"
  for rate in 0 $rates; do
    local -a pace=()
    [ "$rate" != 0 ] && pace=(--rate "$rate")
    sync
    local result
    result=$("$binary" bench run --mqtt "$mqtt" --ca "$ca" --credentials "$dir/creds.csv" --qos 1 \
      --payload "$payload" --duration "$duration" "${pace[@]}" 2>/dev/null |
      jq -c '{msgs_per_s, ack_p50_ms, ack_p99_ms, errors}')
    line="$line ${rate/#0/flat} $result"
  done
  echo "$line wal_bytes=$(stat -c %s "$dir/rampart/rampart.db-wal" 2>/dev/null || echo 0)"
  kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
  server_pid=
  rm -rf "$dir"
}

for round in $(seq 1 "$rounds"); do
  for config in "$@"; do
    name=${config%%=*} rest=${config#*=}
    binary=${rest%%:*} settings=
    [ "$rest" != "$binary" ] && settings=${rest#*:}
    echo "round $round $(run_config "$name" "$binary" "$settings")"
  done
done
