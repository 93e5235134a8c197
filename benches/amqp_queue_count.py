#!/usr/bin/env python3
"""Passive-declare one queue over AMQP 0-9-1 and print its message count.

Standard library only, so the bench scripts need nothing installed and work against any
broker binary (Warren or RabbitMQ). Without a queue name it only checks that the broker
completes a handshake (readiness).

    amqp_queue_count.py URL [QUEUE]

Prints the ready-message count and exits 0; exits 1 with the reason on stderr if the broker is
not reachable or the queue does not exist (404).
"""

import socket
import struct
import sys
import urllib.parse


def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def method_frame(channel, class_id, method_id, args=b""):
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


class Conn:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next_method(self):
        """The next method frame as (channel, class, method, arguments); skips heartbeats."""
        while True:
            ftype, channel, size = struct.unpack(">BHI", self.read_exact(7))
            payload = self.read_exact(size)
            if self.read_exact(1) != b"\xce":
                raise ConnectionError("bad frame end")
            if ftype == 1:
                class_id, method_id = struct.unpack(">HH", payload[:4])
                return channel, class_id, method_id, payload[4:]

    def expect(self, class_id, method_id):
        channel, c, m, args = self.next_method()
        if (c, m) == (class_id, method_id):
            return args
        if (c, m) in ((10, 50), (20, 40)):
            code = struct.unpack(">H", args[:2])[0]
            text = args[3 : 3 + args[2]].decode(errors="replace")
            raise LookupError(f"{code} {text}")
        raise ConnectionError(f"expected {class_id}.{method_id}, got {c}.{m}")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    url = urllib.parse.urlparse(sys.argv[1])
    queue = sys.argv[2] if len(sys.argv) == 3 else None
    vhost = urllib.parse.unquote(url.path[1:]) if len(url.path) > 1 else "/"
    user = urllib.parse.unquote(url.username or "guest")
    password = urllib.parse.unquote(url.password or "guest")
    conn = Conn(url.hostname or "127.0.0.1", url.port or 5672, timeout=10)
    conn.sock.sendall(b"AMQP\x00\x00\x09\x01")
    conn.expect(10, 10)  # connection.start
    response = b"\x00" + user.encode() + b"\x00" + password.encode()
    conn.sock.sendall(
        method_frame(
            0,
            10,
            11,
            struct.pack(">I", 0) + shortstr("PLAIN") + longstr(response) + shortstr("en_US"),
        )
    )
    tune = conn.expect(10, 30)
    channel_max, frame_max, _ = struct.unpack(">HIH", tune[:8])
    conn.sock.sendall(method_frame(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
    conn.sock.sendall(method_frame(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00"))
    conn.expect(10, 41)
    count = None
    if queue is not None:
        conn.sock.sendall(method_frame(1, 20, 10, shortstr("")))
        conn.expect(20, 11)
        # queue.declare: reserved short, name, bits (passive), empty arguments.
        conn.sock.sendall(
            method_frame(1, 50, 10, struct.pack(">H", 0) + shortstr(queue) + b"\x01" + struct.pack(">I", 0))
        )
        ok = conn.expect(50, 11)
        name_len = ok[0]
        count, _consumers = struct.unpack(">II", ok[1 + name_len : 9 + name_len])
    conn.sock.sendall(method_frame(0, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0)))
    try:
        conn.expect(10, 51)
    except (ConnectionError, LookupError, OSError):
        pass
    conn.sock.close()
    print(count if count is not None else "ready")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ConnectionError, LookupError) as e:
        print(f"amqp_queue_count: {e}", file=sys.stderr)
        sys.exit(1)
