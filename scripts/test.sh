#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs every
# test: the Criterion unit and system tests in a normal build and in an
# AddressSanitizer + UndefinedBehaviorSanitizer build, then the Docker
# Compose test when a Docker engine replies. The last line is the summary
# of the whole run: "N passed, N failed, N skipped".
#
#   scripts/test.sh             everything
#   SANITIZE=0 scripts/test.sh  skip the sanitizer build
#   DOCKER=0 scripts/test.sh    skip the Docker Compose test
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
logs=${TEST_LOG_DIR:-$root/build-test-logs}
mkdir -p "$logs"

passed=0
failed=0
skipped=0

"$root/scripts/install-deps.sh" || { echo "0 passed, 1 failed"; exit 1; }

# Configures and builds one build directory; counts a failed build.
build() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" --werror "$@" >"$logs/$(basename "$dir")-setup.log" 2>&1 || return 1
  fi
  meson compile -C "$dir" >"$logs/$(basename "$dir")-compile.log" 2>&1
}

# Runs one Criterion executable and adds its Synthesis line to the totals.
run_criterion() {
  local label=$1 exe=$2
  local log="$logs/$label-$(basename "$exe").log"
  echo "== $label $(basename "$exe")"
  "$exe" --jobs 1 >"$log" 2>&1
  local status=$?
  local line
  line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "   no Criterion summary (exit $status); log: $log"
    tail -n 30 "$log"
    failed=$((failed + 1))
    return
  fi
  local tested passing
  tested=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$line")
  passing=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
  passed=$((passed + passing))
  failed=$((failed + tested - passing))
  echo "   $line"
  if [ "$passing" -ne "$tested" ] || [ "$status" -ne 0 ]; then
    grep -a -E '\[(FAIL|----)\]|CRASH|ERROR: AddressSanitizer|runtime error' "$log" | head -n 40
    if [ "$passing" -eq "$tested" ]; then
      failed=$((failed + 1))  # the runner failed after its tests passed
    fi
  fi
}

run_suite() {
  local label=$1 dir=$2
  for exe in "$dir"/tests/test_*; do
    [ -x "$exe" ] && [ -f "$exe" ] || continue
    run_criterion "$label" "$exe"
  done
}

if build "$root/build-ci" --buildtype=debugoptimized; then
  run_suite plain "$root/build-ci"
else
  echo "build failed; see $logs/build-ci-compile.log"
  tail -n 40 "$logs/build-ci-compile.log" "$logs/build-ci-setup.log" 2>/dev/null
  failed=$((failed + 1))
fi

if [ "${SANITIZE:-1}" != 0 ]; then
  # Tests that feed huge lengths expect allocation failures to return NULL.
  export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  if build "$root/build-ci-asan" --buildtype=debug -Db_sanitize=address,undefined; then
    run_suite sanitize "$root/build-ci-asan"
  else
    echo "sanitizer build failed; see $logs/build-ci-asan-compile.log"
    failed=$((failed + 1))
  fi
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if [ "${DOCKER:-1}" != 0 ]; then
  echo "== docker compose"
  bash "$root/tests/system/test_compose.sh" >"$logs/compose.log" 2>&1
  status=$?
  # The test's own "N passed, N failed" line would read like the summary
  # of the whole run, so it is left out here.
  grep -v -E '^[0-9]+ passed, [0-9]+ failed' "$logs/compose.log" | tail -n 5 | sed 's/^/   /'
  echo "   compose test exit status $status; log: $logs/compose.log"
  case $status in
    0) passed=$((passed + 1)) ;;
    77) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)); tail -n 60 "$logs/compose.log" ;;
  esac
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
