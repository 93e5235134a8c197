"""Helpers shared by the Python (pika) interop scenarios.

A scenario is run as `python <scenario>.py AMQP_URL`; it exits 0 on success and
non-zero with a message on stderr on any failure.
"""

import os
import sys
import threading

STRING_PROPERTIES = ("product", "version", "platform", "copyright", "information")


def fail(message):
    """Report a failure and exit non-zero at once (works from any thread)."""
    sys.stdout.flush()
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def start_watchdog(seconds=30):
    """Kill the scenario if it is still running after `seconds`."""

    def expire():
        sys.stdout.flush()
        print(f"FAIL: timed out after {seconds}s", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def url_from_args():
    if len(sys.argv) > 1:
        return sys.argv[1]
    url = os.environ.get("AMQP_URL")
    if not url:
        fail(f"usage: {sys.argv[0]} AMQP_URL")
    return url


def check(condition, message):
    if not condition:
        fail(message)


def check_server_properties(props):
    """Checks the server-properties table of connection.start and prints it."""
    check(isinstance(props, dict), f"server properties are not a table: {props!r}")
    for key in STRING_PROPERTIES:
        check(key in props, f"server property {key!r} missing (got {sorted(props)})")
        value = props[key]
        check(isinstance(value, str),
              f"server property {key!r} is {type(value).__name__} {value!r}, expected a string")
        print(f"server {key}: {value}")
    check("capabilities" in props, f"server property 'capabilities' missing (got {sorted(props)})")
    caps = props["capabilities"]
    check(isinstance(caps, dict),
          f"server property 'capabilities' is {type(caps).__name__} {caps!r}, expected a table")
    print("server capabilities: " + ", ".join(f"{k}={v}" for k, v in sorted(caps.items())))


def connect(url, what="connect"):
    """A BlockingConnection with short timeouts; fails the scenario if it cannot connect."""
    import pika  # imported here so that helpers without pika stay importable

    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 10
    params.blocked_connection_timeout = 10
    try:
        return pika.BlockingConnection(params)
    except Exception as exc:  # pika raises several unrelated exception types
        fail(f"{what} failed: {exc!r}")


def unique_name(scenario, suffix=""):
    """A name no other run (parallel or earlier) uses: interop.<scenario>.python.<random>[.<suffix>]."""
    import secrets

    name = f"interop.{scenario}.python.{secrets.token_hex(4)}"
    return f"{name}.{suffix}" if suffix else name


def _pump(conns, seconds):
    if not isinstance(conns, (list, tuple)):
        conns = [conns]
    for conn in conns:
        conn.process_data_events(time_limit=seconds / len(conns))


def wait_for(conns, condition, timeout, what):
    """Pumps the I/O of one connection or a list of them (so consumer callbacks run) until
    condition() holds; fails after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout}s waiting for {what}")
        _pump(conns, 0.05)


def settle(conns, seconds):
    """Pumps the I/O of one connection or a list of them for `seconds` (to let unexpected
    deliveries show up)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _pump(conns, min(0.05, max(0.0, deadline - time.monotonic())))


def run(main):
    """Runs main(); an exception escaping it (e.g. a pika ChannelClosedByBroker) is a failure."""
    import traceback

    try:
        main()
    except Exception as exc:  # noqa: BLE001 - any client exception fails the scenario
        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}")
