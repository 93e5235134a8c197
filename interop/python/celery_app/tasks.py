"""The Celery application (and its tasks) of the Celery interop scenarios (celery_*.py).

The scenario process and the worker it starts (`celery -A celery_app.tasks worker`) import
this module with the same environment, so they agree on the broker and the task queue:

  CELERY_INTEROP_BROKER       broker URL
  CELERY_INTEROP_QUEUE        the task queue (and its exchange, and its routing key)
  CELERY_INTEROP_QUEUE_TYPE   "classic" (direct exchange, non-durable queue) or "quorum"
                              (topic exchange, durable quorum queue: what Celery's native
                              delayed delivery needs)
  CELERY_INTEROP_RESULTS      a queue the worker reports to (default exchange): a "ready"
                              event when the worker consumes, a "received" event when it
                              gets a task message, a "task" record per task run
  CELERY_INTEROP_PARENT_PID   the scenario's pid; the worker kills its own process group
                              when its parent changes (the scenario died without stopping it)

Completion is reported through the results queue rather than a Celery result backend: each
record carries the task's start and end time taken inside the worker and the delivery_info
of the message it ran from, which is what the scenarios assert on.
"""

import json
import os
import signal
import threading
import time

from celery import Celery, signals
from kombu import Exchange, Queue

BROKER = os.environ["CELERY_INTEROP_BROKER"]
QUEUE = os.environ["CELERY_INTEROP_QUEUE"]
QUEUE_TYPE = os.environ.get("CELERY_INTEROP_QUEUE_TYPE", "classic")
RESULTS = os.environ["CELERY_INTEROP_RESULTS"]


def _task_queue():
    if QUEUE_TYPE == "quorum":
        # Native delayed delivery binds the queue's exchange to celery_delayed_delivery; Celery
        # skips direct exchanges there (and then holds ETA tasks in the worker), so: topic.
        return Queue(QUEUE, Exchange(QUEUE, type="topic", durable=True), routing_key=QUEUE,
                     durable=True, queue_arguments={"x-queue-type": "quorum"})
    if QUEUE_TYPE == "classic":
        return Queue(QUEUE, Exchange(QUEUE, type="direct", durable=False), routing_key=QUEUE,
                     durable=False)
    raise ValueError(f"CELERY_INTEROP_QUEUE_TYPE must be classic or quorum, not {QUEUE_TYPE!r}")


app = Celery("celery_app.tasks", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_queues=[_task_queue()],
    task_default_queue=QUEUE,
    task_create_missing_queues=False,
    # Only the task queue (and, for quorum queues, Celery's celery_delayed_* topology) on the
    # broker: no celery.pidbox / celeryev exchanges shared with other workers.
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    # A worker that cannot connect should fail the scenario, not retry until the watchdog.
    broker_connection_retry_on_startup=False,
)


def report(record):
    """Publishes one JSON record to the results queue over the app's producer pool."""
    with app.producer_or_acquire() as producer:
        producer.publish(json.dumps(record), exchange="", routing_key=RESULTS,
                         content_type="application/json", content_encoding="utf-8",
                         retry=False)


@app.task(name="interop.work", bind=True)
def work(self, tag, seconds):
    start = time.time()
    time.sleep(seconds)
    info = self.request.delivery_info or {}
    report({"event": "task", "tag": tag, "start": start, "end": time.time(), "pid": os.getpid(),
            "exchange": info.get("exchange"), "routing_key": info.get("routing_key"),
            "eta": self.request.eta})


@signals.task_received.connect
def _on_task_received(request=None, **_kwargs):
    # When the worker got the message from the broker (an ETA task runs later).
    report({"event": "received", "id": request.id, "time": time.time()})


@signals.worker_ready.connect
def _on_worker_ready(sender=None, **_kwargs):
    report({"event": "ready", "time": time.time(), "pid": os.getpid()})


def _watch_parent(parent):
    while True:
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        time.sleep(0.5)


@signals.worker_init.connect
def _on_worker_init(**_kwargs):
    parent = os.environ.get("CELERY_INTEROP_PARENT_PID")
    if parent:
        threading.Thread(target=_watch_parent, args=(int(parent),), daemon=True).start()
