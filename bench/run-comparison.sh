#!/usr/bin/env bash
# Side-by-side on this machine: Rampart (durable QoS 1, encrypted at rest, SQLite) against
# Mosquitto (Debian package, `persistence true`), both over TLS with password auth, the same
# load from the same client (`rampart bench`). Prints every raw JSON line and the ratios, and
# writes them to $WORK/results.txt.
#
#   bench/run-comparison.sh
#
# Settings (environment): DEVICES=100 PAYLOAD=256 DURATION=30 IDLE=10000 (idle connections for
# the memory test, 0 to skip) ROUNDS=1 (the four throughput runs, repeated; with more than one
# the median ratio is printed too: on a shared 2-core VM one run moves by ±15 %)
# BENCH_RAMPART=target/release/rampart WORK=$(mktemp -d);
# MOSQUITTO_ONLY=1 measures only the Mosquitto side (the yardstick alone).
# Build first: cargo build --release -p rampart
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${DEVICES:-100} payload=${PAYLOAD:-256} duration=${DURATION:-30} idle=${IDLE:-10000}
rounds=${ROUNDS:-1}
export BENCH_RAMPART=${BENCH_RAMPART:-$PWD/target/release/rampart}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
results=$work/results.txt
: >"$results"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
accounts=$((devices > idle ? devices : idle))

say() { echo "$*" | tee -a "$results" >&2; }
cleanup() {
  bench/mosquitto.sh stop "$work/mosquitto" || true
  [ -n "${rampart_pid:-}" ] && kill "$rampart_pid" 2>/dev/null || true
}
trap cleanup EXIT

say "# $(date -u +%FT%TZ) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -sr)"
say "# $("$BENCH_RAMPART" --version); $(/usr/sbin/mosquitto -h 2>&1 | head -n 1); devices=$devices payload=$payload duration=${duration}s idle=$idle"

# Mosquitto: TLS, password file, persistence true.
eval "$(bench/mosquitto.sh start "$work/mosquitto" "$accounts" | sed 's/^/MOSQ_/')"
head -n $((devices + 1)) "$MOSQ_CREDS" >"$work/mosquitto-load.csv"

only_mosquitto=${MOSQUITTO_ONLY:-0}
with_rampart() { [ "$only_mosquitto" != 1 ]; }

# Rampart: a fresh data dir, a tenant `bench`, devices with tokens.
if with_rampart; then
admin_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')-Aa1
RAMPART_ADMIN_PASSWORD=$admin_password "$BENCH_RAMPART" serve --data-dir "$work/rampart" \
  --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$work/rampart.log" 2>&1 &
rampart_pid=$!
for _ in $(seq 1 600); do
  [ -f "$work/rampart/endpoints.json" ] && jq -e .mqtt "$work/rampart/endpoints.json" >/dev/null 2>&1 && break
  kill -0 "$rampart_pid" 2>/dev/null || { cat "$work/rampart.log" >&2; exit 1; }
  sleep 0.1
done
jq -e .mqtt "$work/rampart/endpoints.json" >/dev/null || { echo "rampart has no MQTT listener" >&2; exit 1; }
http=$(jq -r .http "$work/rampart/endpoints.json")
RAMPART_MQTT=$(jq -r .mqtt "$work/rampart/endpoints.json")
RAMPART_CA=$work/rampart/tls/ca.pem
api() { curl -sS --fail-with-body --cacert "$RAMPART_CA" -H 'content-type: application/json' "$@"; }
login() { api -X POST "https://$http/api/v1/auth/login" -d "{\"tenant\":\"$1\",\"username\":\"admin\",\"password\":\"$admin_password\"}" | jq -r .access_token; }
platform_token=$(login platform)
api -X POST "https://$http/api/v1/tenants" -H "authorization: Bearer $platform_token" \
  -d "{\"id\":\"bench\",\"name\":\"bench\",\"admin\":{\"username\":\"admin\",\"password\":\"$admin_password\"}}" >/dev/null
RAMPART_TOKEN=$(login bench) "$BENCH_RAMPART" bench provision --url "https://$http" --ca "$RAMPART_CA" \
  --devices "$accounts" --out "$work/rampart-creds.csv" --parallel 32 >&2
head -n $((devices + 1)) "$work/rampart-creds.csv" >"$work/rampart-load.csv"
fi

run() { # NAME ADDRESS CA CREDS ARGS...
  local name=$1 address=$2 ca=$3 creds=$4
  shift 4
  say "\$ rampart bench run --mqtt $address --ca $(basename "$ca") --credentials $(basename "$creds") $*"
  # Start every run with no dirty pages left over from the one before (the runs write GBs;
  # the kernel's writeback of them would otherwise compete with the next run's fsyncs).
  sync
  local line
  line=$("$BENCH_RAMPART" bench run --mqtt "$address" --ca "$ca" --credentials "$creds" "$@" 2>"$work/$name.progress")
  say "$name $line"
  echo "$line"
}
common=(--qos 1 --payload "$payload" --duration "$duration")
half() { awk -v r="$(echo "$1" | jq .msgs_per_s)" 'BEGIN {printf "%.0f", r / 2}'; }
ratios=()
for round in $(seq 1 "$rounds"); do
  [ "$rounds" -gt 1 ] && say "# round $round of $rounds"
  mosq_peak=$(run mosquitto-qos1-flat "$MOSQ_MQTT" "$MOSQ_CA" "$work/mosquitto-load.csv" "${common[@]}")
  mosq_half=$(run mosquitto-qos1-half "$MOSQ_MQTT" "$MOSQ_CA" "$work/mosquitto-load.csv" "${common[@]}" --rate "$(half "$mosq_peak")")
  if with_rampart; then
    ramp_peak=$(run rampart-qos1-flat "$RAMPART_MQTT" "$RAMPART_CA" "$work/rampart-load.csv" "${common[@]}")
    ramp_half=$(run rampart-qos1-half "$RAMPART_MQTT" "$RAMPART_CA" "$work/rampart-load.csv" "${common[@]}" --rate "$(half "$ramp_peak")")
    ratio=$(jq -n --argjson a "$ramp_peak" --argjson b "$mosq_peak" 'if $b.msgs_per_s > 0 then ($a.msgs_per_s / $b.msgs_per_s * 100 | round / 100) else 0 end')
    ratios+=("$ratio")
    say "ratio qos1 msgs/s rampart/mosquitto = $ratio"
    say "p99 publish->ack at half peak: rampart $(echo "$ramp_half" | jq .ack_p99_ms) ms, mosquitto $(echo "$mosq_half" | jq .ack_p99_ms) ms"
  fi
done
if with_rampart && [ "$rounds" -gt 1 ]; then
  say "median ratio over $rounds rounds = $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}') (rounds: ${ratios[*]})"
fi

if [ "$idle" -gt 0 ]; then
  head -n $((idle + 1)) "$MOSQ_CREDS" >"$work/mosquitto-idle.csv"
  say "\$ bench/idle-rss.sh <pid> ... ($idle idle TLS connections)"
  say "mosquitto-idle $(bench/idle-rss.sh "$MOSQ_PID" "$MOSQ_MQTT" "$MOSQ_CA" "$work/mosquitto-idle.csv")"
  if with_rampart; then
    head -n $((idle + 1)) "$work/rampart-creds.csv" >"$work/rampart-idle.csv"
    say "rampart-idle $(bench/idle-rss.sh "$rampart_pid" "$RAMPART_MQTT" "$RAMPART_CA" "$work/rampart-idle.csv")"
  fi
fi
say "# results in $results"
