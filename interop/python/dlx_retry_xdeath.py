"""dlx_retry_xdeath: the retry loop built from dead-lettering. A consumer of the work queue
rejects (requeue=false) a message; the work queue dead-letters it to a "retry" direct
exchange, which routes it (by its unchanged routing key) to a wait queue with a message TTL;
when the TTL expires the wait queue dead-letters it back to the work queue through the
default exchange. After RETRIES rounds the consumer acks it. Every delivery's x-death is
checked: one entry per {queue, reason}, most recent first, `count` = number of rounds so far.

RabbitMQ 3.10 writes x-death and x-first-death-{queue,reason,exchange}; 3.13+ and 4.x also
write x-last-death-{queue,reason,exchange}, which Warren (targeting 4.x) may add: those are
not checked here. Neither is the order of the keys inside an x-death entry."""

import datetime

import pika

from _common import check, connect, run, settle, start_watchdog, unique_name, url_from_args, wait_for

RETRIES = 3
WAIT_TTL_MS = 100


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    base = unique_name("dlx_retry_xdeath")
    work, wait, retry = f"{base}.work", f"{base}.wait", f"{base}.retry"

    ch.exchange_declare(retry, exchange_type="direct", durable=False, auto_delete=False)
    ch.queue_declare(wait, exclusive=True, arguments={
        "x-message-ttl": WAIT_TTL_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work,
    })
    ch.queue_bind(wait, retry, routing_key=work)
    ch.queue_declare(work, exclusive=True, arguments={"x-dead-letter-exchange": retry})

    deliveries = []  # (redelivered, properties)

    def on_message(_ch, method, props, body):
        check(body == b"job", f"delivery {len(deliveries) + 1} has body {body!r}")
        deliveries.append((method.redelivered, props))
        if len(deliveries) <= RETRIES:
            ch.basic_reject(method.delivery_tag, requeue=False)
        else:
            ch.basic_ack(method.delivery_tag)

    ch.basic_consume(work, on_message, auto_ack=False, consumer_tag="worker")
    ch.basic_publish("", work, b"job", properties=pika.BasicProperties(
        message_id="job-1", headers={"job-id": "42"}))
    wait_for(conn, lambda: len(deliveries) >= RETRIES + 1, 15,
             f"{RETRIES + 1} deliveries of the job (got {len(deliveries)})")
    settle(conn, 3 * WAIT_TTL_MS / 1000)
    check(len(deliveries) == RETRIES + 1, f"the acked job came back: {len(deliveries)} deliveries")

    def entry_text(e):
        return {k: v for k, v in e.items() if k != "time"}

    first_times = {}
    for n, (redelivered, props) in enumerate(deliveries):
        what = f"delivery {n + 1} (after {n} rounds)"
        headers = props.headers or {}
        check(props.message_id == "job-1", f"{what}: message_id {props.message_id!r}, expected 'job-1'")
        check(headers.get("job-id") == "42", f"{what}: header job-id {headers.get('job-id')!r}")
        check(not redelivered, f"{what}: redelivered=true on a dead-lettered message")
        if n == 0:
            check("x-death" not in headers, f"{what}: unexpected x-death {headers.get('x-death')!r}")
            continue
        deaths = headers.get("x-death")
        check(isinstance(deaths, list) and len(deaths) == 2,
              f"{what}: x-death should be a list of 2 entries, got {deaths!r}")
        expected = [
            {"count": n, "reason": "expired", "queue": wait, "exchange": retry, "routing-keys": [work]},
            {"count": n, "reason": "rejected", "queue": work, "exchange": "", "routing-keys": [work]},
        ]
        for i, (got, want) in enumerate(zip(deaths, expected)):
            check(isinstance(got, dict), f"{what}: x-death[{i}] is not a table: {got!r}")
            check(entry_text(got) == want, f"{what}: x-death[{i}] is {entry_text(got)}, expected {want}")
            check(isinstance(got.get("time"), datetime.datetime),
                  f"{what}: x-death[{i}] time is {got.get('time')!r}, expected a timestamp")
            key = (got["queue"], got["reason"])
            first_times.setdefault(key, got["time"])
            check(got["time"] == first_times[key],
                  f"{what}: x-death[{i}] time changed from {first_times[key]} to {got['time']} "
                  f"(it is the time of the first death for this queue and reason)")
        for key, want in (("x-first-death-queue", work), ("x-first-death-reason", "rejected"),
                          ("x-first-death-exchange", "")):
            check(headers.get(key) == want, f"{what}: {key} is {headers.get(key)!r}, expected {want!r}")
        print(f"{what}: x-death (queue, reason, count) {[(d['queue'].rsplit('.', 1)[1], d['reason'], int(d['count'])) for d in deaths]}")

    print(f"last delivery's headers: {deliveries[-1][1].headers}")
    ch.basic_cancel("worker")
    ch.queue_delete(work)
    ch.queue_delete(wait)
    ch.exchange_delete(retry)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
