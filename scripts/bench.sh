#!/usr/bin/env bash
# Compares one peercache node with redis-server using redis-benchmark,
# with the same settings against both, in one run:
#   50 clients, 64-byte values, random keys over 100,000, GET and SET at
#   pipeline 1 and 16.
# Both servers run on 127.0.0.1 and are stopped by PID at the end.
#
#   scripts/bench.sh            default request counts
#   REQUESTS=100000 scripts/bench.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build-release}
requests=${REQUESTS:-200000}
clients=50
size=64
keyspace=100000
pc_port=${PC_PORT:-7451}
redis_port=${REDIS_PORT:-7452}
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v redis-benchmark >/dev/null || ! command -v meson >/dev/null; then
  "$root/scripts/install-deps.sh"
fi
if [ ! -f "$build_dir/build.ninja" ]; then
  meson setup "$build_dir" "$root" --buildtype=release -Dtests=false >/dev/null
fi
meson compile -C "$build_dir" node/peercached >/dev/null

wait_ready() {
  for _ in $(seq 1 50); do
    redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "bench.sh: server on port $1 did not start" >&2
  exit 1
}

"$build_dir/node/peercached" --node-id bench --bind 127.0.0.1 --advertise 127.0.0.1 \
  --port "$pc_port" --peer-port $((pc_port + 100)) --log-level warning \
  >"$work/peercache.log" 2>&1 &
pids+=($!)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$work/redis.log" &
pids+=($!)
wait_ready "$pc_port"
wait_ready "$redis_port"

# Prints the requests per second of one test.
run() {
  local port=$1 test=$2 pipeline=$3 count=$4
  redis-benchmark -p "$port" -t "$test" -n "$count" -c "$clients" -d "$size" \
    -r "$keyspace" -P "$pipeline" --csv 2>/dev/null |
    awk -F'","' 'NR==2 { print $2 }'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "peercache: $("$build_dir/node/peercached" --version), 1 node, $(nproc) I/O threads"
echo "redis: $(redis-server --version | awk '{print $3}')"
echo "settings: -c $clients -d $size -r $keyspace, requests per test: $requests (x5 at pipeline 16)"
printf '%-8s %-9s %14s %14s %7s\n' test pipeline "peercache rps" "redis rps" ratio
for pipeline in 1 16; do
  count=$requests
  [ "$pipeline" -gt 1 ] && count=$((requests * 5))
  for test in set get; do
    pc=$(run "$pc_port" "$test" "$pipeline" "$count")
    rd=$(run "$redis_port" "$test" "$pipeline" "$count")
    ratio=$(awk -v a="$pc" -v b="$rd" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '%-8s %-9s %14s %14s %7s\n' "${test^^}" "$pipeline" "$pc" "$rd" "$ratio"
  done
done
