#!/usr/bin/env python3
"""The proxy at the daemon's descriptor limit, driven by DescriptorIntegrationTests with a JSON
description on stdin:

  {"host": "127.0.0.1", "port": 6432, "user": "postgres@acme", "password": "...",
   "other_user": "postgres@beta", "other_password": "...",
   "clients": 400, "daemon_pid": 1234, "psql": "/usr/lib/postgresql/15/bin/psql"}

Prints one JSON object with what it saw; the Swift test decides what passes.
"""
import asyncio
import json
import os
import ssl
import struct
import subprocess
import sys
import time

import psycopg

cfg = json.load(sys.stdin)
HOST, PORT, USER, PASSWORD = cfg["host"], cfg["port"], cfg["user"], cfg["password"]
PID = cfg["daemon_pid"]
MARK = "out of file descriptors"


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def session(user=USER, password=PASSWORD):
    """A session held open through the proxy (psycopg, libpq 18, sslmode=prefer: over TLS)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            host=HOST, port=PORT, user=user, password=password, dbname="postgres", connect_timeout=60)
        await conn.execute("SELECT 1")
        return conn
    except psycopg.Error as exc:
        return str(exc).strip()


def startup_packet():
    body = struct.pack("!i", 196608) + b"".join(k + b"\0" + v + b"\0" for k, v in [
        (b"user", USER.encode()), (b"database", b"postgres")]) + b"\0"
    return struct.pack("!i", len(body) + 4) + body


async def read_error(reader):
    kind = await reader.readexactly(1)
    if kind != b"E":
        return {"kind": kind.decode("latin-1")}
    length = struct.unpack("!i", await reader.readexactly(4))[0]
    body = await reader.readexactly(length - 4)
    fields = {chr(part[0]): part[1:].decode() for part in body.split(b"\0") if part}
    return {"kind": "E", "sqlstate": fields.get("C"), "message": fields.get("M")}


async def raw_attempt(tls):
    """One client on the wire: an SSLRequest (then TLS) or a plain startup packet, then the answer."""
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
        if tls:
            writer.write(struct.pack("!ii", 8, 80877103))
            await writer.drain()
            answer = await asyncio.wait_for(reader.readexactly(1), 60)
            if answer != b"S":
                return {"kind": "ssl answer " + answer.decode("latin-1")}
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            await writer.start_tls(context)
        writer.write(startup_packet())
        await writer.drain()
        result = await asyncio.wait_for(read_error(reader), 60)
        writer.close()
        return result
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return {"kind": f"{type(exc).__name__}: {exc}"}


def psql(sslmode):
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="30")
    done = subprocess.run(
        [cfg["psql"], "-X", "-At", "-c", "SELECT 1", f"host={HOST} port={PORT} user={USER} dbname=postgres sslmode={sslmode}"],
        env=env, capture_output=True, text=True, timeout=60)
    return {"status": done.returncode, "stderr": done.stderr.strip()}


async def query(conn, sql):
    try:
        row = await (await conn.execute(sql)).fetchone()
        return row[0]
    except psycopg.Error as exc:
        return str(exc)


async def main():
    out = {}
    # A session on another tenant, open before the rush: it must not notice.
    other = await session(cfg["other_user"], cfg["other_password"])
    if isinstance(other, str):
        raise SystemExit(f"the other tenant's session did not open: {other}")
    # Every client at once: those that fit get sessions, the rest must be told why.
    results = await asyncio.gather(*(session() for _ in range(cfg["clients"])))
    held = [r for r in results if not isinstance(r, str)]
    errors = [r for r in results if isinstance(r, str)]
    out["sessions"] = len(held)
    out["refused"] = sum(MARK in e for e in errors)
    out["other_errors"] = [e for e in errors if MARK not in e][:5]
    out["refusal_text"] = next((e for e in errors if MARK in e), None)
    out["fds_at_limit"] = open_fds(PID)

    # At the limit, clients that say nothing use up what is left for refusals, so the proxy
    # stops accepting; more clients queue in the listen backlog behind them. The daemon must
    # sit idle meanwhile (no accept loop spinning on EMFILE) and keep serving its sessions.
    silent = [await asyncio.open_connection(HOST, PORT) for _ in range(25)]
    waiting = [asyncio.create_task(raw_attempt(tls=i % 2 == 0)) for i in range(20)]
    before, start = cpu_ticks(PID), time.monotonic()
    await asyncio.sleep(3)  # the measurement's window, not a wait for something
    out["cpu"] = (cpu_ticks(PID) - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - start)
    out["fds_while_holding"] = open_fds(PID)
    out["held_query"] = await query(held[0], "SELECT 42") if held else None
    out["other_query"] = await query(other, "SELECT 43")
    # They are answered once the silent ones time out (the proxy's startup timeout).
    out["raw"] = await asyncio.gather(*waiting)
    for _, writer in silent:
        writer.close()

    out["psql_prefer"] = await asyncio.to_thread(psql, "prefer")
    out["psql_disable"] = await asyncio.to_thread(psql, "disable")

    # Once the sessions close, as many as before are served again.
    for conn in held:
        await conn.close()
    await other.close()
    deadline = time.monotonic() + 60
    while True:
        probe = await session()
        if not isinstance(probe, str):
            await probe.close()
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    again = list(await asyncio.gather(*(session() for _ in range(len(held)))))
    # The closed sessions' sockets go a few at a time (their server sessions return to the pool
    # first), so a client refused now is asked again, for a while, before it counts as lost.
    retry_until = time.monotonic() + 30
    while any(isinstance(r, str) for r in again) and time.monotonic() < retry_until:
        await asyncio.sleep(0.2)
        again = [r if not isinstance(r, str) else await session() for r in again]
    out["again"] = sum(not isinstance(r, str) for r in again)
    out["again_errors"] = [r for r in again if isinstance(r, str)][:5]
    for conn in again:
        if not isinstance(conn, str):
            await conn.close()
    print(json.dumps(out))


asyncio.run(main())
