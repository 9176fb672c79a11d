#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus` package) for tests and local use: checks the shipped
# configuration and alert rules with promtool, and runs a throw-away Prometheus on loopback that
# scrapes one driftwatch instance and evaluates the shipped rules. No Docker, no systemd.
#
#   scripts/prometheus.sh ensure        install prometheus + promtool (apt) if missing; quiet
#   scripts/prometheus.sh check         promtool check config, check rules and test rules on the
#                                       shipped files (config/prometheus/); non-zero on any failure
#   scripts/prometheus.sh start TARGET  start a Prometheus on 127.0.0.1 (a free port) scraping
#                                       TARGET (host:port, job "driftwatch") and evaluating the
#                                       shipped rules, both every second; wait until /-/ready and
#                                       the first scrape of TARGET is recorded (~5-8 s: Prometheus
#                                       throttles target discovery); print
#                                       "http://127.0.0.1:PORT" as the only line on stdout.
#                                       If one is already running for the same TARGET, just print
#                                       its URL; one for another target is stopped first.
#   scripts/prometheus.sh url           print the running instance's URL (exit 1 if none)
#   scripts/prometheus.sh status        exit 0 if running and ready, 1 otherwise
#   scripts/prometheus.sh stop          stop it (SIGTERM, up to 30 s, then SIGKILL) and delete its
#                                       data; the generated config and the log stay for reading
#
# Progress and errors go to stderr; stdout carries only the URL (start, url).
# Environment (all optional):
#   DRIFTWATCH_PROMETHEUS_RUN            run folder (default <repo>/target/prometheus-run); give
#                                        each concurrent user its own to run several instances
#   DRIFTWATCH_PROMETHEUS_PORT           web port (default: a free port)
#   DRIFTWATCH_PROMETHEUS_INTERVAL       scrape and rule evaluation interval (default 1s)
#   DRIFTWATCH_PROMETHEUS_RULES          rule file to evaluate (default the shipped
#                                        config/prometheus/rules/driftwatch.rules.yml)
#   DRIFTWATCH_PROMETHEUS_START_TIMEOUT  seconds to wait for /-/ready (default 30)
#   DRIFTWATCH_PROMETHEUS_BIN, DRIFTWATCH_PROMTOOL_BIN   binaries (default: on PATH)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
CONFIG_DIR="$REPO_ROOT/config/prometheus"
SHIPPED_CONFIG="$CONFIG_DIR/prometheus.yml"
SHIPPED_RULES="$CONFIG_DIR/rules/driftwatch.rules.yml"
RULE_TESTS_DIR="$CONFIG_DIR/tests"

RUN="${DRIFTWATCH_PROMETHEUS_RUN:-$REPO_ROOT/target/prometheus-run}"
INTERVAL="${DRIFTWATCH_PROMETHEUS_INTERVAL:-1s}"
RULES="${DRIFTWATCH_PROMETHEUS_RULES:-$SHIPPED_RULES}"
START_TIMEOUT="${DRIFTWATCH_PROMETHEUS_START_TIMEOUT:-30}"
PROMETHEUS="${DRIFTWATCH_PROMETHEUS_BIN:-prometheus}"
PROMTOOL="${DRIFTWATCH_PROMTOOL_BIN:-promtool}"
HOST=127.0.0.1

PID_FILE="$RUN/prometheus.pid"
URL_FILE="$RUN/url"
TARGET_FILE="$RUN/target"
RUN_CONFIG="$RUN/prometheus.yml"
DATA_DIR="$RUN/data"
LOG_FILE="$RUN/prometheus.log"

log() { printf 'prometheus.sh: %s\n' "$*" >&2; }
die() { printf 'prometheus.sh: error: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ─── ensure ──────────────────────────────────────────────────────────────────────────────────

# Runs a command as root: directly when we are root, through non-interactive sudo otherwise.
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif have sudo && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "installing prometheus needs root (or password-less sudo); install the Debian package 'prometheus' yourself"
  fi
}

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 prometheus
}

# Stops (and disables) a prometheus service the package may have started anyway, because a
# policy-rc.d we did not write allowed it: ours must be the only Prometheus we run, and the
# packaged one would hold port 9090 and scrape nothing useful.
stop_packaged_service() {
  if [[ -d /run/systemd/system ]] && have systemctl; then
    if systemctl is-active --quiet prometheus.service 2>/dev/null; then
      log "stopping and disabling the prometheus.service the package started"
      as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
  elif [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    log "stopping the prometheus init.d service the package started"
    as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
}

cmd_ensure() {
  if have "$PROMETHEUS" && have "$PROMTOOL"; then
    return 0
  fi
  have apt-get || die "prometheus/promtool not found and apt-get is not available; install Prometheus 2.x yourself"
  log "installing Debian's prometheus package (apt-get, --no-install-recommends)"
  # Debian's maintainer scripts start the service on install (invoke-rc.d /
  # deb-systemd-invoke). A policy-rc.d that exits 101 forbids that; we write one only if the
  # machine has none (a container image usually has one already), and remove it afterwards.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "$policy" ]]; then
    as_root sh -c "printf '#!/bin/sh\n# written by driftwatch scripts/prometheus.sh during apt-get install\nexit 101\n' > $policy && chmod 755 $policy"
    created_policy=1
    # shellcheck disable=SC2064  # expand now: the trap must remove exactly this file
    trap "as_root rm -f '$policy'" EXIT
  fi
  local out status=0
  out="$(apt_install 2>&1)" || status=$?
  if [[ $status -ne 0 ]]; then
    # Stale or missing package lists on a fresh machine: refresh once, then retry.
    log "apt-get install failed; running apt-get update and retrying"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 \
      || log "apt-get update reported errors; retrying the install anyway"
    status=0
    out="$(apt_install 2>&1)" || status=$?
  fi
  if [[ $created_policy -eq 1 ]]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
  if [[ $status -ne 0 ]]; then
    printf '%s\n' "$out" | tail -n 20 >&2
    die "apt-get install prometheus failed"
  fi
  stop_packaged_service
  if ! have "$PROMETHEUS" || ! have "$PROMTOOL"; then
    die "the prometheus package is installed but '$PROMETHEUS'/'$PROMTOOL' are not on PATH"
  fi
  log "installed $("$PROMETHEUS" --version 2>&1 | head -n1)"
}

# ─── check ───────────────────────────────────────────────────────────────────────────────────

cmd_check() {
  have "$PROMTOOL" || die "'$PROMTOOL' not found (run: scripts/prometheus.sh ensure)"
  local failed=0 tests=()
  log "promtool check config $SHIPPED_CONFIG"
  "$PROMTOOL" check config "$SHIPPED_CONFIG" >&2 || failed=1
  log "promtool check rules $SHIPPED_RULES"
  "$PROMTOOL" check rules "$SHIPPED_RULES" >&2 || failed=1
  shopt -s nullglob
  tests=("$RULE_TESTS_DIR"/*.test.yml)
  shopt -u nullglob
  if [[ ${#tests[@]} -eq 0 ]]; then
    log "no rule unit tests in $RULE_TESTS_DIR"
    failed=1
  else
    log "promtool test rules ${tests[*]}"
    # promtool resolves a test file's rule_files relative to the test file.
    "$PROMTOOL" test rules "${tests[@]}" >&2 || failed=1
  fi
  if [[ $failed -ne 0 ]]; then
    die "check failed"
  fi
  log "check passed"
}

# ─── start / stop ────────────────────────────────────────────────────────────────────────────

# The pid of our running Prometheus, if the pid file names a live process started with our
# config (a recycled pid belongs to someone else and must never be signalled).
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config.file=$RUN_CONFIG" || return 1
  printf '%s\n' "$pid"
}

http_ok() {
  curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
}

# Whether Prometheus has recorded the scrape target's `up` sample yet.
first_scrape_done() {
  curl -fsS --max-time 2 "$1/api/v1/query?query=up%7Bjob%3D%22driftwatch%22%7D" 2>/dev/null \
    | grep -q '"result":\[{'
}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

write_config() {
  local target="$1"
  cat >"$RUN_CONFIG" <<EOF
# Generated by scripts/prometheus.sh start: scrapes one driftwatch and evaluates the shipped
# rules unmodified, both every $INTERVAL, so alerts without 'for' fire within seconds.
global:
  scrape_interval: $INTERVAL
  scrape_timeout: $INTERVAL
  evaluation_interval: $INTERVAL
rule_files:
  - "$RULES"
scrape_configs:
  - job_name: driftwatch
    static_configs:
      - targets: ["$target"]
EOF
}

# Whether a process is alive: exists and is not a zombie (a detached Prometheus is not our
# child, so we cannot reap it; its new parent does).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "$state" != Z ]]
}

stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while alive "$pid"; do
    if ((waited == 300)); then
      log "prometheus (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    elif ((waited >= 400)); then
      log "prometheus (pid $pid) still there 10 s after SIGKILL; giving up"
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

cmd_stop_locked() {
  local pid
  if pid="$(running_pid)"; then
    log "stopping prometheus (pid $pid)"
    stop_pid "$pid"
  fi
  rm -rf "$DATA_DIR"
  rm -f "$PID_FILE" "$URL_FILE" "$TARGET_FILE"
}

cmd_start_locked() {
  local target="$1" pid port url attempt
  if pid="$(running_pid)"; then
    if [[ "$(cat "$TARGET_FILE" 2>/dev/null)" == "$target" ]] && url="$(cat "$URL_FILE" 2>/dev/null)" \
      && http_ok "$url/-/ready"; then
      printf '%s\n' "$url"
      return 0
    fi
    log "a prometheus for another target (or not ready) is running; replacing it"
  fi
  cmd_stop_locked
  [[ -f "$RULES" ]] || die "rule file $RULES not found"
  write_config "$target"
  printf '%s\n' "$target" >"$TARGET_FILE"
  # A free port can be taken between our probe and Prometheus' bind: retry with a new one.
  for attempt in 1 2 3; do
    port="${DRIFTWATCH_PROMETHEUS_PORT:-$(free_port)}"
    url="http://$HOST:$port"
    rm -rf "$DATA_DIR"
    mkdir -p "$DATA_DIR"
    # Detached in its own session, every stdio stream redirected: the caller may exit, or read
    # our stdout to EOF, while Prometheus keeps running. `9>&-`: it must not inherit the lock,
    # or the next start/stop would wait for it forever. Debian's binary needs no
    # --web.console.* flags (the consoles are optional; the API and /-/ready work without).
    setsid "$PROMETHEUS" \
      --config.file="$RUN_CONFIG" \
      --storage.tsdb.path="$DATA_DIR" \
      --storage.tsdb.retention.time=1d \
      --web.listen-address="$HOST:$port" \
      --log.level=warn \
      </dev/null >"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
      if ! alive "$pid"; then
        break
      fi
      # Ready, and the target scraped once (up is recorded, 1 or 0): Prometheus hands new
      # targets to its scrape loop only after ~5 s (service discovery is throttled), so
      # waiting here spares every caller from polling for the first sample.
      if http_ok "$url/-/ready" && first_scrape_done "$url"; then
        printf '%s\n' "$url" >"$URL_FILE"
        log "prometheus ready at $url (pid $pid), scraping $target every $INTERVAL"
        printf '%s\n' "$url"
        return 0
      fi
      sleep 0.2
    done
    if alive "$pid"; then
      log "prometheus not ready after ${START_TIMEOUT}s; last log lines:"
      tail -n 20 "$LOG_FILE" >&2 || true
      stop_pid "$pid"
      rm -f "$PID_FILE"
      die "prometheus did not become ready"
    fi
    rm -f "$PID_FILE"
    if grep -q "address already in use" "$LOG_FILE" 2>/dev/null && [[ -z "${DRIFTWATCH_PROMETHEUS_PORT:-}" ]]; then
      log "port $port was taken (attempt $attempt); trying another"
      continue
    fi
    log "prometheus exited during start-up; last log lines:"
    tail -n 20 "$LOG_FILE" >&2 || true
    die "prometheus failed to start"
  done
  die "prometheus could not find a free port"
}

with_lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/.lock"
  flock 9
  "$@"
}

cmd_start() {
  local target="${1:-}"
  [[ "$target" =~ ^[^[:space:]/]+:[0-9]+$ ]] || die "start needs TARGET as host:port, got '${target}'"
  have "$PROMETHEUS" || die "'$PROMETHEUS' not found (run: scripts/prometheus.sh ensure)"
  have curl || die "'curl' not found (used to wait for /-/ready)"
  [[ -n "${DRIFTWATCH_PROMETHEUS_PORT:-}" ]] || have python3 || die "'python3' not found (used to pick a free port)"
  with_lock cmd_start_locked "$target"
}

cmd_stop() {
  with_lock cmd_stop_locked
}

cmd_url() {
  local url
  running_pid >/dev/null || die "no prometheus running (run folder $RUN)"
  url="$(cat "$URL_FILE" 2>/dev/null)" || die "no URL recorded in $URL_FILE"
  printf '%s\n' "$url"
}

cmd_status() {
  local url
  running_pid >/dev/null || exit 1
  url="$(cat "$URL_FILE" 2>/dev/null)" || exit 1
  http_ok "$url/-/ready" || exit 1
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  check) cmd_check ;;
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  url) cmd_url ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
