#!/usr/bin/env bash
# Runs a local peercache cluster on 127.0.0.1.
#
#   scripts/cluster.sh up [N]   build if needed, start N nodes (default 3)
#   scripts/cluster.sh status   members and per-node key counts
#   scripts/cluster.sh down     stop the nodes this script started
#
# Node i listens for clients on BASE_PORT+i (7401, 7402, ...), its ROUTER
# on BASE_PORT+100+2i and its PUB on the port after that. Node 1 is the
# seed. Logs and PID files go to .cluster/ in the repository.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state_dir=${PEERCACHE_CLUSTER_DIR:-$root/.cluster}
base_port=${BASE_PORT:-7400}
build_dir=${BUILD_DIR:-$root/build}
binary=$build_dir/node/peercached

client_port() { echo $((base_port + $1)); }
peer_port() { echo $((base_port + 100 + 2 * $1)); }

build() {
  if ! command -v meson >/dev/null || ! pkg-config --exists libzmq msgpack libsodium liburcu-cds 2>/dev/null; then
    "$root/scripts/install-deps.sh"
  fi
  if [ ! -f "$build_dir/build.ninja" ]; then
    meson setup "$build_dir" "$root" --buildtype=release >/dev/null
  fi
  meson compile -C "$build_dir" node/peercached >/dev/null
}

# Waits until the node started with this PID answers on its port as
# itself, so that another process on the same port cannot pass for it.
wait_for_node() {
  local port=$1 pid=$2 id=$3
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [ "$(redis-cli -p "$port" CLUSTER MYID 2>/dev/null)" = "$id" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

up() {
  local count=${1:-3}
  if ! [[ $count =~ ^[0-9]+$ ]] || [ "$count" -lt 1 ] || [ "$count" -gt 20 ]; then
    echo "cluster.sh: node count must be an integer from 1 to 20, got '$count'" >&2
    exit 2
  fi
  if ls "$state_dir"/node*.pid >/dev/null 2>&1; then
    echo "cluster.sh: a cluster is already running from $state_dir; run 'scripts/cluster.sh down' first" >&2
    exit 1
  fi

  build
  mkdir -p "$state_dir"
  local seed="127.0.0.1:$(peer_port 1)"
  for i in $(seq 1 "$count"); do
    local args=(--node-id "node$i" --bind 127.0.0.1 --advertise 127.0.0.1
                --port "$(client_port "$i")" --peer-port "$(peer_port "$i")")
    if [ "$i" -gt 1 ]; then
      args+=(--seeds "$seed")
    fi
    "$binary" "${args[@]}" >"$state_dir/node$i.log" 2>&1 &
    echo $! >"$state_dir/node$i.pid"
    if ! wait_for_node "$(client_port "$i")" "$(cat "$state_dir/node$i.pid")" "node$i"; then
      echo "cluster.sh: node$i did not start; its log:" >&2
      tail -n 20 "$state_dir/node$i.log" >&2
      down
      exit 1
    fi
  done

  # Joining nodes turn up once their keys have arrived.
  for _ in $(seq 1 100); do
    if [ "$(redis-cli -p "$(client_port 1)" CLUSTER NODES | grep -c ' up')" -eq "$count" ]; then
      break
    fi
    sleep 0.1
  done

  echo "Started $count nodes. Logs: $state_dir/node<i>.log"
  for i in $(seq 1 "$count"); do
    echo "  node$i: redis-cli -p $(client_port "$i")"
  done
  echo "Try: redis-cli -p $(client_port 1) SET greeting hello && redis-cli -p $(client_port "$count") GET greeting"
  echo "Stop: scripts/cluster.sh down"
}

status() {
  local any=0
  for pidfile in "$state_dir"/node*.pid; do
    [ -e "$pidfile" ] || continue
    local name i pid
    name=$(basename "$pidfile" .pid)
    i=${name#node}
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      if [ "$any" -eq 0 ]; then
        echo "Members (as node$i sees them):"
        redis-cli -p "$(client_port "$i")" CLUSTER NODES | sed 's/^/  /'
        echo "Keys per node:"
        any=1
      fi
      echo "  $name port=$(client_port "$i") pid=$pid keys=$(redis-cli -p "$(client_port "$i")" DBSIZE)"
    else
      echo "  $name pid=$pid is not running (see $state_dir/$name.log)"
    fi
  done
  if [ "$any" -eq 0 ]; then
    echo "No running cluster found in $state_dir"
  fi
}

down() {
  local pids=()
  for pidfile in "$state_dir"/node*.pid; do
    [ -e "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      pids+=("$pid")
    fi
    rm -f "$pidfile"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: pid $pid did not stop within 5 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  echo "Stopped ${#pids[@]} nodes."
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  status) status ;;
  down) down ;;
  *)
    echo "usage: scripts/cluster.sh up [N] | status | down" >&2
    exit 2
    ;;
esac
