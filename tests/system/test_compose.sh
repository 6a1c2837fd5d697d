#!/usr/bin/env bash
# System test of deploy/docker-compose.yml. It builds the images (first the
# base images from Debian's packages, when they are missing) and starts the
# three-node cluster under a project name of its own. It writes 1,000 keys
# through node1 and reads them through node3, restarts node2 and reads every
# key through it, then adds node4 from deploy/docker-compose.node4.yml and
# reads every key through node4 and node1. At the end it removes the
# containers, network and volumes and checks that none are left.
#
# Needs redis-cli on the host, and root when the base images must be built.
# Exit status: 0 and "1 passed, 0 failed" on success; 1 and
# "0 passed, 1 failed" on failure; 77 and "SKIP: <reason>" when no Docker
# engine or Compose tool is available. The nodes publish their client ports
# on 127.0.0.1:7001-7004, which must be free.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 1

project="pctest$$"
base_file=deploy/docker-compose.yml
node4_file=deploy/docker-compose.node4.yml
keys=1000
health_timeout_s=120
converge_timeout_s=90

compose_cmd=()
work_dir=""
started=0
built=0
result=fail

say() {
  echo "test_compose: $*"
}

skip() {
  result=skip
  echo "SKIP: $*"
  exit 77
}

fail() {
  echo "FAIL: $*"
  exit 1
}

# Runs the Compose tool on both files under this test's project name.
compose() {
  "${compose_cmd[@]}" -p "$project" -f "$base_file" -f "$node4_file" "$@"
}

container_of() {
  compose ps -q "$1" 2>/dev/null
}

# Checks that this run left no container, network or volume of its project.
check_leftovers() {
  local filter="label=com.docker.compose.project=$project" left=""
  left+="$(docker ps -aq --filter "$filter")"
  left+="$(docker network ls -q --filter "$filter")"
  left+="$(docker volume ls -q --filter "$filter")"
  if [ -n "$left" ]; then
    echo "FAIL: project $project left containers, networks or volumes behind:"
    docker ps -a --filter "$filter"
    docker network ls --filter "$filter"
    docker volume ls --filter "$filter"
    return 1
  fi
  say "project $project left no containers, networks or volumes"
}

finish() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$result" = skip ]; then
    exit 77
  fi
  [ "$status" -eq 0 ] && result=pass

  if [ "$started" -eq 1 ]; then
    if [ "$result" != pass ]; then
      say "last log lines of every node:"
      compose logs --no-color --tail 40 2>&1
    fi
    say "tearing down project $project"
    compose down -v --remove-orphans 2>&1 | sed 's/^/  /'
    check_leftovers || result=fail
  fi
  if [ "$built" -eq 1 ]; then
    # Each build leaves its build stage, and the image that peercache:latest
    # replaced, untagged: about 0.7 GB per change of the sources.
    docker image prune -f --filter label=org.peercache.stage >/dev/null 2>&1 ||
      say "could not delete untagged peercache images"
  fi
  [ -n "$work_dir" ] && rm -rf "$work_dir"

  if [ "$result" = pass ]; then
    echo "1 passed, 0 failed"
    exit 0
  fi
  echo "0 passed, 1 failed"
  exit 1
}

find_tools() {
  command -v docker >/dev/null 2>&1 || skip "docker is not installed"
  docker info >/dev/null 2>&1 || skip "'docker info' failed, so no Docker engine is reachable"
  if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
  else
    skip "neither the 'docker compose' plugin nor docker-compose is installed"
  fi
  command -v redis-cli >/dev/null 2>&1 ||
    fail "redis-cli not found; install it with scripts/install-deps.sh"
  say "using ${compose_cmd[*]}, project $project"
}

check_ports_free() {
  local port
  for port in 7001 7002 7003 7004; do
    if command -v ss >/dev/null 2>&1; then
      if [ -n "$(ss -Hltn "sport = :$port")" ]; then
        fail "host port $port is in use (the test publishes node1-node4 on 127.0.0.1:7001-7004); stop what listens on it"
      fi
    elif timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      fail "host port 127.0.0.1:$port is in use (the test publishes node1-node4 on 7001-7004); stop what listens on it"
    fi
  done
}

build_images() {
  local start=$SECONDS
  "$root/scripts/docker-base-images.sh" || fail "scripts/docker-base-images.sh failed"
  local base_s=$((SECONDS - start))

  start=$SECONDS
  built=1
  if ! "${compose_cmd[@]}" -f "$base_file" build >"$work_dir/build.log" 2>&1; then
    tail -n 60 "$work_dir/build.log"
    fail "building the peercache image failed"
  fi
  local size
  size="$(docker image inspect -f '{{.Size}}' peercache:latest | awk '{printf "%.1f MB", $1 / 1e6}')"
  say "base images ${base_s} s, compose build $((SECONDS - start)) s, peercache:latest is $size"
}

# Waits until Docker reports every named service healthy.
wait_healthy() {
  local deadline=$((SECONDS + health_timeout_s)) service id state pending
  while :; do
    pending=""
    for service in "$@"; do
      id="$(container_of "$service")"
      state=""
      [ -n "$id" ] && state="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null)"
      [ "$state" = healthy ] || pending+=" $service(${state:-no container})"
    done
    [ -z "$pending" ] && { say "healthy: $*"; return 0; }
    [ "$SECONDS" -ge "$deadline" ] && fail "not healthy after ${health_timeout_s} s:$pending"
    sleep 2
  done
}

# Waits until every listed client port reports the given number of members
# up in INFO cluster, so that all nodes share one ring before keys are read.
wait_members() {
  local want=$1
  shift
  local deadline=$((SECONDS + converge_timeout_s)) port up pending
  while :; do
    pending=""
    for port in "$@"; do
      up="$(timeout 5 redis-cli -p "$port" INFO cluster 2>/dev/null |
        tr -d '\r' | sed -n 's/^cluster_members_up://p')"
      [ "$up" = "$want" ] || pending+=" $port(${up:-no answer})"
    done
    [ -z "$pending" ] && { say "$want members up on ports $*"; return 0; }
    [ "$SECONDS" -ge "$deadline" ] &&
      fail "ports without $want members up after ${converge_timeout_s} s:$pending"
    sleep 2
  done
}

write_keys() {
  awk -v n="$keys" 'BEGIN {
    for (i = 0; i < n; i++) {
      k = "key:" i; v = "value-" i
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
    }
  }' >"$work_dir/set.resp"
  awk -v n="$keys" 'BEGIN { for (i = 0; i < n; i++) print "GET key:" i }' >"$work_dir/get.txt"
  awk -v n="$keys" 'BEGIN { for (i = 0; i < n; i++) print "value-" i }' >"$work_dir/expected.txt"

  timeout 60 redis-cli -p 7001 --pipe <"$work_dir/set.resp" >"$work_dir/pipe.out" 2>&1
  local status=$?
  if [ "$status" -ne 0 ] || ! grep -q "errors: 0, replies: $keys" "$work_dir/pipe.out"; then
    cat "$work_dir/pipe.out"
    fail "writing $keys keys through node1 (port 7001) failed"
  fi
  say "wrote $keys keys through port 7001"
}

# Reads every key through one client port, retrying until all values match
# or the convergence timeout passes (a joining node may still receive
# keys from the others).
read_keys() {
  local port=$1 deadline=$((SECONDS + converge_timeout_s)) wrong
  while :; do
    timeout 60 redis-cli -p "$port" <"$work_dir/get.txt" >"$work_dir/got.$port" 2>&1
    if cmp -s "$work_dir/got.$port" "$work_dir/expected.txt"; then
      say "all $keys keys read back through port $port"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      wrong="$(diff "$work_dir/expected.txt" "$work_dir/got.$port" | grep -c '^>')"
      diff "$work_dir/expected.txt" "$work_dir/got.$port" | head -n 10
      fail "$wrong of $keys replies through port $port are wrong after ${converge_timeout_s} s"
    fi
    sleep 2
  done
}

main() {
  trap finish EXIT
  trap 'exit 130' INT TERM
  find_tools
  check_ports_free
  work_dir="$(mktemp -d)"
  build_images

  say "starting node1-node3"
  started=1
  "${compose_cmd[@]}" -p "$project" -f "$base_file" up -d || fail "compose up failed"
  wait_healthy node1 node2 node3
  wait_members 3 7001 7002 7003
  write_keys
  read_keys 7003

  say "restarting node2"
  compose stop node2 || fail "compose stop node2 failed"
  compose start node2 || fail "compose start node2 failed"
  wait_healthy node2
  wait_members 3 7001 7002 7003
  local node_id
  node_id="$(timeout 5 redis-cli -p 7002 CLUSTER MYID)"
  [ "$node_id" = node2 ] || fail "node2 came back with node id '$node_id'"
  read_keys 7002

  say "adding node4"
  compose up -d node4 || fail "compose up node4 failed"
  wait_healthy node4
  wait_members 4 7001 7002 7003 7004
  read_keys 7004
  read_keys 7001
}

main "$@"
