"""celery_eta_prefetch: a real Celery worker (prefork pool, concurrency 2, prefetch multiplier 1,
acks_late) on a classic queue gets two tasks with an 8 s countdown, then ten quick tasks; the
quick tasks must all run at once (within 4 s; RabbitMQ: ~0.5 s), and the countdown tasks
after their 8 s.

Why it can fail: the worker holds a countdown task unacked until its ETA and raises its prefetch
count by one for each (basic.qos prefetch 3, then 4) so the other slots stay usable. kombu picks
the global flag of that basic.qos from the server properties: product "RabbitMQ" from version
3.3 means global=true, a channel-wide limit that applies at once; any other product, or
RabbitMQ < 3.3, means global=false, a per-consumer limit for consumers started later, so the
running consumer keeps its limit of 2, both slots held by the countdown tasks, and the quick
tasks wait the whole countdown. kombu 5.7.0 (pinned here) also sends global=false to RabbitMQ
>= 4.0 (kombu #2481; kombu #2665 proposes to undo that), so it passes against RabbitMQ 3.3-3.13
(checked on 3.10.8) and would fail against a RabbitMQ 4.x, or a broker advertising 4.x, too.

Pool: prefork, Celery's default (what production workers run); the ETA and prefetch logic is
in the worker's main process whatever the pool. Results: the tasks report to a results queue
(celery_app.tasks.report), not to a result backend, with start/end times taken in the worker.
"""

import time

from celery_app.harness import Scenario

COUNTDOWN = 8.0
QUICK = 10
QUICK_SECONDS = 0.1
QUICK_LIMIT = 4.0  # RabbitMQ 3.10: ~0.5 s (10 x 0.1 s on 2 processes)
LATE_LIMIT = 3.0  # how late after its ETA a countdown task may start


def main(s):
    product, version, qos_global = s.server_qos_decision()
    print(f"server product={product!r} version={version!r}: kombu sends basic.qos "
          f"global={str(qos_global).lower()}")
    s.start_worker(concurrency=2, prefetch_multiplier=1, pool="prefork")
    s.wait_ready(20)
    from celery_app.tasks import work

    eta_sent = {}
    for i in range(2):
        eta_sent[f"eta{i}"] = time.time()
        work.apply_async((f"eta{i}", 0.0), countdown=COUNTDOWN)
    quick_tags = [f"quick{i}" for i in range(QUICK)]
    quick_sent = time.time()
    for tag in quick_tags:
        work.apply_async((tag, QUICK_SECONDS))

    s.wait_for(lambda: len(s.tasks(*quick_tags)) == QUICK, COUNTDOWN + LATE_LIMIT + 3,
               f"the {QUICK} quick tasks")
    quick = s.tasks(*quick_tags)
    took = max(r["end"] for r in quick) - quick_sent
    print(f"{QUICK} quick tasks done {took:.2f}s after they were published "
          f"(worker processes {sorted({r['pid'] for r in quick})})")
    eta_tags = sorted(eta_sent)
    s.check(took <= QUICK_LIMIT,
            f"the {QUICK} quick tasks took {took:.1f}s (limit {QUICK_LIMIT}s; RabbitMQ ~0.5s): "
            f"the two countdown tasks kept the worker's prefetch slots (kombu sent basic.qos "
            f"global={str(qos_global).lower()} for product {product!r} {version!r})")

    s.wait_for(lambda: len(s.tasks(*eta_tags)) == 2, COUNTDOWN + LATE_LIMIT + 3,
               "the two countdown tasks")
    for r in sorted(s.tasks(*eta_tags), key=lambda r: r["tag"]):
        delay = r["start"] - eta_sent[r["tag"]]
        print(f"{r['tag']} started {delay:.2f}s after it was published (countdown {COUNTDOWN}s)")
        s.check(COUNTDOWN - 0.05 <= delay <= COUNTDOWN + LATE_LIMIT,
                f"{r['tag']} started {delay:.2f}s after it was published, expected "
                f"{COUNTDOWN}-{COUNTDOWN + LATE_LIMIT}s")

    s.pump(0.3)
    runs = [r["tag"] for r in s.records if r["event"] == "task"]
    s.check(len(runs) == QUICK + 2, f"expected {QUICK + 2} task runs, got {len(runs)}: {runs}")
    left = s.passive("queue", s.queue)
    s.check(left is not None and left.message_count == 0,
            f"task queue after the run: {left} (expected it empty: acks_late acked every task)")
    s.stop_worker()
    s.delete_queue_and_exchange()
    s.close()
    print("PASS: quick tasks ran beside the held countdown tasks; countdown tasks ran on time")


if __name__ == "__main__":
    Scenario("celery_eta_prefetch", "classic", watchdog=30).run(main)
