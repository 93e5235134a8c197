"""celery_quorum_delayed: Celery's native delayed delivery for quorum queues (Celery 5.5+).

The worker (prefork, concurrency 2, prefetch multiplier 1, acks_late) consumes a durable quorum
queue bound to a topic exchange. Because a quorum queue is configured, its DelayedDelivery
bootstep declares, at start, on a connection of its own (kombu native_delayed_delivery):

- for level 27..0 a topic exchange `celery_delayed_<level>` and a quorum queue of the same
  name with x-overflow reject-publish, x-dead-letter-strategy at-least-once, x-message-ttl
  2^level * 1000 ms (levels 22..27 exceed 2^31: py-amqp writes those as field type `L`) and
  x-dead-letter-exchange `celery_delayed_<level-1>` (level 0: `celery_delayed_delivery`),
  the queue bound with `<27-level times *.>1.#`;
- exchange-to-exchange bindings `celery_delayed_<level>` -> `celery_delayed_<level-1>` with
  `<27-level times *.>0.#`, and `celery_delayed_0` -> topic exchange `celery_delayed_delivery`;
- `celery_delayed_delivery` -> the task queue's exchange, and the exchange -> the task queue,
  both with `#.<routing key>`.

A task sent with a countdown is published to `celery_delayed_27` with the countdown's 28 bits
as routing-key words in front of the queue's routing key; it waits in the level queues whose
bit is 1 (countdown 5 = 0b101: 4 s in `celery_delayed_2`, 1 s in `celery_delayed_0`), is
dead-lettered level to level and reaches the task queue after its delay. If a declaration
fails, Celery logs a warning and carries on: countdown tasks are then published to a missing
exchange and lost. This scenario checks that the worker set the topology up without a logged
problem, that it exists, that a task without countdown runs at once, and that the countdown
task waits in `celery_delayed_2`, reaches the worker after 5 s and not before (the time of
its task_received signal), runs then, and is delivered with the delay routing key from
`celery_delayed_delivery`.

The celery_delayed_* exchanges and queues have fixed names shared by every Celery worker on a
broker (Celery 5.7 has no prefix setting): they are left in place, as every worker declares
them alike; the task queue and its exchange are deleted at the end.
"""

import time

from kombu.transport.native_delayed_delivery import calculate_routing_key, level_name

from celery_app.harness import Scenario

DELAY = 5  # 0b101: waits in celery_delayed_2 (4 s) then in celery_delayed_0 (1 s)
FIRST_LEVEL = 2
LATE_LIMIT = 3.0  # how late after its delay the task may start
LEVELS = 28


def check_topology(s):
    missing = []
    for level in range(LEVELS):
        name = level_name(level)
        if s.passive("exchange", name) is None:
            missing.append(f"exchange {name}")
        if s.passive("queue", name) is None:
            missing.append(f"queue {name}")
    if s.passive("exchange", "celery_delayed_delivery") is None:
        missing.append("exchange celery_delayed_delivery")
    s.check(not missing, f"native delayed delivery topology incomplete, missing: {missing}")
    print(f"topology present: {LEVELS} celery_delayed_<level> exchanges and quorum queues, "
          "celery_delayed_delivery")


def main(s):
    s.start_worker(concurrency=2, prefetch_multiplier=1, pool="prefork")
    s.wait_ready(25)
    s.check_worker_log("native delayed delivery setup at worker start failed")
    check_topology(s)
    from celery_app.tasks import work

    sent_now = time.time()
    work.apply_async(("now", 0.0))
    sent = time.time()
    delayed_id = work.apply_async(("delayed", 0.0), countdown=DELAY).id
    s.wait_for(lambda: s.tasks("now"), 5, "the task without countdown")
    print(f"task without countdown ran {s.tasks('now')[0]['start'] - sent_now:.2f}s after publish")

    s.pump(max(0.0, sent + 1.5 - time.time()))
    waiting = s.passive("queue", level_name(FIRST_LEVEL))
    count = None if waiting is None else waiting.message_count
    print(f"{level_name(FIRST_LEVEL)} holds {count} message(s) 1.5s after the publish")
    s.check(not s.tasks("delayed"), f"the countdown task ran before its {DELAY}s delay")
    s.check(count is not None and count >= 1,
            f"the countdown task is not waiting in {level_name(FIRST_LEVEL)} "
            f"(message_count {count})")

    s.wait_for(lambda: s.tasks("delayed"), DELAY + LATE_LIMIT + 2, "the countdown task")
    record = s.tasks("delayed")[0]
    delay = record["start"] - sent
    print(f"countdown task started {delay:.2f}s after publish (countdown {DELAY}s), delivered "
          f"from exchange {record['exchange']!r} with routing key {record['routing_key']!r}")
    got = s.received(delayed_id)
    s.check(got is not None, "the worker ran the countdown task without a task_received event")
    print(f"the worker got the countdown task's message {got - sent:.2f}s after publish")
    # The broker must hold it for the delay: a worker given it early would also wait for the
    # ETA, so only the time of receipt shows that the delay queues did it.
    s.check(got - sent >= DELAY - 0.05,
            f"the worker got the countdown task's message {got - sent:.2f}s after publish, "
            f"before its {DELAY}s delay")
    s.check(DELAY - 0.05 <= delay <= DELAY + LATE_LIMIT,
            f"the countdown task started {delay:.2f}s after publish, expected "
            f"{DELAY}-{DELAY + LATE_LIMIT}s")
    want_key = calculate_routing_key(DELAY, s.queue)
    s.check(record["routing_key"] == want_key,
            f"countdown task delivered with routing key {record['routing_key']!r}, "
            f"expected the delay routing key {want_key!r}")
    # Dead-lettered from celery_delayed_0 to celery_delayed_delivery: basic.deliver names the
    # exchange the message was (re)published to, not the one bound to the queue.
    s.check(record["exchange"] == "celery_delayed_delivery",
            f"countdown task delivered from exchange {record['exchange']!r}, expected "
            "'celery_delayed_delivery' (its dead-letter exchange)")

    s.pump(0.3)
    runs = [r["tag"] for r in s.records if r["event"] == "task"]
    s.check(sorted(runs) == ["delayed", "now"], f"task runs {runs}, expected delayed and now once")
    s.stop_worker()
    left = s.passive("queue", s.queue)
    s.check(left is not None and left.message_count == 0,
            f"task queue after the run: {left} (expected it empty: acks_late acked every task)")
    s.delete_queue_and_exchange()
    s.close()
    print("PASS: native delayed delivery set up at worker start; the countdown task waited in "
          "the delay queues and ran on time")


if __name__ == "__main__":
    Scenario("celery_quorum_delayed", "quorum", watchdog=30).run(main)
