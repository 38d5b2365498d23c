#!/usr/bin/env bash
# Runs the whole system on this machine: a local Kafka-protocol broker (tansu, in memory), the
# topics (every topic of crates/events/src/topics.rs, created by the console tool), and every
# service with the order generator on. Ctrl-C stops everything cleanly.
#
# Knobs (environment): KAFKA_PORT (9092), POSTGRES_PORT (5433), ORDER_GENERATOR_RATE (2 orders/s),
# SENSOR_COUNT (20 sensors, each reporting every SENSOR_INTERVAL_MS, 1000), PROFILE (dev|release), OTEL_EXPORTER_OTLP_ENDPOINT (unset: no trace export), RUST_LOG (info).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KAFKA_PORT="${KAFKA_PORT:-9092}"
POSTGRES_PORT="${POSTGRES_PORT:-5433}"
PROFILE="${PROFILE:-dev}"
RUN_DIR="$ROOT/.run"
LOGS="$RUN_DIR/logs"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
# name http-port ops-port
SERVICES=("order 8080 9180" "payment - 9181" "notification 8082 9182" "inventory 8083 9183"
  "stream-processor 8084 9184" "accounts 8085 9185" "sensor 8086 9186" "alerting 8087 9187"
  "dashboard 8090 9190")

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'run-local: %s\n' "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pids=()
broker_pid=""
postgres_started=""
cleanup() {
  trap - INT TERM EXIT
  step "stopping services (SIGTERM, graceful drain)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$postgres_started" ]; then
    step "stopping PostgreSQL"
    scripts/postgres.sh stop "$RUN_DIR/postgres" || true
  fi
  if [ -n "$broker_pid" ]; then
    step "stopping broker"
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  step "stopped; logs are in ${LOGS#"$ROOT"/}/"
}

step "installing the broker and PostgreSQL (pinned, into .tools/)"
scripts/install-tools.sh broker
scripts/install-tools.sh postgres
TANSU="$ROOT/.tools/bin/tansu"

step "building the services (profile $PROFILE)"
cargo build --workspace --bins --profile "$PROFILE"
BIN="$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"

for s in "${SERVICES[@]}"; do
  read -r _ http ops <<<"$s"
  for p in $http $ops "$KAFKA_PORT"; do
    [ "$p" = - ] && continue
    port_busy "$p" && die "port $p is in use (is another run still going? set KAFKA_PORT for the broker)"
  done
done
port_busy "$POSTGRES_PORT" && die "port $POSTGRES_PORT is in use (set POSTGRES_PORT)"

mkdir -p "$LOGS"
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

step "starting the broker on $BOOTSTRAP"
# Each process gets its own session, so a Ctrl-C reaches only this script, which then stops the
# services before the broker they drain into.
setsid env -u OTEL_EXPORTER_OTLP_ENDPOINT "$TANSU" broker \
  --listener-url "tcp://$BOOTSTRAP" --advertised-listener-url "tcp://$BOOTSTRAP" \
  >"$LOGS/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do port_busy "$KAFKA_PORT" && break; sleep 0.1; done
port_busy "$KAFKA_PORT" || die "the broker did not start; see $LOGS/broker.log"

step "starting PostgreSQL on 127.0.0.1:$POSTGRES_PORT (a throwaway cluster in .run/postgres)"
scripts/postgres.sh wipe "$RUN_DIR/postgres"
DATABASE_URL="$(scripts/postgres.sh start "$RUN_DIR/postgres" "$POSTGRES_PORT")"
postgres_started=1

step "creating topics"
env -u OTEL_EXPORTER_OTLP_ENDPOINT "$BIN/kafka-console" -b "$BOOTSTRAP" topics create --all \
  | sed 's/^/    /' >&2

step "starting services"
for s in "${SERVICES[@]}"; do
  read -r name http ops <<<"$s"
  # The short-wait profile (README, "Benchmarks"): the local broker may hold a waiting fetch for
  # its whole wait, where a real Kafka answers as soon as data arrives.
  setsid env KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" KAFKA_SESSION_TIMEOUT_MS=6000 \
    KAFKA_DRAIN_TIMEOUT_MS=5000 KAFKA_DELIVERY_TIMEOUT_MS=5000 KAFKA_FETCH_WAIT_MAX_MS=10 \
    OPS_ADDR="127.0.0.1:$ops" HTTP_ADDR="127.0.0.1:${http/-/0}" \
    ORDER_GENERATOR_RATE="${ORDER_GENERATOR_RATE:-2}" DATABASE_URL="$DATABASE_URL" \
    SENSOR_COUNT="${SENSOR_COUNT:-20}" SENSOR_INTERVAL_MS="${SENSOR_INTERVAL_MS:-1000}" \
    "$BIN/$name" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
done

step "waiting until every service is ready"
for s in "${SERVICES[@]}"; do
  read -r name _ ops <<<"$s"
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 \
    || die "$name is not ready: $(curl -sS "http://127.0.0.1:$ops/readyz" 2>&1); see $LOGS/$name.log"
done

CONSOLE="${BIN#"$ROOT"/}/kafka-console"
[ "$KAFKA_PORT" = 9092 ] || CONSOLE="$CONSOLE -b $BOOTSTRAP"
cat >&2 <<MSG

  Everything is up. Kafka at $BOOTSTRAP, orders generated at ${ORDER_GENERATOR_RATE:-2}/s.

  Sensor dashboard:   open http://localhost:8090/   (${SENSOR_COUNT:-20} simulated sensors)
  Raise an alert by hand (sensor 999 is not simulated: it stays hot until a cool reading):
                      curl -sX POST localhost:8086/readings -H 'content-type: application/json' \\
                        -d '{"sensor_id":999,"temperature":35.5,"humidity":40}'

  Place an order:     curl -sX POST localhost:8080/orders -H 'content-type: application/json' \\
                        -d '{"user_id":18,"amount":120.5,"items":[{"sku":"SKU-KEYBOARD","quantity":1}]}'
  Notifications:      curl -s 'localhost:8082/notifications?limit=5'
  Stock:              curl -s localhost:8083/stock
  The seeds' numbers demo, in two more terminals:
                      $CONSOLE produce -t input-topic -k demo
                      $CONSOLE consume -t output-topic --follow --from end --pretty
  A key's aggregate:  curl -s localhost:8084/state/<key>
  Payments per user and minute:
                      $CONSOLE consume -t payment-windows --follow
  Accounts:           open http://localhost:8085/ to register and log in; the events arrive on
                      $CONSOLE consume -t login-events --follow --from end
                      (PostgreSQL: psql -h 127.0.0.1 -p $POSTGRES_PORT -U postgres -c 'select * from events')
  Ops (per service):  order :9180  payment :9181  notification :9182  inventory :9183
                      stream-processor :9184  accounts :9185  sensor :9186  alerting :9187
                      dashboard :9190    /healthz  /readyz  /metrics
  Logs:               tail -f ${LOGS#"$ROOT"/}/*.log

  Ctrl-C stops everything.
MSG

# Wait until Ctrl-C, or until a service dies on its own.
wait -n "${pids[@]}" || true
step "a service exited; shutting the rest down"
