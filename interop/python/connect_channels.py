"""connect_channels: connect as guest, open 50 channels, close them and the
connection cleanly, and check the server properties received in connection.start."""

import pika

from _common import check, check_server_properties, fail, start_watchdog, url_from_args

CHANNELS = 50


def main():
    start_watchdog(30)
    params = pika.URLParameters(url_from_args())
    params.connection_attempts = 1
    params.socket_timeout = 10
    params.blocked_connection_timeout = 10
    try:
        conn = pika.BlockingConnection(params)
    except Exception as exc:  # pika raises several unrelated exception types
        fail(f"connect failed: {exc!r}")

    check_server_properties(conn._impl.server_properties)

    channels = []
    for i in range(CHANNELS):
        try:
            ch = conn.channel()
        except Exception as exc:
            fail(f"opening channel {i + 1} failed: {exc!r}")
        check(ch.is_open, f"channel {ch.channel_number} is not open after channel.open-ok")
        channels.append(ch)
    numbers = {ch.channel_number for ch in channels}
    check(len(numbers) == CHANNELS, f"channel numbers not distinct: {sorted(numbers)}")
    print(f"opened {CHANNELS} channels ({min(numbers)}..{max(numbers)})")

    for ch in channels:
        try:
            ch.close()
        except Exception as exc:
            fail(f"closing channel {ch.channel_number} failed: {exc!r}")
        check(ch.is_closed, f"channel {ch.channel_number} is not closed after channel.close-ok")
    print(f"closed {CHANNELS} channels")

    try:
        conn.close()
    except Exception as exc:
        fail(f"closing the connection failed: {exc!r}")
    check(conn.is_closed, "connection is not closed after connection.close-ok")
    print("closed the connection")


if __name__ == "__main__":
    main()
