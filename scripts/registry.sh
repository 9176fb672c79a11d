#!/usr/bin/env bash
# A real schema registry that speaks the Confluent Schema Registry REST API, for tests and local
# use: Apicurio Registry (its "ccompat" API) with in-memory storage, run from the distribution
# archive on Maven Central (see scripts/registry/pom.xml). No Docker, no sudo.
#
#   scripts/registry.sh ensure   download the registry once (cached; fast when cached)
#   scripts/registry.sh start    start it on 127.0.0.1 (a free port), wait until its
#                                Confluent-compatible API answers, print that API's base URL,
#                                "http://127.0.0.1:PORT/apis/ccompat/v7", as the only line on
#                                stdout; if one is already running, just print its URL
#   scripts/registry.sh url      print the running registry's base URL (exit 1 if none)
#   scripts/registry.sh status   exit 0 if running and answering, 1 otherwise
#   scripts/registry.sh stop     stop it (SIGTERM, up to 30 s, then SIGKILL); its schemas are gone
#
# The URL is what Confluent clients take as the registry url, e.g. in Python
# SchemaRegistryClient({"url": URL}); every start is an empty registry (H2 in memory). Ids are
# content ids, as with Confluent's registry: the same schema text gets the same id in every
# subject, and registering a schema again in other whitespace under a subject returns its
# existing id and version. (Unlike Confluent, two texts of one schema that differ only in
# whitespace, registered first under two different subjects, get two ids.) Requests with a body
# need a JSON content type (application/vnd.schemaregistry.v1+json or application/json;
# anything else gets 415).
#
# Progress and errors go to stderr; stdout carries only the URL (start, url).
# Environment (all optional):
#   DRIFTWATCH_REGISTRY_VERSION        Apicurio version (default: <apicurio.version> in the pom);
#                                      3.3.x needs Java 21+
#   DRIFTWATCH_REGISTRY_CACHE          unpacked app (default ~/.cache/driftwatch/apicurio-<version>)
#   DRIFTWATCH_REGISTRY_RUN            run folder   (default <repo>/target/registry-run)
#   DRIFTWATCH_REGISTRY_PORT           HTTP port    (default: a free port)
#   DRIFTWATCH_REGISTRY_HEAP_OPTS      default "-Xms64m -Xmx256m"
#   DRIFTWATCH_REGISTRY_JVM_OPTS       extra JVM options appended to the defaults; -Dkey=value
#                                      here overrides any registry setting the script passes
#                                      (listed in cmd_start; the last one wins)
#   DRIFTWATCH_REGISTRY_START_TIMEOUT  seconds to wait for readiness (default 120)
#   JAVA_HOME                          the Java to run (default: java on PATH; if that is older
#                                      than the registry's classes need and JAVA_HOME is unset,
#                                      the first new enough JDK under /usr/lib/jvm is used)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/registry/pom.xml"
HOST=127.0.0.1
# The Confluent-compatible API (Confluent Schema Registry 7.x REST paths) under the server root.
CCOMPAT_PATH=/apis/ccompat/v7

TOOL=registry.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

[[ -f "$POM" ]] || die "missing $POM"
POM_VERSION="$(sed -n 's:.*<apicurio\.version>\([^<]*\)</apicurio\.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$POM_VERSION" ]] || die "cannot read <apicurio.version> from $POM"
VERSION="${DRIFTWATCH_REGISTRY_VERSION:-$POM_VERSION}"

CACHE="${DRIFTWATCH_REGISTRY_CACHE:-${HOME:?HOME is not set}/.cache/driftwatch/apicurio-$VERSION}"
RUN="${DRIFTWATCH_REGISTRY_RUN:-$REPO_ROOT/target/registry-run}"
START_TIMEOUT="${DRIFTWATCH_REGISTRY_START_TIMEOUT:-120}"
HEAP_OPTS="${DRIFTWATCH_REGISTRY_HEAP_OPTS:--Xms64m -Xmx256m}"
# Light on a 2-core machine and quick to start: serial GC, C1 only (a test registry serves a
# handful of requests; clients cache schemas by id).
JVM_OPTS="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true"

PID_FILE="$RUN/registry.pid"
URL_FILE="$RUN/url"
LOG_DIR="$RUN/logs"
TMP_DIR="$RUN/tmp"

# Small helpers in Python: class-file versions and an HTTP readiness probe.
py() {
  need python3 "used to probe the registry"
  python3 - "$@" <<'PY'
import json, sys, urllib.request, zipfile

cmd = sys.argv[1]
if cmd == "class-release":  # the newest Java release the registry's own classes need
    majors = set()
    with zipfile.ZipFile(sys.argv[2]) as z:
        for name in z.namelist():
            if name.startswith("io/apicurio/") and name.endswith(".class"):
                with z.open(name) as f:
                    majors.add(int.from_bytes(f.read(8)[6:8], "big"))
    if not majors:
        sys.exit(f"no io/apicurio classes in {sys.argv[2]}")
    print(max(majors) - 44)       # class-file major 61 = Java 17, 65 = Java 21
elif cmd == "probe":          # ok if GET <url>/subjects answers 200 with a JSON array
    try:
        with urllib.request.urlopen(sys.argv[2] + "/subjects", timeout=3) as r:
            if r.status != 200 or not isinstance(json.load(r), list):
                sys.exit(1)
    except Exception as e:  # noqa: BLE001
        sys.exit(1)
else:
    sys.exit(f"unknown helper command {cmd}")
PY
}

# ---------------------------------------------------------------- ensure
# The cache is complete when .complete holds this stamp (the pom and the version in use), so
# editing the pom or overriding the version downloads again.
cache_stamp() { { sha256sum "$POM" | cut -d' ' -f1; echo "$VERSION"; } | sha256sum | cut -d' ' -f1; }
cache_ok() { [[ -f "$CACHE/.complete" && "$(cat "$CACHE/.complete")" == "$(cache_stamp)" ]]; }

# The jar to start: 3.0.x archives use Quarkus' legacy-jar layout (<app>-runner.jar + lib/),
# later ones its fast-jar layout (quarkus-run.jar + app/ lib/ quarkus/).
launcher() {   # dir
  local dir="$1" f
  if [[ -f "$dir/quarkus-run.jar" ]]; then
    printf '%s\n' "$dir/quarkus-run.jar"
    return 0
  fi
  for f in "$dir"/*-runner.jar; do
    [[ -f "$f" ]] && { printf '%s\n' "$f"; return 0; }
  done
  return 1
}

# The jar holding the registry's own classes, whose class-file version says which Java it needs.
app_jar() {   # dir
  local dir="$1" f
  for f in "$dir"/app/apicurio-registry-app-*.jar "$dir"/*-runner.jar; do
    [[ -f "$f" ]] && { printf '%s\n' "$f"; return 0; }
  done
  return 1
}

ensure() {
  cache_ok && return 0
  need mvn "install Maven (apt-get install maven) to download Apicurio Registry"
  need tar "needed to unpack the registry's archive"
  mkdir -p "$(dirname "$CACHE")"
  exec 8>"$CACHE.lock"
  flock -w 900 8 || die "timed out waiting for another download into $CACHE (lock $CACHE.lock)"
  if cache_ok; then exec 8>&-; return 0; fi
  log "downloading Apicurio Registry $VERSION from Maven Central into $CACHE (one time, ~110 MB) ..."
  local tmp="$CACHE.partial" t0=$SECONDS archive jar release
  rm -rf "$tmp"
  mkdir -p "$tmp/download"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy \
      -Dapicurio.version="$VERSION" -DoutputDirectory="$tmp/download" >"$CACHE.mvn.log" 2>&1 8>&-; then
    sed 's/\x1b\[[0-9;]*m//g' "$CACHE.mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all (output above, also in $CACHE.mvn.log; Maven Central must be reachable)"
  fi
  rm -f "$CACHE.mvn.log"
  rm -rf "$SCRIPT_DIR/registry/target"   # in case the dependency plugin left one
  archive="$tmp/download/apicurio-registry-app-$VERSION-all.tar.gz"
  [[ -f "$archive" ]] || die "download incomplete: no $(basename "$archive") in $tmp/download"
  tar -xzf "$archive" -C "$tmp" || die "could not unpack $archive"
  rm -rf "$tmp/download"   # Maven keeps its own copy in ~/.m2
  jar="$(launcher "$tmp")" || die "no quarkus-run.jar or *-runner.jar in the archive of Apicurio Registry $VERSION"
  jar="$(app_jar "$tmp")" || die "cannot find the registry's own jar in the archive of Apicurio Registry $VERSION"
  release="$(py class-release "$jar")" || die "cannot read the class-file version of $jar"
  printf '%s\n' "$release" >"$tmp/.java-release"
  cache_stamp >"$tmp/.complete"
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"
  exec 8>&-
  log "cached Apicurio Registry $VERSION ($(du -sh "$CACHE" | cut -f1), needs Java $release+) in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- java
java_release() {   # java-binary: prints its feature release (17, 21, ...)
  "$1" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n1
}

# Sets JAVA to a Java that can run the cached registry (ensure first).
pick_java() {
  local want have candidate
  want="$(cat "$CACHE/.java-release")"
  JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  need "$JAVA" "Apicurio Registry $VERSION needs Java $want or newer; set JAVA_HOME or install openjdk-17-jre-headless"
  have="$(java_release "$JAVA")"
  [[ -n "$have" ]] || die "cannot tell the version of $JAVA"
  ((have >= want)) && return 0
  [[ -z "${JAVA_HOME:-}" ]] \
    || die "Apicurio Registry $VERSION needs Java $want or newer; JAVA_HOME=$JAVA_HOME is Java $have"
  for candidate in /usr/lib/jvm/*/bin/java; do
    [[ -x "$candidate" ]] || continue
    have="$(java_release "$candidate")"
    if [[ -n "$have" ]] && ((have >= want)); then
      log "java on PATH is too old for Apicurio Registry $VERSION (needs $want+); using $candidate (Java $have)"
      JAVA="$candidate"
      return 0
    fi
  done
  die "Apicurio Registry $VERSION needs Java $want or newer and none was found (java on PATH, /usr/lib/jvm); set JAVA_HOME"
}

# ---------------------------------------------------------------- state
registry_pid() {   # prints the pid if our registry process is alive
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # guard against a recycled pid: our JVMs carry their run folder as a system property
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "-Ddriftwatch.registry.run=$RUN" || return 1
  printf '%s\n' "$pid"
}

registry_url() { [[ -f "$URL_FILE" ]] && cat "$URL_FILE"; }

clear_state() { rm -rf "$PID_FILE" "$URL_FILE" "$TMP_DIR"; }

tail_log() {
  if [[ -s "$LOG_DIR/registry.log" ]]; then
    printf -- '---- last lines of %s ----\n' "$LOG_DIR/registry.log" >&2
    grep -v 'apicurio-registry.access' "$LOG_DIR/registry.log" | tail -n 40 >&2 || true
  fi
}

wait_ready() { wait_until_ready "$1" 0.25 py probe "$2"; }   # pid url

# ---------------------------------------------------------------- commands
cmd_start() {
  lock_run
  local pid url
  if pid="$(registry_pid)"; then
    url="$(registry_url)" || die "registry pid $pid is running but $URL_FILE is missing; run '$0 stop'"
    if wait_ready "$pid" "$url"; then
      printf '%s\n' "$url"
      return 0
    fi
    die "registry pid $pid at $url is running but does not answer; run '$0 stop'"
  fi

  ensure
  pick_java
  clear_state
  mkdir -p "$LOG_DIR" "$TMP_DIR"
  : >"$LOG_DIR/registry.log"

  local port mport ports jar t0=$SECONDS
  ports="$(free_ports)" || die "could not pick free ports"
  read -r port mport <<<"$ports"
  port="${DRIFTWATCH_REGISTRY_PORT:-$port}"
  if [[ "$mport" == "$port" ]]; then
    mport="$(free_ports | cut -d' ' -f2)"
  fi
  port_free "$port" || die "port $HOST:$port is in use"
  jar="$(launcher "$CACHE")" || die "no launcher jar in $CACHE; delete it and run '$0 ensure'"
  url="http://$HOST:$port$CCOMPAT_PATH"

  # Registry settings (Quarkus/SmallRye config, here as system properties):
  #   quarkus.http.host/port            the REST APIs (ccompat under /apis/ccompat/v7), loopback only
  #   quarkus.management.host/port      3.3+ serve health/metrics on a second port, 0.0.0.0:9000 by
  #                                     default: moved to loopback and a free port (3.0 ignores it)
  #   apicurio.storage.kind=sql + apicurio.storage.sql.kind=h2 + an h2 "mem:" url
  #                                     in-memory storage (3.x's default, spelled out); gone at stop
  #   apicurio.datasource.jdbc.*-size   pool of 2..10 connections instead of 20..100
  #   apicurio.ccompat.legacy-id-mode.enabled=false
  #                                     ids in the ccompat API are content ids (Confluent's
  #                                     meaning), not Apicurio's global ids (the default, spelled out)
  #   apicurio.ccompat.use-canonical-hash=true
  #                                     within a subject, a schema is looked up by its canonical
  #                                     form, as Confluent does: registering it again with other
  #                                     whitespace (even without the trailing newline, as Python's
  #                                     client sends it) returns its id and version, not new ones
  #   apicurio.storage.snapshot.location, apicurio.import.work-dir, java.io.tmpdir
  #                                     inside the run folder instead of /tmp
  #   driftwatch.registry.run           not read by the registry: marks the process as ours
  log "starting Apicurio Registry $VERSION on $HOST:$port with $JAVA, logs in $LOG_DIR"
  # Detached: own session, stdin/stdout/stderr not tied to the caller, lock fds closed,
  # so the calling shell (or test harness reading our stdout) can go away.
  # shellcheck disable=SC2086
  (cd "$RUN" && exec nohup setsid "$JAVA" $HEAP_OPTS $JVM_OPTS \
    -Djava.io.tmpdir="$TMP_DIR" \
    -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$port" \
    -Dquarkus.management.host="$HOST" -Dquarkus.management.port="$mport" \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.url="jdbc:h2:mem:driftwatch" \
    -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
    -Dapicurio.datasource.jdbc.max-size=10 \
    -Dapicurio.ccompat.legacy-id-mode.enabled=false -Dapicurio.ccompat.use-canonical-hash=true \
    -Dapicurio.storage.snapshot.location="$TMP_DIR" -Dapicurio.import.work-dir="$TMP_DIR" \
    -Ddriftwatch.registry.run="$RUN" \
    ${DRIFTWATCH_REGISTRY_JVM_OPTS:-} \
    -jar "$jar" </dev/null >>"$LOG_DIR/registry.log" 2>&1 8>&- 9>&-) &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$url" >"$URL_FILE"

  if ! wait_ready "$pid" "$url"; then
    tail_log
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      clear_state
      die "registry did not answer on $url within ${START_TIMEOUT}s (killed pid $pid; logs in $LOG_DIR)"
    fi
    clear_state
    die "registry process exited during startup (logs in $LOG_DIR)"
  fi
  log "ready on $url after $((SECONDS - t0)) s (pid $pid)"
  printf '%s\n' "$url"
}

cmd_stop() {
  lock_run
  local pid
  if pid="$(registry_pid)"; then
    stop_process "$pid" registry
  else
    log "no registry running (run folder $RUN)"
  fi
  clear_state
}

cmd_status() {
  local pid url
  if pid="$(registry_pid)" && url="$(registry_url)" && py probe "$url"; then
    log "running: $url (pid $pid, run folder $RUN)"
    return 0
  fi
  if pid="$(registry_pid)"; then
    log "process $pid is running but the registry does not answer"
  else
    log "not running"
  fi
  return 1
}

cmd_url() {
  local url
  if ! registry_pid >/dev/null || ! url="$(registry_url)"; then
    die "no registry running (run folder $RUN); run '$0 start'"
  fi
  printf '%s\n' "$url"
}

case "${1:-}" in
  ensure) ensure; log "Apicurio Registry $VERSION is in $CACHE" ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) cmd_url ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
