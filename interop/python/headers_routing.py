"""headers_routing: a headers exchange with one server-named queue per binding; messages with
various header tables are published and each queue must get exactly the messages the table
says (in publish order). Covers x-match all (also the default when x-match is absent) and any,
an empty binding (all -> matches everything, any -> nothing), binding keys starting with "x-"
(ignored in all/any), case-sensitive string values, integer values, and a message with no
headers property at all."""

from _common import check, connect, run, start_watchdog, unique_name, url_from_args, wait_for

# (name, headers property or None); the body is the name
MESSAGES = [
    ("m1", {"format": "pdf", "type": "report"}),
    ("m2", {"format": "pdf", "type": "log"}),
    ("m3", {"format": "zip", "type": "report"}),
    ("m4", {"format": "zip"}),
    ("m5", None),
    ("m6", {"format": "pdf", "type": "report", "extra": "yes"}),
    ("m7", {"count": 5}),
    ("m8", {"count": 6, "format": "zip"}),
    ("m9", {"type": "report"}),
    ("m10", {"format": "PDF"}),
    ("m11", {"x-tag": "a"}),
]
ALL = [name for name, _ in MESSAGES]

# (binding arguments, the messages the queue must get)
TABLE = [
    ({"x-match": "all", "format": "pdf", "type": "report"}, ["m1", "m6"]),
    ({"x-match": "any", "format": "pdf", "type": "report"}, ["m1", "m2", "m3", "m6", "m9"]),
    ({"format": "zip"}, ["m3", "m4", "m8"]),
    ({"x-match": "all", "count": 5}, ["m7"]),
    ({"x-match": "all"}, ALL),
    ({"x-match": "any"}, []),
    ({"x-match": "any", "x-tag": "a", "format": "zip"}, ["m3", "m4", "m8"]),
]

END = {"x-match": "all", "end": "yes"}  # every queue is also bound with this; published last


def main():
    import pika

    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    exchange = unique_name("headers_routing")
    ch.exchange_declare(exchange, exchange_type="headers", durable=False, auto_delete=False)

    queues = []
    got = {}
    for args, _ in TABLE:
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, exchange, routing_key="", arguments=args)
        ch.queue_bind(q, exchange, routing_key="", arguments=END)
        queues.append(q)
        got[q] = []
        ch.basic_consume(q, lambda _c, _m, _p, body, q=q: got[q].append(body.decode()), auto_ack=True)

    for name, headers in MESSAGES + [("end", {"end": "yes"})]:
        props = pika.BasicProperties(headers=headers) if headers is not None else None
        ch.basic_publish(exchange, "ignored", name.encode(), properties=props)
    wait_for(conn, lambda: all("end" in got[q] for q in queues), 10,
             f"the 'end' message in every queue (got {got})")

    failures = []
    for (args, want), q in zip(TABLE, queues):
        have = got[q][:got[q].index("end")]
        if have != want:
            failures.append(f"bound with {args}: got {have}, expected {want}")
        else:
            print(f"bound with {args}: {have}")
    check(not failures, "wrong routing (messages: " + repr(MESSAGES) + "):\n  " + "\n  ".join(failures))

    for q in queues:
        ch.queue_delete(q)
    ch.exchange_delete(exchange)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
