"""The TCP baseline's two ends, run as separate processes (so either can run inside a network namespace).

    python -m rudp.bench.tcp_peer recv ADDR DIR NAME
        listens on ADDR port 0, prints {"port": P}, accepts one connection, writes everything into DIR/NAME
        (recv_into one reused buffer), closes the file, prints {"bytes", "t_accept", "t_closed"}
    python -m rudp.bench.tcp_peer send FILE ADDR PORT [CC]
        prints {"t_connect", "t_sent", "cc"} after socket.sendfile

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every process on the machine (network namespaces
do not change it), so rudp-bench and tools/bench_speed.py time a transfer as receiver ``t_closed`` minus sender
``t_connect``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

BUFFER = 1 << 20


def recv(addr: str, directory: str, name: str) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((addr, 0))
        listener.listen(1)
        print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
        conn, _ = listener.accept()
    t_accept = time.monotonic()
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    total = 0
    with conn, open(os.path.join(directory, name), "wb", buffering=0) as out:
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            out.write(view[:n])
            total += n
    t_closed = time.monotonic()
    print(json.dumps({"bytes": total, "t_accept": t_accept, "t_closed": t_closed}), flush=True)


def send(path: str, addr: str, port: int, cc: str | None) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with open(path, "rb") as f, socket.socket(family, socket.SOCK_STREAM) as sock:
        if cc:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        used = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
        t_connect = time.monotonic()
        sock.connect((addr, port))
        sent = sock.sendfile(f)
        sock.shutdown(socket.SHUT_WR)
        t_sent = time.monotonic()
        sock.recv(1)  # the receiver closes after its last write: wait for the FIN so nothing is cut short
    print(json.dumps({"t_connect": t_connect, "t_sent": t_sent, "sent": sent, "cc": used}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        sys.exit(f"usage: {sys.argv[0]} recv ADDR DIR NAME | send FILE ADDR PORT [CC]")
