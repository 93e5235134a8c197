"""delivery_limit_poison: poison-message handling with a delivery limit. A queue with
x-delivery-limit 2 and a dead-letter exchange gets a poison message and a good one; the
consumer nacks the poison message with requeue=true every time and acks the good one. The
poison message is delivered 1 + 2 times (redelivered=true and an x-delivery-count header of
1, 2 on the redeliveries), then dead-lettered with x-death reason "delivery_limit" instead of
being requeued again; the good message is processed once.

RabbitMQ 3.10 has delivery limits on quorum queues only, so this scenario declares a
*quorum* queue (durable, named) to pass against RabbitMQ. Warren offers x-delivery-limit on
every queue type and will run this scenario against a classic queue too (QUEUE_ARGS; see
docs/compatibility.md once written). RabbitMQ 4.3 changed what counts: an AMQP 0-9-1
nack/reject with requeue=true no longer increments the delivery count there, so this loop
would never hit the limit on 4.3; this scenario follows 3.10-4.2 ("every requeue counts")."""

import pika

from _common import check, connect, run, settle, start_watchdog, unique_name, url_from_args, wait_for

LIMIT = 2
QUEUE_ARGS = {"x-queue-type": "quorum"}  # RabbitMQ 3.10: delivery limits need a quorum queue


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    base = unique_name("delivery_limit_poison")
    queue, dlq = f"{base}.work", f"{base}.dlq"
    ch.queue_declare(dlq, exclusive=True)
    # Quorum queues are always durable, never exclusive or auto-delete: deleted explicitly below.
    ch.queue_declare(queue, durable=True, exclusive=False, auto_delete=False, arguments={
        **QUEUE_ARGS,
        "x-delivery-limit": LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dlq,
    })

    deliveries = []  # (body, redelivered, x-delivery-count)

    def on_message(_ch, method, props, body):
        text = body.decode()
        count = (props.headers or {}).get("x-delivery-count")
        deliveries.append((text, method.redelivered, None if count is None else int(count)))
        if text == "poison":
            ch.basic_nack(method.delivery_tag, multiple=False, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    dead = []
    ch.basic_consume(dlq, lambda _c, _m, props, body: dead.append((body.decode(), props)), auto_ack=True)
    ch.basic_consume(queue, on_message, auto_ack=False, consumer_tag="worker")
    ch.basic_publish("", queue, b"poison")
    ch.basic_publish("", queue, b"good")
    wait_for(conn, lambda: dead, 15, f"the poison message in the dead-letter queue (deliveries: {deliveries})")
    settle(conn, 0.3)
    print(f"deliveries (body, redelivered, x-delivery-count): {deliveries}")

    poison = [(r, c) for b, r, c in deliveries if b == "poison"]
    want = [(False, None)] + [(True, n) for n in range(1, LIMIT + 1)]
    check(poison == want, f"poison deliveries (redelivered, x-delivery-count) {poison}, expected {want}")
    good = [d for d in deliveries if d[0] == "good"]
    check(len(good) == 1, f"the good message was delivered {len(good)} times: {good}")

    check(len(dead) == 1 and dead[0][0] == "poison", f"dead-letter queue got {[b for b, _ in dead]}")
    headers = dead[0][1].headers or {}
    deaths = headers.get("x-death")
    check(isinstance(deaths, list) and len(deaths) == 1, f"x-death is {deaths!r}, expected 1 entry")
    entry = {k: v for k, v in deaths[0].items() if k != "time"}
    want_entry = {"count": 1, "reason": "delivery_limit", "queue": queue, "exchange": "", "routing-keys": [queue]}
    check(entry == want_entry, f"x-death[0] is {entry}, expected {want_entry} (+ time)")
    for key, value in (("x-first-death-queue", queue), ("x-first-death-reason", "delivery_limit"),
                       ("x-first-death-exchange", "")):
        check(headers.get(key) == value, f"{key} is {headers.get(key)!r}, expected {value!r}")
    print(f"dead-lettered headers: {headers}")

    ch.basic_cancel("worker")
    ok = ch.queue_delete(queue)
    check(ok.method.message_count == 0, f"work queue still had {ok.method.message_count} messages")
    ch.queue_delete(dlq)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
