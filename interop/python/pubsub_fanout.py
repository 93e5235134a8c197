"""pubsub_fanout: a fanout exchange with three server-named exclusive queues bound to it
(with different binding keys, which fanout ignores); every queue gets every message, once,
in publish order."""

from _common import check, connect, run, settle, start_watchdog, unique_name, url_from_args, wait_for

QUEUES = 3
MESSAGES = 10


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    exchange = unique_name("pubsub_fanout")
    ch.exchange_declare(exchange, exchange_type="fanout", durable=False, auto_delete=False)

    queues = []
    for i in range(QUEUES):
        ok = ch.queue_declare("", exclusive=True)
        name = ok.method.queue
        check(name != "", "queue.declare-ok of a server-named queue has an empty name")
        check(name not in queues, f"server-named queue {name!r} handed out twice")
        queues.append(name)
        ch.queue_bind(name, exchange, routing_key=f"ignored.{i}")
    print(f"server-named queues: {queues}")

    got = {q: [] for q in queues}
    for q in queues:
        ch.basic_consume(q, lambda _c, _m, _p, body, q=q: got[q].append(body.decode()), auto_ack=True)

    expected = [f"news {i}" for i in range(1, MESSAGES + 1)]
    for i, body in enumerate(expected):
        ch.basic_publish(exchange, f"any.key.{i}", body.encode())
    wait_for(conn, lambda: all(len(got[q]) >= MESSAGES for q in queues), 10,
             f"every queue to get {MESSAGES} messages (got {got})")
    settle(conn, 0.2)  # any further delivery would be a duplicate
    for q in queues:
        check(got[q] == expected, f"queue {q} got {got[q]}, expected {expected}")

    for q in queues:
        ch.queue_delete(q)
    ch.exchange_delete(exchange)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
