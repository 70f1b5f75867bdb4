#!/usr/bin/env python3
"""Times the phases of PostgreSQL logins (SCRAM-SHA-256, plaintext TCP) against several servers.

Usage: login_phases.py COUNT NAME=HOST:PORT:USER [NAME=HOST:PORT:USER ...]

The password comes from PGPASSWORD (never the command line). Logins go to the servers in turn,
one each, COUNT times, so a slow phase of the machine hits all of them. Each login: connect,
StartupMessage (database postgres, application_name pgbench), SCRAM-SHA-256 without channel
binding (computed here, with hashlib's PBKDF2), `select 1`, Terminate. Prints one line per
phase: the phase, then NAME=MEDIAN_MICROSECONDS for each server, tab-separated.
"""
import base64
import hashlib
import hmac
import os
import socket
import statistics
import struct
import sys
import time

PHASES = [
    ("connect and startup until the SASL request", 0),
    ("client-first until server-first", 1),
    ("client-final until the final SASL message", 3),
    ("the final SASL message until ReadyForQuery", 4),
    ("select 1", 5),
    ("the login without the client's own PBKDF2", None),
]


def frame(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


class Reader:
    def __init__(self, sock):
        self.sock, self.buffer = sock, b""

    def next(self):
        while True:
            if len(self.buffer) >= 5:
                length = struct.unpack("!I", self.buffer[1:5])[0]
                if len(self.buffer) >= 1 + length:
                    kind, body = self.buffer[0:1], self.buffer[5:1 + length]
                    self.buffer = self.buffer[1 + length:]
                    if kind == b"E":
                        raise RuntimeError("server error: %r" % body)
                    return kind, body
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed")
            self.buffer += data


def login(host, port, user, password):
    marks = [time.perf_counter()]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = Reader(sock)
    body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0postgres\0application_name\0pgbench\0\0"
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    kind, body = reader.next()
    if kind != b"R" or struct.unpack("!I", body[:4])[0] != 10 or b"SCRAM-SHA-256\0" not in body:
        raise RuntimeError("expected a SCRAM-SHA-256 request, got %r %r" % (kind, body[:40]))
    marks.append(time.perf_counter())
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=,r=" + nonce
    first = ("n,," + first_bare).encode()
    sock.sendall(frame(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
    kind, body = reader.next()
    marks.append(time.perf_counter())
    server_first = body[4:].decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = "c=biws,r=" + fields["r"]
    message = (first_bare + "," + server_first + "," + without_proof).encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    marks.append(time.perf_counter())
    sock.sendall(frame(b"p", (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()))
    while True:
        kind, body = reader.next()
        if kind == b"R" and struct.unpack("!I", body[:4])[0] == 12:
            marks.append(time.perf_counter())
        if kind == b"Z":
            break
    marks.append(time.perf_counter())
    sock.sendall(frame(b"Q", b"select 1\0"))
    while reader.next()[0] != b"Z":
        pass
    marks.append(time.perf_counter())
    sock.sendall(frame(b"X", b""))
    sock.close()
    if len(marks) != 7:
        raise RuntimeError("no final SASL message")
    steps = [(marks[k + 1] - marks[k]) * 1e6 for k in range(6)]
    return steps + [sum(steps[:5]) - steps[2]]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    count = int(sys.argv[1])
    password = os.environ.get("PGPASSWORD")
    if not password:
        sys.exit("error: PGPASSWORD is not set")
    servers = []
    for spec in sys.argv[2:]:
        name, _, address = spec.partition("=")
        host, port, user = address.split(":", 2)
        servers.append((name, host, int(port), user))
    samples = {name: [] for name, _, _, _ in servers}
    for _ in range(count):
        for name, host, port, user in servers:
            samples[name].append(login(host, port, user, password))
    for label, index in PHASES:
        column = 6 if index is None else index
        print("\t".join([label] + ["%s=%.0f" % (name, statistics.median(s[column] for s in samples[name])) for name in samples]))


if __name__ == "__main__":
    main()
