"""work_queue: a named, non-durable queue shared by two workers with prefetch 1 and manual
acks. 20 messages are each processed exactly once, no worker is ever given a second message
while it still holds one, and so the slow worker gets few messages and the fast one the rest
(fair dispatch)."""

from _common import check, connect, run, settle, start_watchdog, unique_name, url_from_args, wait_for

MESSAGES = 20
WORKERS = (("slow", 0.3), ("fast", 0.01))  # (name, seconds a message is held before its ack)


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    queue = unique_name("work_queue")
    ok = ch.queue_declare(queue, durable=False, exclusive=False, auto_delete=False)
    check(ok.method.queue == queue, f"queue.declare-ok names {ok.method.queue!r}, expected {queue!r}")

    got = {name: [] for name, _ in WORKERS}
    holding = {name: 0 for name, _ in WORKERS}
    acked = []
    channels = {}
    for name, delay in WORKERS:
        wch = conn.channel()
        wch.basic_qos(prefetch_count=1)
        channels[name] = wch

        def on_message(_ch, method, _props, body, name=name, delay=delay, wch=wch):
            text = body.decode()
            check(holding[name] == 0,
                  f"worker {name} was given {text!r} while still holding an unacked message "
                  f"(prefetch 1 not honoured; it got {got[name]} so far)")
            check(not method.redelivered, f"worker {name}: {text!r} has redelivered=true")
            holding[name] += 1
            got[name].append(text)

            def ack():
                holding[name] -= 1
                acked.append(text)
                wch.basic_ack(method.delivery_tag)

            conn.call_later(delay, ack)

        wch.basic_consume(queue, on_message, auto_ack=False, consumer_tag=f"worker-{name}")

    expected = [f"task {i}" for i in range(1, MESSAGES + 1)]
    for body in expected:
        ch.basic_publish("", queue, body.encode())
    wait_for(conn, lambda: len(acked) >= MESSAGES, 15,
             f"{MESSAGES} acks (acked so far: {len(acked)}, deliveries: {got})")
    settle(conn, 0.3)  # any further delivery would be a duplicate

    every = [m for name, _ in WORKERS for m in got[name]]
    dupes = sorted({m for m in every if every.count(m) > 1})
    check(not dupes, f"messages processed more than once: {dupes} (deliveries: {got})")
    check(sorted(every) == sorted(expected),
          f"processed {sorted(every)}, expected each of {expected} once")
    for name, _ in WORKERS:
        order = [expected.index(m) for m in got[name]]
        check(order == sorted(order), f"worker {name} got messages out of order: {got[name]}")
    print("distribution: " + ", ".join(f"{name}={len(got[name])}" for name, _ in WORKERS))
    check(len(got["slow"]) >= 1, f"the slow worker got nothing (deliveries: {got})")
    check(len(got["slow"]) <= 5,
          f"the slow worker got {len(got['slow'])} of {MESSAGES} messages: dispatch is not fair "
          f"(round-robin ignoring prefetch 1?); deliveries: {got}")

    ok = ch.queue_declare(queue, passive=True)
    check(ok.method.message_count == 0, f"queue still has {ok.method.message_count} messages ready")
    check(ok.method.consumer_count == len(WORKERS),
          f"queue.declare-ok consumer_count = {ok.method.consumer_count}, expected {len(WORKERS)}")

    for name, wch in channels.items():
        wch.basic_cancel(f"worker-{name}")
        wch.close()
    ok = ch.queue_delete(queue)
    check(ok.method.message_count == 0, f"queue.delete-ok message_count = {ok.method.message_count}")
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
