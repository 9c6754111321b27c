"""A fast origin in its own process: answers every request head with N bytes (N from the path).

    python -m tests.support.bulk_origin  -> prints its port, then serves until killed
"""

from __future__ import annotations

import socket
import threading

BLOCK = b"\0" * (1 << 20)


def serve_one(conn: socket.socket) -> None:
    with conn:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        path = buf.split(b" ", 2)[1]
        size = int(path.rsplit(b"/", 1)[1])
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        left = size
        view = memoryview(BLOCK)
        while left:
            n = min(left, len(BLOCK))
            conn.sendall(view[:n])
            left -= n


def main() -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
