#!/usr/bin/env bash
# Throughput of two Warren builds side by side, in one run: each round starts OLD and NEW in turn
# (a fresh data dir and a free port each) and measures both scenarios against it, so machine noise
# falls on both builds alike. Scenarios (1 producer, 1 consumer, `warren perf throughput`):
#   16 B transient, autoack
#   1 KiB persistent to a durable queue, confirms (window 100), manual acks, prefetch 100
#
#   bash benches/before-after.sh OLD_BIN NEW_BIN
#
# Environment: DURATION seconds per measurement (default 15), ROUNDS (default 3), PERF_BIN the
# load generator for both (default NEW_BIN), OUT for logs (default /var/tmp/warren-before-after-<time>).
# Prints a markdown table: median received msg/s per build and scenario, and new/old.
set -euo pipefail

[[ $# == 2 ]] || { echo "usage: $0 OLD_BIN NEW_BIN" >&2; exit 2; }
OLD=$1
NEW=$2
for b in "$OLD" "$NEW"; do
    [[ -x $b ]] || { echo "before-after: no broker binary at $b" >&2; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
PERF_BIN=${PERF_BIN:-$NEW}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/var/tmp/warren-before-after-$(date +%Y%m%d-%H%M%S)}
COUNT="python3 $HERE/amqp_queue_count.py"
mkdir -p "$OUT"
PID=

stop() {
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
    fi
    rm -rf "$OUT/data"
}
trap stop EXIT

start() { # binary -> sets PID and URI
    local port deadline
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    URI=amqp://guest:guest@127.0.0.1:$port/
    rm -rf "$OUT/data"
    WARREN_LISTEN=127.0.0.1:$port WARREN_DATA_DIR=$OUT/data WARREN_LOG_LEVEL=warn \
        "$1" server >> "$OUT/broker.log" 2>&1 &
    PID=$!
    deadline=$((SECONDS + 60))
    until $COUNT "$URI" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "before-after: $1 not ready within 60 s" >&2; exit 1; }
        sleep 0.3
    done
}

received() { # log -> received_rate of the final JSON line
    python3 -c '
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("{\"scenario\"")][-1]
print(json.loads(line)["received_rate"])' "$1"
}

scenarios=(
    "16B-autoack|-s 16 -a"
    "1KiB-persistent-confirms|-s 1024 -f persistent -c 100 -q 100 -u before-after-durable"
)
for ((round = 1; round <= ROUNDS; round++)); do
    for build in old new; do
        bin=$OLD
        [[ $build == new ]] && bin=$NEW
        start "$bin"
        for s in "${scenarios[@]}"; do
            name=${s%%|*}
            flags=${s#*|}
            log=$OUT/$build-$name-$round.log
            echo "before-after: round $round/$ROUNDS, $build, $name, ${DURATION}s" >&2
            # shellcheck disable=SC2086 # flags are words on purpose
            "$PERF_BIN" perf throughput --uri "$URI" -x 1 -y 1 $flags -z "$DURATION" --json \
                > "$log" 2>&1 || { echo "before-after: run failed, see $log" >&2; exit 1; }
            received "$log" >> "$OUT/$build-$name.rates"
            sleep 2
        done
        stop
    done
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import statistics, sys
out, rounds = sys.argv[1], sys.argv[2]
print(f"| scenario (1p1c) | old msg/s (median of {rounds}) | new msg/s (median of {rounds}) | new/old | old runs | new runs |")
print("|---|---|---|---|---|---|")
for name in ["16B-autoack", "1KiB-persistent-confirms"]:
    rates = {}
    for build in ["old", "new"]:
        rates[build] = [float(l) for l in open(f"{out}/{build}-{name}.rates")]
    o, n = statistics.median(rates["old"]), statistics.median(rates["new"])
    runs = lambda b: " / ".join(f"{r:,.0f}" for r in rates[b])
    print(f"| {name} | {o:,.0f} | {n:,.0f} | {n / o:.3f} | {runs('old')} | {runs('new')} |")
PY
echo
echo "logs in $OUT; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
