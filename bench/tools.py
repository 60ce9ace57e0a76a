#!/usr/bin/env python3
"""Load generators and upstream servers for bench/run.sh (stdlib only).

Owns: the plain-TCP helpers: a byte sink (the TLS-terminating proxies' upstream)
and the idle-connection pair (a holder upstream and an opener). The TLS client
and TLS sink are in bench/tlsload (Rust): Python's ssl costs ~1.2 ms CPU per
handshake and would cap the handshake rate.
Must not: start or configure proxies, or decide what a result means; each
command prints one JSON line (or `ready`) and the orchestrator judges it.
"""

import argparse
import os
import selectors
import socket
import sys
import threading
import time

CHUNK = 1 << 20


def _listen(port, backlog=4096):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(backlog)
    return s


def cmd_sink(args):
    """Accept connections and discard what they send."""
    lsock = _listen(args.port)

    def drain(conn):
        buf = bytearray(CHUNK)
        try:
            while conn.recv_into(buf):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def cmd_hold(args):
    """Upstream for idle connections: read a greeting, answer `ok`, keep it open."""
    lsock = _listen(args.port, backlog=8192)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    while True:
                        conn, _ = lsock.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, "c")
                except BlockingIOError:
                    pass
                continue
            conn = key.fileobj
            try:
                data = conn.recv(64)
            except OSError:
                data = b""
            if data:
                try:
                    conn.send(b"ok\n")
                except OSError:
                    pass
            else:
                sel.unregister(conn)
                conn.close()


def cmd_idle(args):
    """Open --count connections, say hi, wait for `ok` on each; print `ready N`; close on stdin EOF."""
    sel = selectors.DefaultSelector()
    conns = []
    pending = 0
    opened = ready = failed = 0
    deadline = time.monotonic() + args.timeout
    while (ready + failed < args.count) and time.monotonic() < deadline:
        while opened < args.count and pending < args.window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", args.port))
            sel.register(s, selectors.EVENT_WRITE, "connect")
            conns.append(s)
            opened += 1
            pending += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if key.data == "connect":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sel.unregister(s)
                    failed += 1
                    pending -= 1
                    continue
                try:
                    s.send(b"hi\n")
                    sel.modify(s, selectors.EVENT_READ, "reply")
                except OSError:
                    sel.unregister(s)
                    failed += 1
                    pending -= 1
            else:
                try:
                    data = s.recv(16)
                except OSError:
                    data = b""
                sel.unregister(s)
                pending -= 1
                if data.startswith(b"ok"):
                    ready += 1
                else:
                    failed += 1
    print(f"ready {ready} failed {failed}", flush=True)
    sys.stdin.read()
    for s in conns:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sink")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("hold")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("idle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=9000)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    {"sink": cmd_sink, "hold": cmd_hold, "idle": cmd_idle}[args.cmd](args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(0)
