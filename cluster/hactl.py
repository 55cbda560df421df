#!/usr/bin/env python3
"""HAProxy's admin socket, for cluster/replica.sh and the cluster tests.

    cluster/hactl.py SOCKET "show stat"                    # any runtime command
    cluster/hactl.py SOCKET --drain app/r2 [--timeout 10]  # preStop: stop new requests, wait for 0 in flight
    cluster/hactl.py SOCKET --ready app/r2 [--timeout 10]  # back in rotation, wait until health-checked UP

Standard library only (socat is not installed by default; a unix socket is
three lines of Python). The socket speaks one command per connection.
"""
import argparse
import csv
import io
import socket
import sys
import time


def command(sock_path, cmd):
    """Sends one runtime API command; returns HAProxy's whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(cmd.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def servers(sock_path, backend="app"):
    """`show stat` of a backend's servers: {name: row}, row keyed by CSV field
    (scur = requests in flight to it, stot = requests it was given, status =
    UP / DOWN / DRAIN / MAINT, hrsp_5xx, ...)."""
    text = command(sock_path, "show stat").lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {r["svname"]: r for r in rows if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}


def set_state(sock_path, server, state):
    answer = command(sock_path, f"set server {server} state {state}").strip()
    if answer:  # silence is success; anything else is HAProxy refusing
        raise RuntimeError(f"set server {server} state {state}: {answer}")


def drain(sock_path, server, timeout):
    """Takes `server` out of rotation and waits until nothing is in flight to
    it. HAProxy picks a server per request (no `prefer-last-server`, no
    stickiness), so a drained server gets no new request even on a client's
    kept-alive connection; scur counts the requests it is serving now. Seen
    at 0 twice, 50 ms apart, so a request that was assigned the instant
    before the drain is counted too. Returns (seconds waited, requests in
    flight when the drain began)."""
    backend, name = server.split("/")
    set_state(sock_path, server, "drain")
    t0 = time.monotonic()
    zero_seen, first = 0, None
    while True:
        scur = int(servers(sock_path, backend)[name]["scur"] or 0)
        first = scur if first is None else first
        zero_seen = zero_seen + 1 if scur == 0 else 0
        if zero_seen >= 2:
            return time.monotonic() - t0, first
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{server} still has {scur} request(s) in flight after {timeout} s")
        time.sleep(0.05)


def ready(sock_path, server, timeout):
    """Puts `server` back in rotation and waits until its health check says UP
    (checks every 500 ms, rise 1: one good /healthz)."""
    backend, name = server.split("/")
    set_state(sock_path, server, "ready")
    t0 = time.monotonic()
    while True:
        status = servers(sock_path, backend)[name]["status"]
        if status == "UP":
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{server} is {status}, not UP, {timeout} s after `state ready`")
        time.sleep(0.05)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("socket")
    p.add_argument("command", nargs="?")
    p.add_argument("--drain", metavar="BACKEND/SERVER")
    p.add_argument("--ready", metavar="BACKEND/SERVER")
    p.add_argument("--timeout", type=float, default=10)
    a = p.parse_args()
    try:
        if a.drain:
            seconds, in_flight = drain(a.socket, a.drain, a.timeout)
            print(f"{a.drain}: drained: {in_flight} request(s) in flight, 0 after {seconds:.2f} s")
        elif a.ready:
            print(f"{a.ready}: UP {ready(a.socket, a.ready, a.timeout):.2f} s after `state ready`")
        elif a.command:
            sys.stdout.write(command(a.socket, a.command))
        else:
            p.error("a command, --drain or --ready")
    except (OSError, RuntimeError, TimeoutError) as e:
        print(f"hactl: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
