#!/usr/bin/env bash
# What the test suite needs beyond Bun, provided when possible: redis-server (Redis pool
# tests), iproute2 (`ip`, multi-host tests in network namespaces) and chromium (dashboard
# tests), installed with apt-get when running as root. Used by `bun run test`
# (scripts/test.ts) and by .ci/run, so a fresh machine and CI get the same set.
#
# It never fails its caller: a tool it could not provide leaves its tests reported as
# skipped with the reason (test/helpers/needs.ts), or failed under CI=true, where nothing may
# be skipped. AS_TEST_NO_INSTALL=1 only reports what is missing.
set -u

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "${AS_TEST_NO_INSTALL:-}" = 1 ]; then
  echo "test setup: ${need[*]} missing; not installing (AS_TEST_NO_INSTALL=1): their tests will be skipped"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test setup: ${need[*]} missing; install them (e.g. apt-get install ${need[*]}) or their tests will be skipped"
  exit 0
fi

echo "test setup: installing ${need[*]} with apt-get"
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# Short network timeouts: offline, this gives up in seconds and the tests are skipped instead.
apt_opts=(-o Acquire::Retries=0 -o Acquire::http::Timeout=15 -o Acquire::https::Timeout=15)
if apt-get "${apt_opts[@]}" update -qq >"$log" 2>&1 &&
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${need[@]}" >>"$log" 2>&1; then
  rm -f "$log"
else
  echo "test setup: apt-get could not install ${need[*]} (offline?); their tests will be skipped. apt-get said: $(tail -n 1 "$log")"
  rm -f "$log"
fi
exit 0
