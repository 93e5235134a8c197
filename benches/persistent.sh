#!/usr/bin/env bash
# Persistent throughput with confirms, Warren beside RabbitMQ in the same run: 1 KiB persistent
# messages to one durable named queue, publisher confirms (window 100 per producer), manual acks
# with prefetch 100, for 1 producer / 1 consumer and 4 producers / 4 consumers (all on the one
# queue), DURATION seconds each, with the same load generator for both brokers.
#
#   bash benches/persistent.sh
#
# Environment:
#   WARREN_BIN    broker binary (default /var/tmp/warren-release/release/warren; a release build)
#   PERF_BIN      the load generator (default: WARREN_BIN)
#   RABBIT_URI    RabbitMQ to compare with (default amqp://guest:guest@127.0.0.1:5673/); if it
#                 does not answer, RabbitMQ 3.10 is started as
#                 docs/reference-brokers.md describes (and stopped again at the end); RABBIT=0 skips it
#   DURATION      seconds per run (default 30)
#   OUT           logs (default /var/tmp/warren-persistent-<time>)
#
# Prints a markdown table (also OUT/summary.md); every run's full output is in OUT.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WARREN_BIN=${WARREN_BIN:-/var/tmp/warren-release/release/warren}
PERF_BIN=${PERF_BIN:-$WARREN_BIN}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/}
RABBIT=${RABBIT:-1}
DURATION=${DURATION:-30}
OUT=${OUT:-/var/tmp/warren-persistent-$(date +%Y%m%d-%H%M%S)}
COUNT="python3 $HERE/amqp_queue_count.py"

[[ -x $WARREN_BIN ]] || { echo "persistent: no broker binary at $WARREN_BIN (set WARREN_BIN)" >&2; exit 2; }
[[ -x $PERF_BIN ]] || { echo "persistent: no perf binary at $PERF_BIN (set PERF_BIN)" >&2; exit 2; }
mkdir -p "$OUT"
WARREN_PID=
RABBIT_STARTED=
R=/tmp/rmq

rabbit_env() {
    env HOME=$R RABBITMQ_NODE_PORT=5673 RABBITMQ_MNESIA_BASE=$R/mnesia RABBITMQ_LOG_BASE=$R/log \
        RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_FEATURE_FLAGS_FILE=$R/ff \
        RABBITMQ_ENABLED_PLUGINS_FILE=$R/enabled_plugins RABBITMQ_DIST_PORT=25673 "$@"
}

cleanup() {
    if [[ -n $WARREN_PID ]]; then
        kill -TERM "$WARREN_PID" 2>/dev/null || true
        wait "$WARREN_PID" || true
    fi
    rm -rf "$OUT/data"
    if [[ -n $RABBIT_STARTED ]]; then
        (cd $R && rabbit_env rabbitmqctl stop > /dev/null 2>&1) || true
    fi
}
trap cleanup EXIT

wait_ready() { # uri seconds
    local deadline=$((SECONDS + $2))
    until $COUNT "$1" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "persistent: $1 not ready within $2 s" >&2; exit 1; }
        sleep 0.5
    done
}

# Warren on a fresh data dir and a free port.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WARREN_URI=amqp://guest:guest@127.0.0.1:$PORT/
WARREN_LISTEN=127.0.0.1:$PORT WARREN_DATA_DIR=$OUT/data WARREN_LOG_LEVEL=warn \
    "$WARREN_BIN" server > "$OUT/warren.log" 2>&1 &
WARREN_PID=$!
wait_ready "$WARREN_URI" 60

brokers=("warren $WARREN_URI")
if [[ $RABBIT == 1 ]]; then
    if ! $COUNT "$RABBIT_URI" > /dev/null 2>&1; then
        command -v rabbitmq-server > /dev/null || apt-get install -y rabbitmq-server
        echo "persistent: starting RabbitMQ on 5673 (see docs/reference-brokers.md)" >&2
        mkdir -p $R/mnesia $R/log && echo '[rabbitmq_management].' > $R/enabled_plugins
        chown -R rabbitmq:rabbitmq $R
        (cd $R && rabbit_env nohup rabbitmq-server > "$OUT/rabbitmq.log" 2>&1 &)
        RABBIT_STARTED=1
        wait_ready "$RABBIT_URI" 120
    fi
    version=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo "?")
    brokers+=("rabbitmq-$version $RABBIT_URI")
fi

# The final JSON line of a perf log, one field (dotted for nested), rounded.
field() {
    python3 - "$1" "$2" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith('{"scenario"')][-1]
value = json.loads(line)
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print("-" if value is None else (f"{value:,.0f}" if isinstance(value, (int, float)) and value >= 100 else f"{value}"))
PY
}
ms() { python3 -c "v='$1'.replace(',', ''); print('-' if v == '-' else f'{float(v) / 1000:.1f}')"; }

{
    echo "| broker | producers × consumers | sent msg/s | confirmed msg/s | received msg/s | consumer latency median / p99 (ms) | confirm latency median / p99 (ms) | load avg after |"
    echo "|---|---|---|---|---|---|---|---|"
} > "$OUT/summary.md"
for entry in "${brokers[@]}"; do
    read -r name uri <<< "$entry"
    for pc in "1 1" "4 4"; do
        read -r x y <<< "$pc"
        log=$OUT/$name-${x}x$y.log
        echo "persistent: $name, $x producers, $y consumers, ${DURATION}s" >&2
        "$PERF_BIN" perf throughput --uri "$uri" -x "$x" -y "$y" -s 1024 -f persistent -c 100 \
            -q 100 -u "perf-persistent-${x}x$y" -z "$DURATION" --json > "$log" 2>&1 ||
            { echo "persistent: run failed, see $log" >&2; tail -5 "$log" >&2; continue; }
        load=$(cut -d' ' -f1 /proc/loadavg)
        echo "| $name | $x × $y | $(field "$log" sent_rate) | $(field "$log" confirmed_rate) | $(field "$log" received_rate) | $(ms "$(field "$log" latency_us.median)") / $(ms "$(field "$log" latency_us.p99)") | $(ms "$(field "$log" confirm_latency_us.median)") / $(ms "$(field "$log" confirm_latency_us.p99)") | $load |" >> "$OUT/summary.md"
        sleep 3
    done
done
echo
echo "1 KiB persistent, durable queue, confirm window 100 per producer, manual acks, prefetch 100, ${DURATION}s per run; logs in $OUT"
echo
cat "$OUT/summary.md"
