"""confirms_mandatory: publisher confirms with mandatory publishes. On a channel in confirm
mode, messages are numbered from 1; every publish is acked (none nacked), including
unroutable ones; a mandatory publish that no queue takes comes back as basic.return
312 NO_ROUTE *before* the basic.ack for its sequence number; routable messages reach the
queue. Acks may use multiple=true; they are expanded and each number must be confirmed once."""

import pika

from _common import check, connect, run, start_watchdog, unique_name, url_from_args, wait_for


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    lonely = unique_name("confirms_mandatory", "unbound")  # a direct exchange with no bindings
    ch.exchange_declare(lonely, exchange_type="direct", durable=False, auto_delete=False)
    nowhere = unique_name("confirms_mandatory", "nowhere")  # no queue has this name

    # pika's BlockingChannel hides the confirm frames (and would raise on a return), so the
    # underlying channel is used to see every basic.ack / basic.nack / basic.return in order.
    events = []
    impl = ch._impl

    def on_return(_ch, method, _props, body):
        events.append(("return", method.reply_code, method.reply_text, method.exchange,
                       method.routing_key, body.decode()))

    def on_confirm(frame):
        kind = "ack" if isinstance(frame.method, pika.spec.Basic.Ack) else "nack"
        events.append((kind, frame.method.delivery_tag, frame.method.multiple))

    selected = []
    impl.add_on_return_callback(on_return)
    impl.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: selected.append(1))
    wait_for(conn, lambda: selected, 5, "confirm.select-ok")

    # (sequence number, exchange, routing key, mandatory, routed?)
    publishes = [
        (1, "", queue, False, True),
        (2, "", nowhere, True, False),
        (3, "", queue, False, True),
        (4, "", queue, True, True),
        (5, "", nowhere, False, False),
        (6, lonely, "any", True, False),
    ]
    for seq, exchange, key, mandatory, _ in publishes:
        ch.basic_publish(exchange, key, f"msg {seq}".encode(), mandatory=mandatory)

    confirmed = {}  # seq -> ack/nack
    order = []  # ("return", seq) / ("confirm", seq) in arrival order

    def confirmed_all():
        while events:
            ev = events.pop(0)
            if ev[0] == "return":
                check(ev[1] == 312 and ev[2] == "NO_ROUTE",
                      f"basic.return {ev[1]} {ev[2]!r}, expected 312 'NO_ROUTE'")
                seq = int(ev[5].split()[1])
                check(ev[3] == publishes[seq - 1][1] and ev[4] == publishes[seq - 1][2],
                      f"basic.return of msg {seq} has exchange {ev[3]!r} routing key {ev[4]!r}, "
                      f"expected {publishes[seq - 1][1]!r} {publishes[seq - 1][2]!r}")
                order.append(("return", seq))
                continue
            kind, tag, multiple = ev
            check(1 <= tag <= len(publishes), f"basic.{kind} for unknown sequence number {tag}")
            seqs = [s for s in range(1, tag + 1) if s not in confirmed] if multiple else [tag]
            check(seqs and tag in seqs, f"basic.{kind} {tag} multiple={multiple}: already confirmed")
            for s in seqs:
                confirmed[s] = kind
                order.append(("confirm", s))
        return len(confirmed) == len(publishes)

    wait_for(conn, confirmed_all, 10, f"confirms for all {len(publishes)} publishes (got {confirmed})")
    print("events: " + ", ".join(f"{k} {s}" for k, s in order))
    check(all(k == "ack" for k in confirmed.values()), f"expected only acks, got {confirmed}")
    returned = [s for k, s in order if k == "return"]
    want_returned = [seq for seq, _, _, mandatory, routed in publishes if mandatory and not routed]
    check(returned == want_returned, f"basic.return for {returned}, expected for {want_returned}")
    for seq in returned:
        check(order.index(("return", seq)) < order.index(("confirm", seq)),
              f"the basic.ack of msg {seq} arrived before its basic.return (order: {order})")

    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        bodies.append(body.decode())
    want = [f"msg {seq}" for seq, _, _, _, routed in publishes if routed]
    check(bodies == want, f"queue holds {bodies}, expected {want}")

    ch.exchange_delete(lonely)
    ch.queue_delete(queue)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
