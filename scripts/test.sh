#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need when it is
# missing, starts what must run, then runs the checks and every test.
# A test that needs a missing component fails; nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- components -------------------------------------------------------------
# command -> Debian package that provides it
declare -A NEED=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [amtool]=prometheus-alertmanager
  [prometheus-alertmanager]=prometheus-alertmanager
  [dockerd]=docker.io
  [docker]=docker.io
  [unshare]=util-linux
  [docker-compose]=docker-compose
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || missing+=(busybox-static)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
# reqwest and lettre use the platform TLS library (OpenSSL on Linux).
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" file >/dev/null
fi

# --- services ---------------------------------------------------------------
# The container tests need a running Docker Engine and the test image. No registry
# is reachable, so the image is built FROM scratch around Debian's static busybox.
start_dockerd() {
  nohup dockerd "$@" >/tmp/m4watch-dockerd.log 2>&1 &
  for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 $! 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  if [ "$(id -u)" -ne 0 ]; then
    echo "no Docker Engine runs and starting one needs root" >&2
    exit 1
  fi
  # overlay2 needs a filesystem that supports it; vfs works everywhere, slowly.
  start_dockerd || { log "dockerd failed with its default storage driver; trying vfs"; start_dockerd --storage-driver=vfs; } || {
    echo "dockerd did not start:" >&2
    tail -20 /tmp/m4watch-dockerd.log >&2
    exit 1
  }
fi
if ! docker image inspect m4watch-test-busybox >/dev/null 2>&1; then
  log "building the test image m4watch-test-busybox"
  ctx=$(mktemp -d)
  cp /bin/busybox "$ctx/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$ctx/Dockerfile"
  docker build -q -t m4watch-test-busybox "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# --- checks -----------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log "stack config: promtool, amtool, docker-compose"
promtool check config prometheus/prometheus.yml
amtool check-config prometheus/alertmanager.yml
docker-compose -f docker-compose.yml config -q

# --- tests ------------------------------------------------------------------
log "cargo test"
cargo test --locked --all-targets

# --- rules: promtool is the oracle (issue 4) ---------------------------------
log "promtool check rules / promtool test rules / m4watch test-rules"
promtool check rules alert-rules/*.rules.yml
promtool test rules alert-rules/tests/*.test.yml testdata/rules/parity/*.test.yml
cargo run --locked -q -- test-rules alert-rules/tests/*.test.yml testdata/rules/parity/*.test.yml
for f in testdata/rules/must-fail/*.test.yml; do
  if promtool test rules "$f" >/dev/null 2>&1; then echo "promtool passed must-fail $f" >&2; exit 1; fi
  if cargo run --locked -q -- test-rules "$f" >/dev/null; then echo "m4watch passed must-fail $f" >&2; exit 1; fi
done
