"""rabbitmq_edge_cases: answers real applications depend on, as RabbitMQ gives them (issue 9).

- queue.unbind / exchange.unbind are idempotent: a missing queue, exchange or binding is
  unbind-ok (cleanup code unbinds after an auto-delete cascade); the default exchange is 403.
- The default exchange refuses even a passive exchange.declare (403).
- A passive queue.declare of "" is 404 "no queue ''" (no name shortcut for declare).
- The responder of a direct reply-to RPC sees the reply queue: a passive declare of the
  rewritten reply_to answers declare-ok with one consumer while the requester consumes.
- x-priority on basic.consume must be an integer (406 with RabbitMQ's text).
- An exclusive consume on a single-active-consumer queue is 403 "in exclusive use".
- CC/BCC array elements that are not strings are ignored, not refused.
- channel_max bounds how many channels are open, not their numbers: with channel_max 3,
  channels 1, 2 and 65535 open and a fourth is 530 "number of channels opened (3) has reached
  the negotiated channel_max (3)".
- connection.update-secret answers update-secret-ok (the user database never expires, so the
  new secret is not checked) and the connection stays usable.

Run against any broker; every expectation was first recorded from RabbitMQ 3.10.8."""

import time

import pika

from _common import check, connect, fail, run, start_watchdog, unique_name, url_from_args

DEFAULT_X = "ACCESS_REFUSED - operation not permitted on the default exchange"
REPLY_TO = "amq.rabbitmq.reply-to"


def closed_with(conn, what, call):
    """Runs call(channel) on a fresh channel and returns (code, text) of the channel close."""
    ch = conn.channel()
    try:
        call(ch)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    fail(f"{what}: expected the channel to be closed, but it succeeded")


def expect_close(conn, what, call, code, text):
    got = closed_with(conn, what, call)
    check(got == (code, text), f"{what}: channel closed with {got}, expected {(code, text)}")
    print(f"{what}: {code} {text}")


def unbinds(conn, q, x):
    ch = conn.channel()
    for queue, exchange in [(q + ".nope", x), (q, x + ".nope"), (q + ".nope", x + ".nope"), (q, x)]:
        ch.queue_unbind(queue, exchange, "k")
    for dest, source in [(x + ".nope", x), (x, x + ".nope")]:
        ch.exchange_unbind(dest, source, "k")
    print("unbind of missing queue/exchange/binding: unbind-ok")
    expect_close(conn, "queue.unbind from ''", lambda c: c.queue_unbind(q, "", "k"), 403, DEFAULT_X)
    expect_close(conn, "exchange.unbind to ''", lambda c: c.exchange_unbind("", x, "k"), 403, DEFAULT_X)


def cascade_cleanup(conn, base):
    ch = conn.channel()
    q, x = base + ".auto-q", base + ".auto-x"
    ch.queue_declare(q, auto_delete=True)
    ch.exchange_declare(x, "direct", auto_delete=True)
    ch.queue_bind(q, x, "k")
    tag = ch.basic_consume(q, lambda *a: None, auto_ack=True)
    ch.basic_cancel(tag)
    got = closed_with(conn, "passive declare of the auto-deleted queue",
                      lambda c: c.queue_declare(q, passive=True))
    check(got[0] == 404, f"auto-delete queue still there after its consumer left: {got}")
    ch.queue_unbind(q, x, "k")
    print("cleanup unbind after the auto-delete cascade: unbind-ok")


def exclusive_unbind(url, conn, base):
    owner = connect(url, "owner connect")
    och = owner.channel()
    q = och.queue_declare("", exclusive=True).method.queue
    och.queue_bind(q, "amq.direct", base + ".k")
    ch = conn.channel()
    ch.queue_unbind(q, "amq.direct", base + ".never-bound")
    print("unbind of another connection's exclusive queue, no such binding: unbind-ok")
    got = closed_with(conn, "unbind of another connection's exclusive queue",
                      lambda c: c.queue_unbind(q, "amq.direct", base + ".k"))
    check(got[0] == 405, f"unbinding another connection's exclusive queue: {got}, expected 405")
    print(f"unbind of another connection's exclusive queue, bound: {got[0]}")
    owner.close()


def reply_queue(url, base):
    requester = connect(url, "requester connect")
    responder = connect(url, "responder connect")
    rch, sch = requester.channel(), responder.channel()
    rch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    rpc = base + ".rpc"
    sch.queue_declare(rpc, auto_delete=True)
    rch.basic_publish("", rpc, b"req", properties=pika.BasicProperties(reply_to=REPLY_TO))
    deadline = time.monotonic() + 10
    while True:
        method, props, _ = sch.basic_get(rpc, auto_ack=True)
        if method:
            break
        check(time.monotonic() < deadline, "the request never arrived")
        time.sleep(0.02)
    for passive in (True, False):
        ok = sch.queue_declare(props.reply_to, passive=passive).method
        check((ok.message_count, ok.consumer_count) == (0, 1),
              f"declare(passive={passive}) of the reply queue: {ok}, expected 0 messages, 1 consumer")
    print("responder's declare of the reply queue: declare-ok, 1 consumer")
    expect_close(responder, "passive declare of an unknown reply queue",
                 lambda c: c.queue_declare(REPLY_TO + ".bogus", passive=True),
                 404, f"NOT_FOUND - no queue '{REPLY_TO}.bogus' in vhost '/'")
    requester.close()
    deadline = time.monotonic() + 5
    while True:
        got = closed_with_or_ok(responder, lambda c: c.queue_declare(props.reply_to, passive=True))
        if got is not None:
            break
        check(time.monotonic() < deadline, "the reply queue outlived its requester")
        time.sleep(0.05)
    check(got[0] == 404, f"reply queue after the requester left: {got}, expected 404")
    print("reply queue after the requester left: 404")
    responder.close()


def closed_with_or_ok(conn, call):
    ch = conn.channel()
    try:
        call(ch)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    ch.close()
    return None


def consume_checks(conn, base):
    q = base + ".q"
    conn.channel().queue_declare(q, auto_delete=True)
    for value, type_name in [("high", "longstr"), (True, "bool")]:
        expect_close(conn, f"x-priority {value!r}",
                     lambda c, v=value: c.basic_consume(q, lambda *a: None, arguments={"x-priority": v}),
                     406, f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': "
                     f"\"expected integer, got {type_name}\"")
    sac = base + ".sac"
    conn.channel().queue_declare(sac, auto_delete=True, arguments={"x-single-active-consumer": True})
    expect_close(conn, "exclusive consume on a single-active-consumer queue",
                 lambda c: c.basic_consume(sac, lambda *a: None, exclusive=True),
                 403, f"ACCESS_REFUSED - queue '{sac}' in vhost '/' in exclusive use")
    expect_close(conn, "passive declare of ''", lambda c: c.queue_declare("", passive=True),
                 404, "NOT_FOUND - no queue '' in vhost '/'")
    expect_close(conn, "passive exchange.declare of ''", lambda c: c.exchange_declare("", passive=True),
                 403, DEFAULT_X)


def cc_checks(conn, base):
    q = base + ".cc"
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1", properties=pika.BasicProperties(headers={"CC": [1, 2]}))
    ch.basic_publish("", base + ".none", b"2", properties=pika.BasicProperties(headers={"CC": [q, 5]}))
    ch.basic_publish("", base + ".none", b"3", properties=pika.BasicProperties(headers={"BCC": [5, q]}))
    count = ch.queue_declare(q, passive=True).method.message_count
    check(count == 3, f"CC/BCC with non-string elements: {count} messages queued, expected 3")
    print("CC/BCC elements that are not strings: ignored")
    ch.queue_delete(q)


def channel_count(url):
    params = pika.URLParameters(url)
    params.channel_max = 3
    conn = pika.BlockingConnection(params)
    opened = [conn.channel(n).channel_number for n in (1, 2, 65535)]
    check(opened == [1, 2, 65535], f"opened channels {opened}")
    try:
        conn.channel(7)
        fail("a fourth channel opened with channel_max 3")
    except pika.exceptions.ConnectionClosedByBroker as exc:
        got = (exc.reply_code, exc.reply_text)
    want = (530, "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)")
    check(got == want, f"fourth channel: connection closed with {got}, expected {want}")
    print(f"channel_max 3: channels 1, 2, 65535 open; the fourth: {got[0]} {got[1]}")


def update_secret(url):
    conn = connect(url, "update-secret connect")
    for secret in (pika.URLParameters(url).credentials.password, "not-the-password"):
        conn.update_secret(secret, "token refresh")
    conn.channel().queue_declare("", exclusive=True)
    print("update-secret: update-secret-ok, connection still usable")
    conn.close()


def main():
    start_watchdog(40)
    url = url_from_args()
    base = unique_name("rabbitmq_edge_cases")
    conn = connect(url)
    setup = conn.channel()
    q, x = base + ".q0", base + ".x0"
    setup.queue_declare(q, auto_delete=False)
    setup.exchange_declare(x, "direct")
    unbinds(conn, q, x)
    cascade_cleanup(conn, base)
    exclusive_unbind(url, conn, base)
    reply_queue(url, base)
    consume_checks(conn, base)
    cc_checks(conn, base)
    channel_count(url)
    update_secret(url)
    setup.queue_delete(q)
    setup.exchange_delete(x)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
