#!/usr/bin/env bash
# Backlog: fill one durable queue with N persistent 1 KiB messages (confirms, no consumer),
# restart the broker, time its recovery, then drain the queue; sample the broker's RSS every
# second throughout. Answers "is memory bounded with a deep backlog, how long does a restart
# take, how fast does a recovered backlog drain".
#
#   bash benches/backlog.sh                 # N = 10,000,000
#   N=100000 bash benches/backlog.sh        # a quick check of the script itself
#
# Environment:
#   WARREN_BIN  broker binary (default /var/tmp/warren-release/release/warren; use a release build)
#   PERF_BIN    the load generator (`warren perf throughput`; default: WARREN_BIN)
#   N           messages (default 10000000)
#   SIZE        body bytes (default 1024)
#   STOP        how the broker is stopped before the restart: TERM (default) or KILL
#   OUT         directory for the data dir, logs and rss.csv (default /var/tmp/warren-backlog-<time>)
#   KEEP        1: keep OUT (with the data dir) afterwards; default: delete the data dir only
#   BODY        zeros (default; compress to nothing) or random (incompressible: the real disk cost)
#
# Output: OUT/rss.csv (epoch seconds, phase, VmRSS KiB), OUT/broker.log, the perf logs, and a
# markdown summary on stdout (also OUT/summary.md).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WARREN_BIN=${WARREN_BIN:-/var/tmp/warren-release/release/warren}
PERF_BIN=${PERF_BIN:-$WARREN_BIN}
N=${N:-10000000}
SIZE=${SIZE:-1024}
STOP=${STOP:-TERM}
OUT=${OUT:-/var/tmp/warren-backlog-$(date +%Y%m%d-%H%M%S)}
KEEP=${KEEP:-0}
QUEUE=backlog
COUNT="python3 $HERE/amqp_queue_count.py"

[[ -x $WARREN_BIN ]] || { echo "backlog: no broker binary at $WARREN_BIN (set WARREN_BIN)" >&2; exit 2; }
[[ -x $PERF_BIN ]] || { echo "backlog: no perf binary at $PERF_BIN (set PERF_BIN)" >&2; exit 2; }
mkdir -p "$OUT"
DATA=$OUT/data
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URI=amqp://guest:guest@127.0.0.1:$PORT/
PHASE_FILE=$OUT/phase
RSS=$OUT/rss.csv
echo "epoch_s,phase,rss_kib" > "$RSS"
BROKER_PID=
SAMPLER_PID=

cleanup() {
    if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
    if [[ -n $BROKER_PID ]]; then kill -KILL "$BROKER_PID" 2>/dev/null || true; fi
    [[ $KEEP == 1 ]] || rm -rf "$DATA"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}s')"; }

start_broker() {
    WARREN_LISTEN=127.0.0.1:$PORT WARREN_DATA_DIR=$DATA WARREN_LOG_LEVEL=${WARREN_LOG_LEVEL:-info} \
        "$WARREN_BIN" server >> "$OUT/broker.log" 2>&1 &
    BROKER_PID=$!
    # One sampler per broker process: the phase comes from PHASE_FILE at each tick.
    (
        while [[ -r /proc/$BROKER_PID/status ]]; do
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || true)
            [[ -n $rss ]] && echo "$(date +%s.%N),$(cat "$PHASE_FILE"),$rss" >> "$RSS"
            sleep 1
        done
    ) &
    SAMPLER_PID=$!
}

# Waits until the broker answers a handshake (and, with a count, until a passive declare shows
# at least $2 messages); prints seconds since $1, or "never" after $3 seconds.
wait_for() {
    local t0=$1 want=${2:-} deadline=$((SECONDS + ${3:-3600})) got
    while ((SECONDS < deadline)); do
        kill -0 "$BROKER_PID" 2>/dev/null || { echo "backlog: broker exited; see $OUT/broker.log" >&2; exit 1; }
        if [[ -z $want ]]; then
            $COUNT "$URI" > /dev/null 2>&1 && { elapsed "$t0" "$(now)"; return; }
        elif got=$($COUNT "$URI" $QUEUE 2>/dev/null) && ((got >= want)); then
            elapsed "$t0" "$(now)"
            return
        fi
        sleep 0.1
    done
    [[ -n $want ]] && { echo never; return; }
    echo "backlog: broker not ready within an hour" >&2
    exit 1
}

stop_broker() {
    kill -"$STOP" "$BROKER_PID"
    wait "$BROKER_PID" || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    BROKER_PID=
    SAMPLER_PID=
}

# The last field $2 of the final JSON line of perf log $1.
json() { python3 -c "import json,sys; print(json.loads([l for l in open('$1') if l.startswith('{\"scenario\"')][-1])['$2'])"; }
rss_max() { awk -F, -v p="$1" '$2 == p && $3 > m {m = $3} END {printf "%.0f", m / 1024}' "$RSS"; }

echo "backlog: N=$N size=$SIZE broker=$WARREN_BIN out=$OUT" >&2
echo idle > "$PHASE_FILE"
start_broker
wait_for "$(now)" > /dev/null
echo publish > "$PHASE_FILE"
body_flags=()
[[ ${BODY:-zeros} == random ]] && body_flags=(--random-body)
"$PERF_BIN" perf throughput --uri "$URI" -x 1 -y 0 -s "$SIZE" -f persistent -c 100 -C "$N" \
    -u $QUEUE --auto-delete false -e "" "${body_flags[@]}" --json > "$OUT/publish.log" 2>&1
confirmed=$(json "$OUT/publish.log" confirmed)
publish_s=$(json "$OUT/publish.log" duration_s)
publish_rate=$(json "$OUT/publish.log" confirmed_rate)
echo settled > "$PHASE_FILE"
sleep 5
before=$($COUNT "$URI" $QUEUE)
disk_full=$(du -sh "$DATA" 2>/dev/null | cut -f1)

echo stop > "$PHASE_FILE"
t_stop=$(now)
stop_broker
stop_s=$(elapsed "$t_stop" "$(now)")
echo restart > "$PHASE_FILE"
t_start=$(now)
start_broker
ready_s=$(wait_for "$t_start")
# Recovery may continue after the listener is up: give the count ${COUNT_WAIT:-600} s more.
counted_s=$(wait_for "$t_start" "$confirmed" "${COUNT_WAIT:-600}")
after=$($COUNT "$URI" $QUEUE 2>/dev/null || echo 0)

echo drain > "$PHASE_FILE"
drain_flags=(-D "$after")
"$PERF_BIN" perf throughput --help 2>/dev/null | grep -q -- --cmessages || drain_flags=()
"$PERF_BIN" perf throughput --uri "$URI" -x 0 -y 1 -q 100 -s "$SIZE" -f persistent \
    -u $QUEUE --auto-delete false -e "" "${drain_flags[@]}" --json > "$OUT/drain.log" 2>&1
drained=$(json "$OUT/drain.log" received)
drain_s=$(json "$OUT/drain.log" duration_s)
# Without -D the run stops after 2 s without deliveries: that tail is not draining.
((${#drain_flags[@]})) || drain_s=$(python3 -c "print(max($drain_s - 2, 1e-9))")
drain_rate=$(python3 -c "print(round($drained / $drain_s))")
left=$($COUNT "$URI" $QUEUE)
echo "done" > "$PHASE_FILE"
stop_broker
disk=$(du -sh "$DATA" 2>/dev/null | cut -f1)

{
    echo "| N | body | publish (confirmed) | confirmed msg/s | RSS max publishing | queue before stop | stop ($STOP) | restart: AMQP up | restart: count back | count after restart | drained | drain msg/s | RSS max draining | left | data dir full / drained |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    echo "| $N | $SIZE B | $confirmed in ${publish_s}s | $publish_rate | $(rss_max publish) MiB | $before | $stop_s | $ready_s | $counted_s | $after | $drained in ${drain_s}s | $drain_rate | $(rss_max drain) MiB | $left | $disk_full / $disk |"
    echo
    echo "RSS max overall: $(awk -F, 'NR > 1 && $3 > m {m = $3} END {printf "%.0f", m / 1024}' "$RSS") MiB (samples: $RSS)"
} | tee "$OUT/summary.md"
[[ $after -ge $confirmed && $drained -eq $after && $left -eq 0 ]] || { echo "backlog: counts do not add up" >&2; exit 1; }
