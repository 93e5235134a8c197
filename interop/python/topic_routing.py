"""topic_routing: a topic exchange with one server-named queue per binding key; a message is
published for each routing key of a table, and each queue must get exactly the routing keys
the table says (in publish order, once each even when several of its bindings match).

Words are split on "."; "*" matches exactly one word and "#" zero or more words; an empty
word (as in "a..c", "a." or ".") is a word like any other, and the empty routing key has no
words at all (so "#" and the empty binding key match it, "*" does not)."""

from _common import check, connect, run, start_watchdog, unique_name, url_from_args, wait_for

ROUTING_KEYS = ["a.b.c", "a.x.c", "a", "a.b", "a.b.c.d", "a.c", "a..c", "", "b", "x.b.y.z", "c",
                "a.b.b.c", "a.", ".", "x.b"]

# (binding keys of one queue, the routing keys it must get, in publish order)
TABLE = [
    (["a.b.c"], ["a.b.c"]),
    (["a.*.c"], ["a.b.c", "a.x.c", "a..c"]),
    (["a.#"], ["a.b.c", "a.x.c", "a", "a.b", "a.b.c.d", "a.c", "a..c", "a.b.b.c", "a."]),
    (["#"], ROUTING_KEYS),
    (["*"], ["a", "b", "c"]),
    (["*.*"], ["a.b", "a.c", "a.", ".", "x.b"]),
    (["a.#.c"], ["a.b.c", "a.x.c", "a.c", "a..c", "a.b.b.c"]),
    (["#.c"], ["a.b.c", "a.x.c", "a.c", "a..c", "c", "a.b.b.c"]),
    (["a..c"], ["a..c"]),
    ([""], [""]),
    (["a.*"], ["a.b", "a.c", "a."]),
    (["*.b.#"], ["a.b.c", "a.b", "a.b.c.d", "x.b.y.z", "a.b.b.c", "x.b"]),
    (["a.*.#"], ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "a.c", "a..c", "a.b.b.c", "a."]),
    (["a.#", "#.c"], ["a.b.c", "a.x.c", "a", "a.b", "a.b.c.d", "a.c", "a..c", "c", "a.b.b.c", "a."]),
]

END = "end.of.test"  # every queue is also bound with this key; published last


def main():
    start_watchdog(30)
    conn = connect(url_from_args())
    ch = conn.channel()
    exchange = unique_name("topic_routing")
    ch.exchange_declare(exchange, exchange_type="topic", durable=False, auto_delete=False)

    queues = []
    got = {}
    for keys, _ in TABLE:
        q = ch.queue_declare("", exclusive=True).method.queue
        for key in keys + [END]:
            ch.queue_bind(q, exchange, routing_key=key)
        queues.append(q)
        got[q] = []
        ch.basic_consume(q, lambda _c, _m, _p, body, q=q: got[q].append(body.decode()), auto_ack=True)

    for key in ROUTING_KEYS + [END]:
        ch.basic_publish(exchange, key, key.encode())
    wait_for(conn, lambda: all(END in got[q] for q in queues), 10,
             f"the {END!r} message in every queue (got {got})")

    failures = []
    for (keys, want), q in zip(TABLE, queues):
        have = got[q][:got[q].index(END)]
        if have != want:
            failures.append(f"bound with {keys}: got {have}, expected {want}")
        else:
            print(f"bound with {keys}: {have}")
    check(not failures, "wrong routing:\n  " + "\n  ".join(failures))

    for q in queues:
        ch.queue_delete(q)
    ch.exchange_delete(exchange)
    conn.close()
    print("ok")


if __name__ == "__main__":
    run(main)
