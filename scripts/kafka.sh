#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) for tests
# and local use, run from jars resolved from Maven Central (see scripts/kafka/pom.xml).
# No Docker, no sudo.
#
#   scripts/kafka.sh ensure     download the broker's jars once (cached; fast when cached)
#   scripts/kafka.sh start      start a broker on 127.0.0.1 (free ports), wait until it answers,
#                               print "127.0.0.1:PORT" as the only line on stdout;
#                               if one is already running, just print its address
#   scripts/kafka.sh bootstrap  print the running broker's address (exit 1 if none)
#   scripts/kafka.sh status     exit 0 if running and answering, 1 otherwise
#   scripts/kafka.sh stop       stop it (SIGTERM, up to 30 s, then SIGKILL) and delete its data
#   scripts/kafka.sh restart    stop it like 'stop' but keep its data and config, start the same
#                               broker again (same ports, same KRaft storage), wait until it
#                               answers, print "127.0.0.1:PORT" as the only line on stdout;
#                               fails if this run folder has no broker state (never started,
#                               or removed by 'stop')
#
# Progress and errors go to stderr; stdout carries only the address (start, restart, bootstrap).
# Environment (all optional):
#   DRIFTWATCH_KAFKA_CACHE          jar cache    (default ~/.cache/driftwatch/kafka-<version>)
#   DRIFTWATCH_KAFKA_RUN            run folder   (default <repo>/target/kafka-run)
#   DRIFTWATCH_KAFKA_PORT           broker port  (default: a free port)
#   DRIFTWATCH_KAFKA_CONTROLLER_PORT  KRaft controller port (default: a free port)
#   DRIFTWATCH_KAFKA_HEAP_OPTS      default "-Xms256m -Xmx768m"
#   DRIFTWATCH_KAFKA_JVM_OPTS       extra JVM options appended to the defaults
#   DRIFTWATCH_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   DRIFTWATCH_KAFKA_LOG_LEVEL      broker log level in logs/server.log (default INFO)
#   DRIFTWATCH_KAFKA_EXTRA_PROPS    a file whose lines are appended to server.properties
#                                   (later keys win)
#   (restart reuses the run folder's server.properties and log4j2.properties as written by
#    start, so the port, log level and extra-props settings above apply to start only)
#   JAVA_HOME                       Java >= 17 to use (default: java on PATH)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
HOST=127.0.0.1
NODE_ID=1

TOOL=kafka.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

[[ -f "$POM" ]] || die "missing $POM"
KAFKA_VERSION="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || die "cannot read <kafka.version> from $POM"

CACHE="${DRIFTWATCH_KAFKA_CACHE:-${HOME:?HOME is not set}/.cache/driftwatch/kafka-$KAFKA_VERSION}"
RUN="${DRIFTWATCH_KAFKA_RUN:-$REPO_ROOT/target/kafka-run}"
START_TIMEOUT="${DRIFTWATCH_KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${DRIFTWATCH_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
LOG_LEVEL="${DRIFTWATCH_KAFKA_LOG_LEVEL:-INFO}"
# Kafka's own defaults (kafka-run-class.sh), minus GC logging.
JVM_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true ${DRIFTWATCH_KAFKA_JVM_OPTS:-}"

PID_FILE="$RUN/kafka.pid"
BOOTSTRAP_FILE="$RUN/bootstrap"
PROPS_FILE="$RUN/server.properties"
LOG4J_FILE="$RUN/log4j2.properties"
DATA_DIR="$RUN/data"
LOG_DIR="$RUN/logs"

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
# classpath and logging, for every JVM we run from the jar cache
KAFKA_JVM=(-Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$LOG4J_FILE" -cp "$CACHE/*")

check_java() {
  need "$JAVA" "Kafka $KAFKA_VERSION needs Java 17 or newer; set JAVA_HOME or install openjdk-17-jre-headless"
  local v
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n1)"
  [[ -n "$v" ]] || die "cannot tell the version of $JAVA"
  ((v >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is Java $v (set JAVA_HOME)"
}

# Small helpers in Python: cluster ids, ports after a restart, and a Kafka-protocol readiness
# probe.
py() {
  need python3 "used to probe the broker"
  python3 - "$@" <<'PY'
import base64, os, socket, struct, sys

cmd = sys.argv[1]
if cmd == "port-bindable":  # exit 0 if a server could bind the port with SO_REUSEADDR, as the
    s = socket.socket()        # broker does: TIME_WAIT leftovers are fine, a listener is not
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[2])))
    except OSError:
        sys.exit(1)
elif cmd == "uuid":           # a Kafka Uuid: 16 random bytes, base64url, no padding
    # Like Kafka's Uuid.randomUuid, never one starting with "-": kafka-storage's argument
    # parser would take it for an option (1 start in 64 failed that way).
    while True:
        uuid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not uuid.startswith("-"):
            break
    print(uuid)
elif cmd == "probe":          # a Metadata v4 request; ok if the broker lists itself
    host, port, want = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.settimeout(5)
        cid = b"driftwatch-kafka-sh"
        # header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
        # body: topics=[] (none), allow_auto_topic_creation=false
        req = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid + struct.pack(">i", 0) + b"\x00"
        s.sendall(struct.pack(">i", len(req)) + req)
        def recv(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise EOFError("connection closed by the broker")
                buf += chunk
            return buf
        size, = struct.unpack(">i", recv(4))
        data = recv(size)
        corr, _throttle, n = struct.unpack_from(">iii", data, 0)
        if corr != 7:
            raise ValueError("bad correlation id")
        off, nodes = 12, []
        for _ in range(n):
            node, hl = struct.unpack_from(">ih", data, off); off += 6
            h = data[off:off + hl].decode(); off += hl
            p, rl = struct.unpack_from(">ih", data, off); off += 6
            off += max(rl, 0)
            nodes.append((node, h, p))
        if not any(nd[0] == want for nd in nodes):
            print(f"broker answered but does not list node {want} yet: {nodes}", file=sys.stderr)
            sys.exit(2)
    except Exception as e:  # noqa: BLE001
        if os.environ.get("PROBE_VERBOSE"):
            print(f"probe {host}:{port}: {e}", file=sys.stderr)
        sys.exit(1)
else:
    sys.exit(f"unknown helper command {cmd}")
PY
}

# ---------------------------------------------------------------- ensure
cache_stamp() { sha256sum "$POM" | cut -d' ' -f1; }
cache_ok() { [[ -f "$CACHE/.complete" && "$(cat "$CACHE/.complete")" == "$(cache_stamp)" ]]; }

ensure() {
  cache_ok && return 0
  need mvn "install Maven (apt-get install maven) to download the Kafka jars"
  mkdir -p "$(dirname "$CACHE")"
  exec 8>"$CACHE.lock"
  flock -w 900 8 || die "timed out waiting for another download into $CACHE (lock $CACHE.lock)"
  if cache_ok; then exec 8>&-; return 0; fi
  log "downloading Apache Kafka $KAFKA_VERSION jars from Maven Central into $CACHE (one time) ..."
  local tmp="$CACHE.partial" t0=$SECONDS
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >"$CACHE.mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$CACHE.mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not resolve the Kafka jars (output above, also in $CACHE.mvn.log; Maven Central must be reachable)"
  fi
  rm -f "$CACHE.mvn.log"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "download incomplete: no kafka_2.13-$KAFKA_VERSION.jar in $tmp"
  rm -rf "$SCRIPT_DIR/kafka/target"   # in case the dependency plugin left one
  cache_stamp >"$tmp/.complete"
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"
  exec 8>&-
  log "cached $(find "$CACHE" -name '*.jar' | wc -l) jars ($(du -sh "$CACHE" | cut -f1)) in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- state
broker_pid() {   # prints the pid if our broker process is alive
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # guard against a recycled pid
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  printf '%s\n' "$pid"
}

broker_addr() { [[ -f "$BOOTSTRAP_FILE" ]] && cat "$BOOTSTRAP_FILE"; }

answering() {   # the broker at $1 answers a Metadata request and lists itself
  local addr="$1"
  py probe "${addr%:*}" "${addr##*:}" "$NODE_ID"
}

clear_state() { rm -rf "$DATA_DIR" "$PID_FILE" "$BOOTSTRAP_FILE"; }

tail_log() {
  local f
  for f in "$LOG_DIR/stdout.log" "$LOG_DIR/server.log"; do
    if [[ -s "$f" ]]; then
      printf -- '---- last lines of %s ----\n' "$f" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

# ---------------------------------------------------------------- config
write_config() {
  local bport="$1" cport="$2"
  cat >"$PROPS_FILE" <<EOF
# Written by scripts/kafka.sh: a single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$NODE_ID@$HOST:$cport
listeners=PLAINTEXT://$HOST:$bport,CONTROLLER://$HOST:$cport
advertised.listeners=PLAINTEXT://$HOST:$bport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR

# one node: every replication factor / ISR is 1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# topics
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=1

# groups: fast joins for tests
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# KIP-848 ("consumer") groups: shorter heartbeats/sessions than the production defaults (5 s / 45 s)
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000
group.consumer.min.session.timeout.ms=3000
group.consumer.session.timeout.ms=6000

# storage sized for tests: small segments, bounded by size, never by age
# (tests may produce records with old event timestamps; time retention would delete them)
log.segment.bytes=16777216
log.retention.bytes=268435456
log.retention.ms=-1
log.retention.check.interval.ms=60000
log.index.size.max.bytes=1048576
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216

# light on a 2-core machine
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
EOF
  if [[ -n "${DRIFTWATCH_KAFKA_EXTRA_PROPS:-}" ]]; then
    [[ -f "$DRIFTWATCH_KAFKA_EXTRA_PROPS" ]] || die "DRIFTWATCH_KAFKA_EXTRA_PROPS=$DRIFTWATCH_KAFKA_EXTRA_PROPS is not a file"
    { echo; echo "# from $DRIFTWATCH_KAFKA_EXTRA_PROPS"; cat "$DRIFTWATCH_KAFKA_EXTRA_PROPS"; } >>"$PROPS_FILE"
  fi

  cat >"$LOG4J_FILE" <<EOF
# Written by scripts/kafka.sh: everything to logs/server.log (rolled at 20 MB), nothing to the console.
status = warn
name = driftwatch-kafka
# keep logging through the broker's own shutdown hook (log4j2's hook would stop it first)
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = \${sys:kafka.logs.dir}/server.log
appender.file.filePattern = \${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = $LOG_LEVEL
rootLogger.appenderRef.file.ref = FILE
# chatty at INFO: per-request and per-partition-state lines
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
# the full config dump (~2,500 lines per start)
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

# ---------------------------------------------------------------- commands
cmd_start() {
  lock_run
  local pid addr
  if pid="$(broker_pid)"; then
    addr="$(broker_addr)" || die "broker pid $pid is running but $BOOTSTRAP_FILE is missing; run '$0 stop'"
    if wait_ready "$pid" "$addr"; then
      printf '%s\n' "$addr"
      return 0
    fi
    die "broker pid $pid at $addr is running but does not answer; run '$0 stop'"
  fi

  check_java
  ensure
  clear_state
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  : >"$LOG_DIR/stdout.log"
  rm -f "$LOG_DIR"/server.log*

  local bport cport ports
  ports="$(free_ports)" || die "could not pick free ports"
  read -r bport cport <<<"$ports"
  bport="${DRIFTWATCH_KAFKA_PORT:-$bport}"
  cport="${DRIFTWATCH_KAFKA_CONTROLLER_PORT:-$cport}"
  [[ "$bport" != "$cport" ]] || die "broker and controller ports must differ (both $bport)"
  port_free "$bport" || die "broker port $HOST:$bport is in use"
  port_free "$cport" || die "controller port $HOST:$cport is in use"
  write_config "$bport" "$cport"

  local cluster_id
  cluster_id="$(py uuid)"
  log "formatting KRaft storage in $DATA_DIR (cluster id $cluster_id)"
  if ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto "${KAFKA_JVM[@]}" kafka.tools.StorageTool format \
      --cluster-id "$cluster_id" --config "$PROPS_FILE" >"$LOG_DIR/format.log" 2>&1 8>&- 9>&-; then
    cat "$LOG_DIR/format.log" >&2
    die "formatting the KRaft storage failed"
  fi

  launch_broker "$bport" "$cport"
  printf '%s\n' "$HOST:$bport"
}

# Starts kafka.Kafka on $PROPS_FILE (already written, storage already formatted), records its
# pid and address, and waits until it answers; dies (killing it if needed) if it does not.
launch_broker() {   # broker-port controller-port
  local bport="$1" cport="$2" pid addr="$HOST:$1" t0=$SECONDS
  log "starting Kafka $KAFKA_VERSION on $addr (controller $HOST:$cport), logs in $LOG_DIR"
  # Detached: own session, stdin/stdout/stderr not tied to the caller, lock fds closed,
  # so the calling shell (or test harness reading our stdout) can go away.
  # shellcheck disable=SC2086
  nohup setsid "$JAVA" $HEAP_OPTS $JVM_OPTS "${KAFKA_JVM[@]}" kafka.Kafka "$PROPS_FILE" \
    </dev/null >>"$LOG_DIR/stdout.log" 2>&1 8>&- 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$addr" >"$BOOTSTRAP_FILE"

  if ! wait_ready "$pid" "$addr"; then
    tail_log
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      die "broker did not answer on $addr within ${START_TIMEOUT}s (killed pid $pid; logs in $LOG_DIR)"
    fi
    die "broker process exited during startup (logs in $LOG_DIR)"
  fi
  log "ready on $addr after $((SECONDS - t0)) s (pid $pid)"
}

wait_ready() { wait_until_ready "$1" 0.5 answering "$2"; }   # pid addr

cmd_stop() {
  lock_run
  local pid
  if pid="$(broker_pid)"; then
    stop_process "$pid" broker
  else
    log "no broker running (run folder $RUN)"
  fi
  clear_state
}

# The last value of a key in $PROPS_FILE (later keys win, as for Kafka).
prop() { sed -n "s/^$1=//p" "$PROPS_FILE" | tail -n1; }

cmd_restart() {
  lock_run
  # Everything that could make the new start fail is checked before the old broker is stopped.
  if [[ ! -f "$PROPS_FILE" || ! -f "$DATA_DIR/meta.properties" ]]; then
    die "no broker to restart in run folder $RUN (no $PROPS_FILE or no formatted storage in $DATA_DIR: never started, or its data was deleted by '$0 stop'); run '$0 start'"
  fi
  [[ -f "$LOG4J_FILE" ]] || die "missing $LOG4J_FILE; run '$0 stop' then '$0 start'"
  local l bport="" cport="" listeners
  local -a parts
  listeners="$(prop listeners)"
  IFS=, read -ra parts <<<"$listeners"
  for l in "${parts[@]}"; do
    case "$l" in
      PLAINTEXT://*) bport="${l##*:}" ;;
      CONTROLLER://*) cport="${l##*:}" ;;
    esac
  done
  [[ "$bport" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ ]] \
    || die "cannot read the PLAINTEXT and CONTROLLER ports from 'listeners=$listeners' in $PROPS_FILE"
  check_java
  ensure

  local pid
  if pid="$(broker_pid)"; then
    stop_process "$pid" broker
  else
    log "no broker running (run folder $RUN); starting it again from its kept state"
  fi
  rm -f "$PID_FILE"
  mkdir -p "$LOG_DIR"
  # The old broker's ports may still have TIME_WAIT connections: fine for the broker, which binds
  # with SO_REUSEADDR (as this check does); a process listening there now is not.
  py port-bindable "$bport" || die "broker port $HOST:$bport is in use by another process"
  py port-bindable "$cport" || die "controller port $HOST:$cport is in use by another process"
  launch_broker "$bport" "$cport"
  printf '%s\n' "$HOST:$bport"
}

cmd_status() {
  local pid addr
  if pid="$(broker_pid)" && addr="$(broker_addr)" && answering "$addr"; then
    log "running: $addr (pid $pid, run folder $RUN)"
    return 0
  fi
  if pid="$(broker_pid)"; then
    log "process $pid is running but the broker does not answer"
  else
    log "not running"
  fi
  return 1
}

cmd_bootstrap() {
  local addr
  if ! broker_pid >/dev/null || ! addr="$(broker_addr)"; then
    die "no broker running (run folder $RUN); run '$0 start'"
  fi
  printf '%s\n' "$addr"
}

case "${1:-}" in
  ensure) check_java; ensure ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_restart ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
