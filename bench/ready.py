#!/usr/bin/env python3
"""Cold start to serving: wait until a boot stack answers both HTTP and TFTP.

Usage: ready.py HTTP_HOST:PORT TFTP_HOST:PORT [TIMEOUT_S]

Prints "armed" once it is polling (start the stack after that), then, when the stack serves,
the wall-clock time (seconds since the epoch) at which both answered: an HTTP GET of
/ipxe/init.ipxe with a 200, and a TFTP read request for a file that does not exist with a TFTP
ERROR (any TFTP reply proves the service reads requests). Polls every 0.5 ms without waiting on
either probe (a TFTP reply is read on the next pass), so the time is late by at most a pass.
Exit 1 on timeout.
"""
import socket
import sys
import time


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def http_ok(a):
    try:
        with socket.create_connection(a, timeout=0.2) as s:
            s.sendall(b"GET /ipxe/init.ipxe HTTP/1.1\r\nHost: rackboot\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


RRQ = b"\x00\x01cold-start-probe\x00octet\x00"


def tftp_answered(sock):
    """A TFTP reply (ERROR, DATA or OACK) to any earlier probe is waiting (non-blocking)."""
    while True:
        try:
            data, _ = sock.recvfrom(1024)
        except OSError:  # nothing (more) to read, or an ICMP error for a probe
            return False
        if data[:2] in (b"\x00\x05", b"\x00\x03", b"\x00\x06"):
            return True


def main():
    http, tftp = addr(sys.argv[1]), addr(sys.argv[2])
    deadline = time.time() + (float(sys.argv[3]) if len(sys.argv) > 3 else 10)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    print("armed", flush=True)
    h = t = False
    while time.time() < deadline:
        h = h or http_ok(http)
        t = t or tftp_answered(sock)
        if not t:
            try:
                sock.sendto(RRQ, tftp)  # answered by the next pass if the server is up
            except OSError:
                pass
        if h and t:
            print(f"{time.time():.6f}", flush=True)
            return 0
        time.sleep(0.0005)
    return 1


if __name__ == "__main__":
    sys.exit(main())
