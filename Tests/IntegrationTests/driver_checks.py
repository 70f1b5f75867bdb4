#!/usr/bin/env python3
"""asyncpg through pgfleet's proxy. Run by DriverIntegrationTests with a JSON description on stdin:

  {"host": "127.0.0.1", "port": 16432, "user": "postgres@acme", "password": "pw", "reuse": true}

Prints "ok NAME" or "FAIL NAME: why" per check; exits 1 if any failed.
"""
import asyncio
import json
import ssl
import sys

import asyncpg

cfg = json.load(sys.stdin)
failures = []


def tls():
    # The harness's certificate is self-signed; these checks are about the session, not verification.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def connect(use_tls):
    return await asyncpg.connect(
        host=cfg["host"], port=cfg["port"], user=cfg["user"], password=cfg["password"], database="postgres",
        ssl=tls() if use_tls else False,
    )


async def check(name, coroutine):
    try:
        await coroutine
        print(f"ok {name}", flush=True)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported by name
        failures.append(name)
        print(f"FAIL {name}: {type(exc).__name__}: {exc}".replace("\n", " | "), flush=True)


async def close_returns(use_tls):
    conn = await connect(use_tls)
    assert await conn.fetchval("select 1") == 1
    # Terminate, then asyncpg waits for the server side to close, as PostgreSQL does.
    await asyncio.wait_for(conn.close(), 5)


async def session_reused(use_tls):
    pids = []
    for _ in range(5):
        conn = await connect(use_tls)
        pids.append(await conn.fetchval("select pg_backend_pid()"))
        await asyncio.wait_for(conn.close(), 5)
    # A released session is reset before its next client, so a client arriving meanwhile may get a
    # second one; without reuse every connection is a new backend.
    assert len(set(pids)) <= 2, f"backends {pids}"


async def main():
    # Reuse first, while the pool holds no session yet.
    if cfg.get("reuse"):
        await check("reuse_plaintext", session_reused(False))
        await check("reuse_tls", session_reused(True))
    await check("close_plaintext", close_returns(False))
    await check("close_tls", close_returns(True))


asyncio.run(main())
sys.exit(1 if failures else 0)
