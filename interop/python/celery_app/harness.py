"""Scenario side of the Celery interop scenarios: starts a real `celery worker` process,
collects what it reports on the results queue, and stops it however the scenario ends.

The worker runs in its own session (process group), so that the runner's `timeout`, which
signals the scenario's group, does not hit it half-way, and so that stopping it reaches its
prefork children too: SIGTERM to the group (Celery's warm shutdown), SIGKILL after
STOP_TIMEOUT. Every way out of the scenario (pass, fail(), the watchdog, an exception, SIGTERM
or SIGINT) stops it first; if the scenario is SIGKILLed the worker notices that its parent
changed and kills its own group (celery_app.tasks._watch_parent).
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

import _common

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOP_TIMEOUT = 10
# Worker log lines that fail a scenario: errors, and the warnings Celery logs when it loses the
# broker or cannot set up native delayed delivery (it carries on without it, at WARNING level).
PROBLEM = re.compile(r"ERROR/|CRITICAL/|Traceback|Failed to |Retrying delayed delivery|"
                     r"Connection to broker lost|Cannot connect|consumer: ")


class Worker:
    """One `celery -A celery_app.tasks worker` process and its output."""

    def __init__(self, args, env):
        self.args = args
        self.lines = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            args, cwd=PYTHON_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        with self._lock:
            return list(self.lines)

    def problems(self):
        return [line for line in self.log() if PROBLEM.search(line)]

    def stop(self):
        """Stops the worker's process group; returns how it ended."""
        if self.proc.poll() is not None:
            how = f"had already exited with status {self.proc.returncode}"
        else:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
                how = f"exited with status {self.proc.returncode} after SIGTERM"
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
                how = f"ignored SIGTERM for {STOP_TIMEOUT}s, killed"
        # Prefork children that outlived the main process (they should not).
        self._signal(signal.SIGKILL)
        self._reader.join(2)
        return how

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


class Scenario:
    """A Celery scenario: broker URL, unique queue names, the results queue (pika), the worker."""

    def __init__(self, name, queue_type, watchdog=30):
        self.name = name
        self.worker = None
        self._stopping = threading.Lock()
        self._arm_watchdog(watchdog)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.url = _common.url_from_args()
        self.queue = _common.unique_name(name)
        self.results_queue = f"{self.queue}.results"
        self.records = []
        self.conn = _common.connect(self.url, "pika connect (results queue)")
        self.ch = self.conn.channel()
        self.ch.queue_declare(self.results_queue, exclusive=True)
        self.ch.basic_consume(self.results_queue, self._on_result, auto_ack=True)
        os.environ.update({
            "CELERY_INTEROP_BROKER": self.url,
            "CELERY_INTEROP_QUEUE": self.queue,
            "CELERY_INTEROP_QUEUE_TYPE": queue_type,
            "CELERY_INTEROP_RESULTS": self.results_queue,
        })

    # ------------------------------------------------------------ ending

    def _arm_watchdog(self, seconds):
        def expire():
            self._stop_worker(show_log=True)
            print(f"FAIL: timed out after {seconds}s", file=sys.stderr, flush=True)
            os._exit(3)

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()

    def _on_signal(self, signum, _frame):
        self._stop_worker(show_log=True)
        print(f"FAIL: killed by signal {signum}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    def _stop_worker(self, show_log=False):
        """Stops the worker once (whoever comes first: the scenario, fail(), the watchdog)."""
        if not self._stopping.acquire(blocking=False) or self.worker is None:
            return None
        how = self.worker.stop()
        print(f"worker {how}")
        if show_log:
            print("worker log:")
            for line in self.worker.log():
                print(f"    {line}")
        sys.stdout.flush()
        return how

    def fail(self, message):
        self._stop_worker(show_log=True)
        try:  # best effort: a failed run should not leave its queue behind either
            self.delete_queue_and_exchange()
        except Exception:  # noqa: BLE001 - the broker or the connection may be what failed
            pass
        _common.fail(message)

    def check(self, condition, message):
        if not condition:
            self.fail(message)

    def run(self, main):
        """Runs main(self); any exception fails the scenario (after stopping the worker)."""
        try:
            main(self)
        except Exception as exc:  # noqa: BLE001 - any client exception fails the scenario
            traceback.print_exc()
            self.fail(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ the worker

    def start_worker(self, concurrency=2, prefetch_multiplier=1, pool="prefork"):
        args = [sys.executable, "-m", "celery", "-A", "celery_app.tasks", "worker",
                "--pool", pool, "--concurrency", str(concurrency),
                "--prefetch-multiplier", str(prefetch_multiplier), "-Q", self.queue,
                "--hostname", f"{self.queue}@%h", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        env = dict(os.environ, CELERY_INTEROP_PARENT_PID=str(os.getpid()), PYTHONUNBUFFERED="1")
        print("starting: celery " + " ".join(args[3:]))
        self.worker = Worker(args, env)
        return self.worker

    def stop_worker(self):
        """Stops the worker at the end of a passing run; its log problems fail the scenario."""
        worker = self.worker
        self._stop_worker(show_log=True)
        problems = worker.problems()
        if problems:
            _common.fail("the worker logged problems:\n    " + "\n    ".join(problems))

    def check_worker_log(self, what):
        problems = self.worker.problems()
        self.check(not problems, f"{what}; the worker logged:\n    " + "\n    ".join(problems))

    # ------------------------------------------------------------ waiting

    def _on_result(self, _ch, _method, _props, body):
        record = json.loads(body)
        record["received"] = time.time()
        self.records.append(record)

    def tasks(self, *tags):
        return [r for r in self.records if r["event"] == "task" and r["tag"] in tags]

    def received(self, task_id):
        """When the worker got the message of task `task_id` (None if not yet)."""
        times = [r["time"] for r in self.records if r["event"] == "received" and r["id"] == task_id]
        return times[0] if times else None

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            left = max(0.0, deadline - time.monotonic())
            self.conn.process_data_events(time_limit=min(0.05, left))

    def wait_for(self, condition, timeout, what):
        """Pumps the results queue until condition() holds; fails after `timeout` seconds or
        when the worker exits."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.worker is not None and self.worker.proc.poll() is not None:
                self.fail(f"the worker exited with status {self.worker.proc.returncode} "
                          f"while waiting for {what}")
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}")
            self.conn.process_data_events(time_limit=0.05)

    def wait_ready(self, timeout=20):
        started = time.monotonic()
        self.wait_for(lambda: any(r["event"] == "ready" for r in self.records), timeout,
                      "the worker's worker_ready signal (it consumes its queue)")
        print(f"worker ready after {time.monotonic() - started:.1f}s")

    # ------------------------------------------------------------ broker

    def passive(self, kind, name):
        """Passive declare of a queue or an exchange on a fresh channel (a 404 closes the
        channel); returns the declare-ok method or None."""
        import pika

        ch = self.conn.channel()
        try:
            if kind == "queue":
                method = ch.queue_declare(name, passive=True).method
            else:
                method = ch.exchange_declare(name, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            return None
        ch.close()
        return method

    def delete_queue_and_exchange(self):
        """Deletes the task queue and its exchange (bindings to and from them go with them)."""
        ch = self.conn.channel()
        ch.queue_delete(self.queue)
        ch.exchange_delete(self.queue)
        ch.close()

    def server_qos_decision(self):
        """What kombu decides from the server properties: (product, version, global flag)."""
        from celery_app import tasks

        with tasks.app.connection_for_write() as conn:
            conn.connect()
            props = conn.connection.server_properties
            spec = conn.qos_semantics_matches_spec
        return props.get("product"), props.get("version"), not spec

    def close(self):
        from celery_app import tasks

        tasks.app.close()
        self.conn.close()
