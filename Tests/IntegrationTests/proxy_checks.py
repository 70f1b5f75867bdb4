#!/usr/bin/env python3
"""Client-side checks of pgfleet's proxy that need a real driver (psycopg, libpq 18) or raw
bytes on the wire. Run by FleetProxyIntegrationTests with a JSON description on stdin:

  {"host": "127.0.0.1", "port": 6432, "rootcert": "...", "tenants": {"acme": "pw", ...},
   "stopped": "gamma", "superuser": "postgres"}

Prints "ok NAME" or "FAIL NAME: why" per check; exits 1 if any failed.
"""
import json
import resource
import socket
import ssl
import struct
import sys
import threading
import time

import psycopg
from psycopg import errors

cfg = json.load(sys.stdin)
HOST, PORT = cfg["host"], cfg["port"]
TENANTS = cfg["tenants"]
SU = cfg["superuser"]
failures = []


def check(name):
    def wrap(fn):
        try:
            fn()
            print(f"ok {name}", flush=True)
        except Exception as exc:  # noqa: BLE001 - every failure is reported by name
            failures.append(name)
            print(f"FAIL {name}: {type(exc).__name__}: {exc}".replace("\n", " | "), flush=True)
        return fn
    return wrap


def connect(tenant=None, password=None, user=None, **kw):
    user = user or (f"{SU}@{tenant}" if tenant else SU)
    params = dict(host=HOST, port=PORT, user=user, dbname="postgres", connect_timeout=10)
    if password is not None:
        params["password"] = password
    params.update(kw)
    return psycopg.connect(**params)


def expect_refusal(fragment, **kw):
    """libpq reports the proxy's message; psycopg keeps no SQLSTATE for connection-time errors."""
    try:
        connect(**kw).close()
    except psycopg.OperationalError as exc:
        assert fragment in str(exc), f"expected {fragment!r} in {str(exc)!r}"
        return
    raise AssertionError("connected, expected an error")


def error_fields(params):
    """Sends a plaintext startup packet and decodes the ErrorResponse the proxy answers with."""
    reply = raw(startup(params))
    assert reply[:1] == b"E", f"expected an ErrorResponse, got {reply[:20]!r}"
    (length,) = struct.unpack("!i", reply[1:5])
    fields = {}
    for item in reply[5:1 + length].split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode()
    return fields


def expect_sqlstate(sqlstate, fragment, params, **kw):
    fields = error_fields(params)
    assert fields.get("C") == sqlstate, f"expected SQLSTATE {sqlstate}, got {fields}"
    assert fragment in fields.get("M", ""), f"expected {fragment!r} in {fields}"
    assert fields.get("S") == "FATAL"
    expect_refusal(fragment, **kw)


def raw(payload, read=True, timeout=5.0):
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        s.sendall(payload)
        if not read:
            return b""
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def startup(params, version=196608):
    body = struct.pack("!i", version) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def proxy_is_up():
    first = next(iter(TENANTS))
    with connect(first, TENANTS[first], sslmode="disable") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


@check("psycopg routes user@tenant over TLS and reaches the right cluster")
def _():
    for tenant, password in TENANTS.items():
        with connect(tenant, password, sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("show cluster_name").fetchone()[0] == tenant


@check("psycopg with PostgreSQL 17 direct TLS (sslnegotiation=direct, ALPN postgresql)")
def _():
    tenant, password = next(iter(TENANTS.items()))
    with connect(tenant, password, sslmode="require", sslnegotiation="direct") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select current_user").fetchone()[0] == SU


@check("verify-full against the generated certificate")
def _():
    tenant, password = next(iter(TENANTS.items()))
    with connect(tenant, password, sslmode="verify-full", sslrootcert=cfg["rootcert"], host="localhost") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


@check("no tenant named: 08004 and the accepted forms")
def _():
    expect_sqlstate("08004", "user@tenant", {"user": SU}, user=SU, password="x", sslmode="disable")


@check("unknown tenant: 3D000")
def _():
    expect_sqlstate("3D000", 'tenant "nosuch" does not exist', {"user": f"{SU}@nosuch"}, tenant="nosuch", password="x", sslmode="disable")


@check("stopped tenant: 57P03 with how to start it")
def _():
    stopped = cfg["stopped"]
    expect_sqlstate("57P03", "is stopped", {"user": f"{SU}@{stopped}"}, tenant=stopped, password="x", sslmode="disable")


@check("injected tenant names are refused: 08004")
def _():
    for bad in ("../acme", "ACME", "acme;drop", "a" * 64):
        expect_sqlstate("08004", "invalid tenant name", {"user": f"{SU}@{bad}"}, user=f"{SU}@{bad}", password="x", sslmode="disable")


@check("two different tenants named: 08004")
def _():
    names = list(TENANTS)
    expect_sqlstate(
        "08004", "two different tenants", {"user": f"{SU}@{names[0]}", "options": f"-ctenant={names[1]}"},
        tenant=names[0], password="x", options=f"-ctenant={names[1]}", sslmode="disable",
    )


@check("one tenant's credentials do not open another tenant")
def _():
    names = list(TENANTS)
    expect_refusal("password authentication failed", tenant=names[1], password=TENANTS[names[0]], sslmode="require")
    # And the right ones do.
    with connect(names[1], TENANTS[names[1]], sslmode="require") as conn:
        assert conn.execute("show cluster_name").fetchone()[0] == names[1]


@check("cancel through the proxy reaches the running query")
def _():
    tenant, password = next(iter(TENANTS.items()))
    with connect(tenant, password, sslmode="require") as conn:
        key = conn.pgconn.backend_pid
        real = conn.execute("select pg_backend_pid()").fetchone()[0]
        # The client sees its backend's own pid (with a secret of the proxy's), so NOTIFY pids
        # and pg_terminate_backend match it.
        assert key == real, f"the proxy told the client pid {key}, its backend is {real}"
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        try:
            conn.execute("select pg_sleep(30)")
            raise AssertionError("pg_sleep(30) finished: the cancel did not arrive")
        except errors.QueryCanceled:
            pass
        assert time.monotonic() - started < 10


@check("a wrong cancel key does nothing and says nothing")
def _():
    tenant, password = next(iter(TENANTS.items()))
    with connect(tenant, password, sslmode="disable") as conn:
        pid = conn.pgconn.backend_pid

        def wrong():
            time.sleep(0.3)
            for guess in (pid, pid + 1, 1):
                reply = raw(struct.pack("!iiii", 16, 80877102, guess, 0x12345678), timeout=2)
                assert reply == b"", f"the proxy answered a cancel request: {reply!r}"

        t = threading.Thread(target=wrong)
        t.start()
        conn.execute("select pg_sleep(1.5)")
        t.join()


@check("bytes buffered after SSLRequest are rejected (CVE-2021-23214)")
def _():
    reply = raw(struct.pack("!ii", 8, 80877103) + startup({"user": "x@acme"}))
    assert reply[:1] == b"E", f"expected an ErrorResponse, got {reply[:20]!r}"
    assert b"08P01" in reply


@check("oversized, undersized and truncated startup packets get an error; the proxy stays up")
def _():
    for length in (10001, 2**31 - 1, 7, 0, -1):
        reply = raw(struct.pack("!i", length) + struct.pack("!i", 196608))
        assert reply[:1] == b"E", f"length {length}: expected an ErrorResponse, got {reply[:20]!r}"
    # A truncated packet: the proxy waits for the rest, then times out (startup timeout) and closes.
    packet = startup({"user": "x@acme", "database": "postgres"})
    reply = raw(packet[:10], timeout=30)
    assert reply == b"" or reply[:1] == b"E", f"unexpected reply {reply[:20]!r}"
    # Garbage and a protocol 2.0 startup.
    assert raw(b"\x00\x00\x00\x08\x00\x02\x00\x00")[:1] == b"E"
    assert raw(startup({"user": "x@acme"}, version=0x00020000))[:1] == b"E"
    proxy_is_up()


@check("newer protocol versions are negotiated down to 3.0")
def _():
    tenant, password = next(iter(TENANTS.items()))
    s = socket.create_connection((HOST, PORT), timeout=5)
    try:
        s.sendall(startup({"user": f"{SU}@{tenant}", "_pq_.nothing": "1"}, version=0x00030002))
        data = s.recv(4096)
        assert data[:1] == b"v", f"expected NegotiateProtocolVersion, got {data[:20]!r}"
        length, newest, count = struct.unpack("!iii", data[1:13])
        assert newest == 0 and count == 1 and b"_pq_.nothing" in data
    finally:
        s.close()


def message(kind, body):
    return kind + struct.pack("!i", len(body) + 4) + body


def sasl_initial(mechanism, data):
    return message(b"p", mechanism + b"\0" + struct.pack("!i", len(data)) + data)


@check("malformed SCRAM messages to the proxy's own SCRAM check get an error; the proxy stays up")
def _():
    tenant = next(iter(TENANTS))
    hello = startup({"user": f"{SU}@{tenant}", "database": "postgres"})
    cases = [
        # (what follows the startup packet, what the answer must contain)
        (sasl_initial(b"SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"), b"28000"),
        (sasl_initial(b"SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"), b"28000"),
        (sasl_initial(b"SCRAM-SHA-256", b"\xff\xfe,,"), b"08P01"),
        (sasl_initial(b"SCRAM-SHA-256", b"n,,n=,r=abc") + message(b"p", b"c=biws,r=wrong,p=AAAA"), b"08P01"),
        (sasl_initial(b"SCRAM-SHA-256", b"n,,n=,r=abc") + message(b"p", b"garbage"), b"08P01"),
        (message(b"p", struct.pack("!i", -5)), b"08P01"),
        (b"p" + struct.pack("!i", 0x7FFFFFFF), b"08P01"),
        (message(b"Q", b"select 1\0"), b""),
    ]
    for payload, expected in cases:
        answer = raw(hello + payload)
        assert answer[:1] == b"R", f"expected an authentication request first, got {answer[:16]!r}"
        assert expected in answer, f"{payload[:40]!r}: expected {expected!r} in {answer[-120:]!r}"
    proxy_is_up()


@check("1,000 silent connections do not slow anyone else")
def _():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    tenant, password = next(iter(TENANTS.items()))
    silent = []
    try:
        for _ in range(1000):
            silent.append(socket.create_connection((HOST, PORT), timeout=5))
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            with connect(tenant, password, sslmode="disable") as conn:
                conn.execute("select 1")
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0, f"a connection took {slowest:.3f}s with 1,000 silent ones open"
    finally:
        for s in silent:
            s.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@check("a client that stops reading stalls only itself, and the proxy does not buffer its result")
def _():
    tenant, password = next(iter(TENANTS.items()))
    pid = cfg.get("daemon_pid")
    before = rss_kib(pid) if pid else 0
    stalled = connect(tenant, password, sslmode="disable")
    try:
        # About 400 MB of rows, sent and never read: back-pressure must reach the tenant's server.
        stalled.pgconn.send_query(b"select repeat('x', 2000) from generate_series(1, 200000)")
        time.sleep(2)
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            with connect(tenant, password, sslmode="disable") as conn:
                assert conn.execute("select count(*) from generate_series(1, 1000)").fetchone()[0] == 1000
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0, f"a query took {slowest:.3f}s while another client was stalled"
        if pid:
            grown = (rss_kib(pid) - before) / 1024
            assert grown < 64, f"the daemon grew by {grown:.0f} MiB while a client was not reading"
    finally:
        stalled.close()


print(f"{len(failures)} checks failed" if failures else "all checks passed", flush=True)
sys.exit(1 if failures else 0)
