"""sac_failover_order: a single-active-consumer queue fails over in order (issue 9).

Consumer A (prefetch 1) holds m1 unacknowledged; consumer B waits on another connection.
A's channel closes (pika's close cancels A's consumer first, then closes the channel):
B must get m1 (redelivered) first, then m2..m5, in order. Then the same when A's connection
drops without a goodbye. Run against any broker; RabbitMQ 3.10.8 gives exactly this."""

import pika

from _common import check, connect, run, start_watchdog, unique_name, url_from_args, wait_for

COUNT = 5


def failover(url, how):
    queue = unique_name("sac_failover_order", how)
    a_conn, b_conn = connect(url, "A connect"), connect(url, "B connect")
    a, b = a_conn.channel(), b_conn.channel()
    a.queue_declare(queue, auto_delete=False, arguments={"x-single-active-consumer": True})
    a.basic_qos(prefetch_count=1)
    b.basic_qos(prefetch_count=10)
    held = []
    a.basic_consume(queue, lambda _c, m, _p, body: held.append(body), auto_ack=False)
    got = []

    def on_b(_ch, method, _props, body):
        got.append((body.decode(), method.redelivered))
        b.basic_ack(method.delivery_tag)

    b.basic_consume(queue, on_b, auto_ack=False)
    for i in range(1, COUNT + 1):
        a.basic_publish("", queue, f"m{i}".encode())
    wait_for([a_conn, b_conn], lambda: held, 10, "A to receive m1")
    check(held == [b"m1"] and not got, f"before the failover A holds {held}, B got {got}")
    if how == "close":
        a.close()
        a_conn.close()
    else:
        a_conn._impl._transport._sock.close()  # the TCP connection drops, no close handshake
    wait_for(b_conn, lambda: len(got) >= COUNT, 10, f"B to receive {COUNT} messages (got {got})")
    want = [("m1", True)] + [(f"m{i}", False) for i in range(2, COUNT + 1)]
    check(got == want, f"after A's {how}, B received {got}, expected {want}")
    print(f"A's {how}: B received " + ", ".join(f"{m}{'(r)' if r else ''}" for m, r in got))
    b.queue_delete(queue)
    b_conn.close()


def main():
    start_watchdog(40)
    url = url_from_args()
    failover(url, "close")
    failover(url, "drop")
    print("ok")


if __name__ == "__main__":
    run(main)
