#!/usr/bin/env bash
# Runs a local peercache cluster on 127.0.0.1.
#
#   scripts/cluster.sh up [N]   build if needed, start N nodes (default 3)
#   scripts/cluster.sh status   members and per-node key counts
#   scripts/cluster.sh restart I  stop node I and start it again (same id)
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
  if ! command -v meson >/dev/null || ! command -v redis-cli >/dev/null ||
     ! pkg-config --exists libzmq msgpack libsodium liburcu-cds criterion 2>/dev/null; then
    "$root/scripts/install-deps.sh"
  fi
  if [ ! -f "$build_dir/build.ninja" ]; then
    meson setup "$build_dir" "$root" --buildtype=release >/dev/null
  fi
  meson compile -C "$build_dir" node/peercached >/dev/null
}

# Waits until the process with this PID replies on its port. The check
# compares the process id that INFO reports, so that another node on the
# same port cannot pass for it.
wait_for_node() {
  local port=$1 pid=$2
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    if redis-cli -p "$port" INFO server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Starts node i in the background and records its PID.
start_node() {
  local i=$1
  local args=(--node-id "node$i" --bind 127.0.0.1 --advertise 127.0.0.1
              --port "$(client_port "$i")" --peer-port "$(peer_port "$i")")
  if [ "$i" -gt 1 ]; then
    args+=(--seeds "127.0.0.1:$(peer_port 1)")
  fi
  "$binary" "${args[@]}" >>"$state_dir/node$i.log" 2>&1 &
  echo $! >"$state_dir/node$i.pid"
  if ! wait_for_node "$(client_port "$i")" "$(cat "$state_dir/node$i.pid")"; then
    echo "cluster.sh: node$i did not start; its log:" >&2
    tail -n 20 "$state_dir/node$i.log" >&2
    return 1
  fi
}

# Sends SIGTERM to a PID and waits up to 5 s, then SIGKILL.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "cluster.sh: pid $pid did not stop within 5 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
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
  for i in $(seq 1 "$count"); do
    : >"$state_dir/node$i.log"
    if ! start_node "$i"; then
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
  local stopped=0
  for pidfile in "$state_dir"/node*.pid; do
    [ -e "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      stop_pid "$pid"
      stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
  done
  echo "Stopped $stopped nodes."
}

restart() {
  local i=$1
  if ! [[ $i =~ ^[0-9]+$ ]] || [ ! -e "$state_dir/node$i.pid" ]; then
    echo "cluster.sh: no node$i in $state_dir; see 'scripts/cluster.sh status'" >&2
    exit 2
  fi
  stop_pid "$(cat "$state_dir/node$i.pid")"
  start_node "$i" || exit 1
  echo "Restarted node$i (pid $(cat "$state_dir/node$i.pid")); it rejoins and receives its keys."
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  status) status ;;
  down) down ;;
  restart) restart "${2:-}" ;;
  *)
    echo "usage: scripts/cluster.sh up [N] | status | restart I | down" >&2
    exit 2
    ;;
esac
