# Shared by scripts/kafka.sh and scripts/registry.sh: sourced, not run.
# The sourcing script sets TOOL (its name, for messages) and, before calling lock_run,
# RUN (its run folder) and START_TIMEOUT (seconds).
# shellcheck shell=bash

log() { printf '%s: %s\n' "$TOOL" "$*" >&2; }
die() { printf '%s: error: %s\n' "$TOOL" "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"; }

# Prints the script's header comment (its usage) and exits 2.
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# One start, stop or restart at a time per run folder (fd 9, closed in the launched process).
lock_run() {
  mkdir -p "$RUN"
  exec 9>"$RUN/.lock"
  flock -w $((START_TIMEOUT + 60)) 9 || die "timed out waiting for another $TOOL on $RUN (lock $RUN/.lock)"
}

# Two distinct free TCP ports on 127.0.0.1, space-separated.
free_ports() {
  need python3 "used to pick free ports"
  python3 -c '
import socket
socks = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}

# Exit status 0 if the port can be bound on 127.0.0.1 now.
port_free() {
  need python3 "used to check ports"
  python3 -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# Waits until `probe ARGS...` succeeds while process PID lives: 0 when it does, 1 when the
# process dies or START_TIMEOUT passes.
wait_until_ready() {   # pid interval probe args...
  local pid="$1" interval="$2" deadline=$((SECONDS + START_TIMEOUT))
  shift 2
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    "$@" 2>/dev/null && return 0
    sleep "$interval"
  done
  return 1
}

# Waits up to TENTHS tenths of a second for process PID to end; 0 when it has.
wait_exit() {   # pid tenths
  local i
  for ((i = 0; i < $2; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}

# SIGTERM, up to 30 s for a clean exit, then SIGKILL (and up to 5 s more).
stop_process() {   # pid what
  local pid="$1" what="$2"
  log "stopping $what pid $pid ..."
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_exit "$pid" 300; then
    log "$what pid $pid still running after 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 50 || true
  fi
  log "stopped"
}
