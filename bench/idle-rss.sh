#!/usr/bin/env bash
# Memory per idle TLS connection of a running broker: reads the broker's VmRSS, opens one idle
# MQTT connection per credentials row with `rampart bench connect`, waits until every
# connection is attempted, lets the broker settle, reads VmRSS again, and prints one JSON line
# {"broker_pid","connected","failed","rss_before_kib","rss_held_kib","kib_per_connection","mib_per_10k"}.
#
#   bench/idle-rss.sh BROKER_PID HOST:PORT CA.pem CREDS.csv [SETTLE_SECONDS]
#
# BENCH_RAMPART names the rampart binary (default target/release/rampart).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
pid=$1 mqtt=$2 ca=$3 creds=$4 settle=${5:-5}
rampart=${BENCH_RAMPART:-target/release/rampart}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
before=$(rss "$pid")
log=$(mktemp)
hold=$((settle + 5))
"$rampart" bench connect --mqtt "$mqtt" --ca "$ca" --credentials "$creds" --hold "$hold" >"$log.out" 2>"$log" &
bench_pid=$!
until grep -q '^holding ' "$log"; do
  kill -0 "$bench_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.5
done
sleep "$settle"
held=$(rss "$pid")
wait "$bench_pid"
summary=$(tail -n 1 "$log.out")
rm -f "$log" "$log.out"
connected=$(echo "$summary" | jq .connected)
failed=$(echo "$summary" | jq .failed)
awk -v pid="$pid" -v c="$connected" -v f="$failed" -v b="$before" -v h="$held" 'BEGIN {
  per = (c > 0) ? (h - b) / c : 0
  printf "{\"broker_pid\":%d,\"connected\":%d,\"failed\":%d,\"rss_before_kib\":%d,\"rss_held_kib\":%d,\"kib_per_connection\":%.2f,\"mib_per_10k\":%.1f}\n", pid, c, f, b, h, per, per * 10000 / 1024
}'
