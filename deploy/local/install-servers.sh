#!/usr/bin/env bash
# Installs the servers Ferry's tests and local stack run, into ${FERRY_CACHE:-$HOME/.cache/ferry}:
#   bin/nats-server             nats-server v2.15.2, built with `go install` (needs Go)
#   kafka-4.1.1/libs/*.jar      Apache Kafka 4.1.1 jars from Maven Central (needs Maven; runs on Java 17+)
# Idempotent: what is already there at the right version is left alone. Any failed step stops
# the script with a non-zero exit and says which step failed.
# Usage: bash deploy/local/install-servers.sh   (or: npm run servers:install)
set -euo pipefail

NATS_VERSION=2.15.2
KAFKA_VERSION=4.1.1
CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/kafka/pom.xml"

say() { printf 'install-servers: %s\n' "$*"; }
die() { printf 'install-servers: FAILED: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed; $2"; }

mkdir -p "$CACHE/bin"

# --- nats-server -------------------------------------------------------------------------
NATS_BIN="$CACHE/bin/nats-server"
if [[ -x "$NATS_BIN" ]] && "$NATS_BIN" --version 2>/dev/null | grep -q "v$NATS_VERSION\$"; then
  say "nats-server v$NATS_VERSION already at $NATS_BIN"
else
  need go "install Go 1.26+ (https://go.dev/dl/) to build nats-server, or put a nats-server v$NATS_VERSION binary at $NATS_BIN"
  say "building nats-server v$NATS_VERSION with go install (about a minute) ..."
  start=$SECONDS
  GOBIN="$CACHE/bin" CGO_ENABLED=0 go install "github.com/nats-io/nats-server/v2@v$NATS_VERSION" \
    || die "go install github.com/nats-io/nats-server/v2@v$NATS_VERSION failed (is the Go module proxy reachable?)"
  "$NATS_BIN" --version | grep -q "v$NATS_VERSION\$" || die "$NATS_BIN --version does not report v$NATS_VERSION"
  say "installed nats-server v$NATS_VERSION at $NATS_BIN in $((SECONDS - start)) s"
fi

# --- Kafka jars --------------------------------------------------------------------------
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
kafka_complete() {
  [[ -f "$1/kafka_2.13-$KAFKA_VERSION.jar" && -f "$1/kafka-server-$KAFKA_VERSION.jar" && -f "$1/kafka-tools-$KAFKA_VERSION.jar" ]] \
    && compgen -G "$1/log4j-slf4j-impl-*.jar" >/dev/null
}
if kafka_complete "$LIBS"; then
  say "Kafka $KAFKA_VERSION jars already in $LIBS ($(ls "$LIBS" | wc -l) jars)"
else
  need mvn "install Maven (Debian: apt-get install maven) to fetch the Kafka jars"
  [[ -f "$POM" ]] || die "$POM is missing"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central ..."
  start=$SECONDS
  # Into a fresh folder first, then renamed: a half-finished download never looks installed.
  tmp="$CACHE/kafka-$KAFKA_VERSION/libs.partial.$$"
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime \
    || die "mvn dependency:copy-dependencies failed (is Maven Central reachable?)"
  kafka_complete "$tmp" || die "Maven finished but $tmp lacks the Kafka or log4j jars"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  trap - EXIT
  say "installed $(ls "$LIBS" | wc -l) Kafka jars in $LIBS in $((SECONDS - start)) s"
fi

# --- Java (not installed here: a prerequisite) --------------------------------------------
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/java}"
[[ -n "$JAVA" && -x "$JAVA" ]] || JAVA="$(command -v java || true)"
[[ -n "$JAVA" ]] || die "java is not installed; Kafka needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
java_major="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
[[ "${java_major:-0}" -ge 17 ]] || die "$JAVA is Java ${java_major:-?}; Kafka $KAFKA_VERSION needs Java 17+"
say "java $java_major at $JAVA"
say "done: servers are in $CACHE"
