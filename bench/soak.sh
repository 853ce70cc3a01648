#!/usr/bin/env bash
# The device-management soak (issue 10): `rampart simulate` drives DEVICES devices over real
# MQTT/TLS against a fresh server while a firmware campaign (canary + 3 waves) rolls out with
# FAIL_RATE injected failures and a failure threshold that pauses it; the script resumes it
# each time (a person accepting the failures) until it completes. Then a download phase:
# DOWNLOADERS devices update to an image of IMAGE_MB at once. Prints and writes to
# $WORK/results.txt: the simulator's JSON lines (operation receipt p50/p99 at this scale,
# firmware MB/s), the campaign's pauses, and the server's peak and final RSS.
#
#   cargo build --release -p rampart && bench/soak.sh
#
# Settings (environment): DEVICES=1000 FAIL_RATE=0.05 THRESHOLD=3 WAVES=10,50,100 CANARY=10
# DOWNLOADERS=100 IMAGE_MB=4 BENCH_RAMPART=target/release/rampart WORK=$(mktemp -d)
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${DEVICES:-1000} fail_rate=${FAIL_RATE:-0.05} threshold=${THRESHOLD:-3}
waves=${WAVES:-10,50,100} canary=${CANARY:-10} downloaders=${DOWNLOADERS:-100} image_mb=${IMAGE_MB:-4}
rampart=${BENCH_RAMPART:-$PWD/target/release/rampart}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
results=$work/results.txt
: >"$results"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say() { echo "$*" | tee -a "$results" >&2; }
cleanup() {
  [ -n "${sampler_pid:-}" ] && kill "$sampler_pid" 2>/dev/null || true
  [ -n "${sim_pid:-}" ] && kill "$sim_pid" 2>/dev/null || true
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

say "# $(date -u +%FT%TZ) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $($rampart --version)"
say "# devices=$devices fail_rate=$fail_rate threshold=${threshold}% canary=$canary waves=[$waves] downloaders=$downloaders image=${image_mb}MiB"

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')-Aa1
RAMPART_ADMIN_PASSWORD=$password "$rampart" serve --data-dir "$work/rampart" \
  --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  [ -f "$work/rampart/endpoints.json" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
http=$(jq -r .http "$work/rampart/endpoints.json")
mqtt=$(jq -r .mqtt "$work/rampart/endpoints.json")
ca=$work/rampart/tls/ca.pem
api() { curl -sS --fail-with-body --cacert "$ca" -H 'content-type: application/json' "$@"; }
login() { api -X POST "https://$http/api/v1/auth/login" -d "{\"tenant\":\"$1\",\"username\":\"admin\",\"password\":\"$password\"}" | jq -r .access_token; }
platform=$(login platform)
api -X POST "https://$http/api/v1/tenants" -H "authorization: Bearer $platform" \
  -d "{\"id\":\"soak\",\"name\":\"soak\",\"admin\":{\"username\":\"admin\",\"password\":\"$password\"}}" >/dev/null
token=$(login soak)
auth=(-H "authorization: Bearer $token")

# The server's resident memory, every second.
(while kill -0 "$server_pid" 2>/dev/null; do
   awk '/VmRSS/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || true
   sleep 1
 done) >"$work/rss.txt" &
sampler_pid=$!

upload() { # VERSION COUNTER MB
  head -c $(($3 * 1048576)) /dev/urandom >"$work/fw-$1.bin"
  curl -sS --fail-with-body --cacert "$ca" "${auth[@]}" "https://$http/api/v1/firmware" \
    -F "metadata={\"name\":\"soak-fw\",\"version\":\"$1\",\"hardware\":\"sim\",\"security_counter\":$2}" \
    -F "image=@$work/fw-$1.bin" | jq -r .id
}
upload 1.0.0 1 1 >/dev/null     # what the simulated devices start on (trusted)
fw_campaign=$(upload 1.1.0 2 1)

"$rampart" simulate --url "https://$http" --mqtt "$mqtt" --ca "$ca" --token "$token" \
  --devices "$devices" --fail-rate "$fail_rate" --telemetry-interval 10 --execute-ms 100 \
  --duration 100000 >"$work/simulate.json" 2>"$work/simulate.log" &
sim_pid=$!
for _ in $(seq 1 600); do
  grep -q "connected $devices/$devices" "$work/simulate.log" 2>/dev/null && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$work/simulate.log" >&2; exit 1; }
  sleep 1
done
say "# $(tail -n 1 "$work/simulate.log")"

ids=$(seq -f "sim-%05g" 1 "$devices" | jq -R . | jq -sc .)
started=$(date +%s.%N)
campaign=$(api "${auth[@]}" "https://$http/api/v1/campaigns" -d "{\"firmware_id\":\"$fw_campaign\",
  \"target\":{\"devices\":$ids},\"strategy\":{\"canary\":$canary,\"waves\":[$waves],\"failure_threshold_pct\":$threshold}}" | jq -r .id)
pauses=0
while :; do
  sleep 1
  state=$(api "${auth[@]}" "https://$http/api/v1/campaigns/$campaign")
  status=$(jq -r .status <<<"$state")
  if [ "$status" = paused ]; then
    pauses=$((pauses + 1))
    say "paused after $(echo "$(date +%s.%N) - $started" | bc | cut -c1-6) s: $(jq -c '{wave,waves,dispatched,reason,counts}' <<<"$state")"
    api "${auth[@]}" -X POST "https://$http/api/v1/campaigns/$campaign/resume" >/dev/null
  elif [ "$status" = completed ]; then
    say "completed after $(echo "$(date +%s.%N) - $started" | bc | cut -c1-6) s, $pauses pauses: $(jq -c .counts <<<"$state")"
    break
  fi
done
kill -INT "$sim_pid"; wait "$sim_pid" || true
say "simulate (campaign phase): $(tail -n 1 "$work/simulate.json")"

# Download phase: DOWNLOADERS devices fetch an IMAGE_MB image at once.
fw_big=$(upload 2.0.0 3 "$image_mb")
"$rampart" simulate --url "https://$http" --mqtt "$mqtt" --ca "$ca" --token "$token" \
  --devices "$downloaders" --prefix dl- --fail-rate 0 --telemetry-interval 60 --execute-ms 0 \
  --duration 100000 >"$work/download.json" 2>"$work/download.log" &
sim_pid=$!
for _ in $(seq 1 300); do
  grep -q "connected $downloaders/$downloaders" "$work/download.log" 2>/dev/null && break
  sleep 1
done
dl_ids=$(seq -f "dl-%05g" 1 "$downloaders" | jq -R . | jq -sc .)
campaign=$(api "${auth[@]}" "https://$http/api/v1/campaigns" -d "{\"firmware_id\":\"$fw_big\",
  \"target\":{\"devices\":$dl_ids},\"strategy\":{\"canary\":0,\"waves\":[100],\"failure_threshold_pct\":100}}" | jq -r .id)
for _ in $(seq 1 600); do
  [ "$(api "${auth[@]}" "https://$http/api/v1/campaigns/$campaign" | jq -r .status)" = completed ] && break
  sleep 1
done
kill -INT "$sim_pid"; wait "$sim_pid" || true
say "simulate (download phase, $downloaders at once, ${image_mb} MiB): $(tail -n 1 "$work/download.json")"
say "server RSS: peak $(sort -n "$work/rss.txt" | tail -n 1) KiB, last $(tail -n 1 "$work/rss.txt") KiB"
