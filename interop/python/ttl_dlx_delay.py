"""ttl_dlx_delay: a delay queue built from TTL + dead-lettering. The delay queue has
x-message-ttl 1000 ms and dead-letters through the default exchange to a target queue.
- A message with expiration "100" alone in it is dead-lettered after ~100 ms (the lower of
  the message and queue TTLs applies).
- Messages a (no expiration), b ("200"), c ("5000"), d ("50") published together come out in
  publish order after ~1000 ms: expiry happens at the head of the queue only, so b and d wait
  behind a, and c is cut to the queue TTL.
Each dead-lettered message has no `expiration` property any more, and x-death holds one entry
{count 1, reason "expired", queue, exchange "", routing-keys [delay queue]} plus, when the
message had an expiration, "original-expiration" with its value; x-first-death-* match."""

import time

import pika

from _common import check, connect, run, settle, start_watchdog, unique_name, url_from_args, wait_for

QUEUE_TTL_MS = 1000


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    base = unique_name("ttl_dlx_delay")
    delay, target = f"{base}.delay", f"{base}.target"
    ch.queue_declare(target, exclusive=True)
    ch.queue_declare(delay, exclusive=True, arguments={
        "x-message-ttl": QUEUE_TTL_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
    })

    arrived = []  # (body, properties, monotonic time)

    def on_message(_ch, _method, props, body):
        arrived.append((body.decode(), props, time.monotonic()))

    ch.basic_consume(target, on_message, auto_ack=True)

    def publish(batch):
        for body, expiration in batch:
            ch.basic_publish("", delay, body.encode(), properties=pika.BasicProperties(expiration=expiration))
        return time.monotonic()

    def check_dead_lettered(body, props, expiration):
        what = f"dead-lettered {body!r}"
        check(props.expiration is None, f"{what} still has expiration {props.expiration!r}")
        headers = props.headers or {}
        deaths = headers.get("x-death")
        check(isinstance(deaths, list) and len(deaths) == 1, f"{what}: x-death is {deaths!r}, expected 1 entry")
        entry = {k: v for k, v in deaths[0].items() if k != "time"}
        want = {"count": 1, "reason": "expired", "queue": delay, "exchange": "", "routing-keys": [delay]}
        if expiration is not None:
            want["original-expiration"] = expiration
        check(entry == want, f"{what}: x-death[0] is {entry}, expected {want} (+ time)")
        check("time" in deaths[0], f"{what}: x-death[0] has no time")
        for key, value in (("x-first-death-queue", delay), ("x-first-death-reason", "expired"),
                           ("x-first-death-exchange", "")):
            check(headers.get(key) == value, f"{what}: {key} is {headers.get(key)!r}, expected {value!r}")

    # 1. The message TTL wins when it is lower than the queue TTL.
    sent = publish([("short", "100")])
    wait_for(conn, lambda: len(arrived) >= 1, 10, "the dead-lettered 'short' message")
    body, props, at = arrived[0]
    elapsed = at - sent
    print(f"'short' (expiration 100, queue TTL {QUEUE_TTL_MS}) dead-lettered after {elapsed * 1000:.0f} ms")
    check(body == "short", f"got {body!r}")
    check(0.08 <= elapsed < 0.8 * QUEUE_TTL_MS / 1000,
          f"'short' was dead-lettered after {elapsed * 1000:.0f} ms, expected ~100 ms")
    check_dead_lettered(body, props, "100")

    # 2. Expiry at the head only: everything comes out in publish order after the queue TTL.
    batch = [("a", None), ("b", "200"), ("c", "5000"), ("d", "50")]
    sent = publish(batch)
    wait_for(conn, lambda: len(arrived) >= 1 + len(batch), 10, "the dead-lettered batch")
    settle(conn, 0.2)
    got = [b for b, _, _ in arrived[1:]]
    check(got == [b for b, _ in batch], f"dead-lettered in order {got}, expected {[b for b, _ in batch]}")
    for (body, props, at), (_, expiration) in zip(arrived[1:], batch):
        elapsed = at - sent
        print(f"{body!r} (expiration {expiration}) dead-lettered after {elapsed * 1000:.0f} ms")
        check(elapsed >= 0.8 * QUEUE_TTL_MS / 1000,
              f"{body!r} was dead-lettered after {elapsed * 1000:.0f} ms, before the queue TTL "
              f"({QUEUE_TTL_MS} ms) had passed for the head message")
        check_dead_lettered(body, props, expiration)

    ch.queue_delete(delay)
    ch.queue_delete(target)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
