"""nack_requeue_order: messages 1..5 are fetched with basic.get (no ack; get-ok's
message_count counts down 4..0), then nacked with requeue=true one by one, message 3 first
and the others in a scrambled order. They come back (to a consumer) in their original order
1..5, each with redelivered=true, and once acked the queue is empty."""

from _common import check, connect, run, settle, start_watchdog, url_from_args, wait_for

MESSAGES = 5
NACK_ORDER = [3, 5, 1, 4, 2]


def main():
    import time

    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    for i in range(1, MESSAGES + 1):
        ch.basic_publish("", queue, f"msg {i}".encode())

    tags = {}
    for i in range(1, MESSAGES + 1):
        deadline = time.monotonic() + 5
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=False)
            if method is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        check(method is not None, f"basic.get {i} returned get-empty")
        text = body.decode()
        check(text == f"msg {i}", f"basic.get {i} returned {text!r}, expected 'msg {i}'")
        check(not method.redelivered, f"{text!r} has redelivered=true on first delivery")
        check(method.message_count == MESSAGES - i,
              f"get-ok for {text!r} has message_count {method.message_count}, expected {MESSAGES - i}")
        tags[i] = method.delivery_tag
    check(sorted(tags.values()) == list(tags.values()) and len(set(tags.values())) == MESSAGES,
          f"delivery tags are not increasing: {tags}")
    method, _props, _body = ch.basic_get(queue, auto_ack=False)
    check(method is None, "basic.get returned a sixth message")

    for i in NACK_ORDER:
        ch.basic_nack(tags[i], multiple=False, requeue=True)
    print(f"nacked (requeue) in order {NACK_ORDER}")

    got = []

    def on_message(_ch, method, _props, body):
        got.append((body.decode(), method.redelivered))
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message, auto_ack=False, consumer_tag="redeliveries")
    wait_for(conn, lambda: len(got) >= MESSAGES, 10, f"{MESSAGES} redeliveries (got {got})")
    settle(conn, 0.2)
    want = [(f"msg {i}", True) for i in range(1, MESSAGES + 1)]
    check(got == want, f"redeliveries (body, redelivered) {got}, expected {want}")
    print(f"redelivered in order: {[b for b, _ in got]}")

    ch.basic_cancel("redeliveries")
    ok = ch.queue_declare(queue, passive=True)
    check(ok.method.message_count == 0, f"queue still has {ok.method.message_count} messages ready")
    ch.queue_delete(queue)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
