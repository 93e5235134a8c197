"""rpc_direct_reply_to: request/reply with RabbitMQ's direct reply-to. A server connection
consumes a request queue and answers each request by publishing to its reply_to (which the
broker has rewritten from "amq.rabbitmq.reply-to" to "amq.rabbitmq.reply-to.<opaque>"); the
client consumes the pseudo-queue "amq.rabbitmq.reply-to" in no-ack mode on the channel it
publishes the requests on, and matches replies by correlation_id. Publishing with
reply_to="amq.rabbitmq.reply-to" on a channel that does not consume it closes that channel
with 406 PRECONDITION_FAILED (the connection and its other channels stay usable)."""

import pika

from _common import check, connect, fail, run, settle, start_watchdog, unique_name, url_from_args, wait_for

REPLY_TO = "amq.rabbitmq.reply-to"
REQUESTS = 5
MISUSE_TEXT = "PRECONDITION_FAILED - fast reply consumer does not exist"


def main():
    start_watchdog(30)
    url = url_from_args()
    server = connect(url, "server connect")
    client = connect(url, "client connect")
    conns = [server, client]

    sch = server.channel()
    queue = unique_name("rpc_direct_reply_to")
    sch.queue_declare(queue, durable=False, exclusive=False, auto_delete=True)
    requests = []

    def on_request(_ch, method, props, body):
        text = body.decode()
        requests.append(text)
        check(props.reply_to is not None and props.reply_to.startswith(REPLY_TO + "."),
              f"request {text!r} arrived with reply_to={props.reply_to!r}; expected the broker to "
              f"rewrite {REPLY_TO!r} to {REPLY_TO + '.<opaque>'!r}")
        sch.basic_publish("", props.reply_to, text.upper().encode(),
                          properties=pika.BasicProperties(correlation_id=props.correlation_id))
        sch.basic_ack(method.delivery_tag)

    sch.basic_consume(queue, on_request, auto_ack=False)

    cch = client.channel()
    replies = {}

    def on_reply(_ch, method, props, body):
        check(not method.redelivered, f"reply {body!r} has redelivered=true")
        check(props.correlation_id not in replies, f"second reply for {props.correlation_id!r}: {body!r}")
        replies[props.correlation_id] = body.decode()

    cch.basic_consume(REPLY_TO, on_reply, auto_ack=True)

    def call(corr, text):
        cch.basic_publish("", queue, text.encode(),
                          properties=pika.BasicProperties(reply_to=REPLY_TO, correlation_id=corr))

    expected = {}
    for i in range(1, REQUESTS + 1):
        corr, text = f"req-{i}", f"request {i}"
        expected[corr] = text.upper()
        call(corr, text)
    wait_for(conns, lambda: len(replies) >= REQUESTS, 10, f"{REQUESTS} replies (got {replies})")
    check(replies == expected, f"replies {replies}, expected {expected}")
    print(f"{REQUESTS} replies by correlation id: ok")

    # Misuse: reply_to=amq.rabbitmq.reply-to on a channel without the reply consumer.
    mch = client.channel()
    mch.basic_publish("", queue, b"misuse", properties=pika.BasicProperties(reply_to=REPLY_TO))
    # publish is asynchronous: a synchronous method right after it meets the channel.close.
    try:
        mch.queue_declare(queue, passive=True)
        fail("publishing with reply_to=amq.rabbitmq.reply-to without consuming it did not close "
             "the channel (the next method on it succeeded)")
    except pika.exceptions.ChannelClosedByBroker as exc:
        closed = exc
    print(f"misuse: channel closed {closed.reply_code} {closed.reply_text!r}")
    check(closed.reply_code == 406, f"misuse closed the channel with {closed.reply_code}, expected 406")
    check(closed.reply_text == MISUSE_TEXT,
          f"misuse closed the channel with text {closed.reply_text!r}, expected {MISUSE_TEXT!r}")

    # The connection and the client's RPC channel still work.
    settle(conns, 0.1)
    check(client.is_open and cch.is_open, "the client connection or RPC channel closed after the misuse")
    call("after", "after misuse")
    wait_for(conns, lambda: "after" in replies, 10, "the reply after the misuse")
    check(replies["after"] == "AFTER MISUSE", f"reply after misuse: {replies['after']!r}")
    check("misuse" not in requests, "the misusing publish reached the request queue")
    check(len(requests) == REQUESTS + 1, f"server got {requests}")

    cch.close()
    client.close()
    sch.queue_delete(queue)
    server.close()
    print("ok")


if __name__ == "__main__":
    run(main)
