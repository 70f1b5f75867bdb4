# shellcheck shell=bash
# Shared helpers for pgfleet's benchmarks (bench/*.sh). Source it from a script that runs with
# `set -euo pipefail`; it defines functions and a few variables, and installs its cleanup trap in
# bench_init.
#
#   bench_init NAME          temp dir $BENCH_TMP (0711, under /tmp), EXIT/INT/TERM trap, stale-run sweep
#   bench_defer CMD...       run CMD at exit (last deferred runs first); failures are ignored
#   bench_build_pgfleet      sets $PGFLEET (static-stdlib release build, reused when up to date; $PGFLEET_BIN wins)
#   bench_install_pkg PKG    apt-get install without letting the package start its service
#   bench_free_port          prints a free TCP port on 127.0.0.1
#   bench_add_user NAME      a throwaway system user, removed at exit
#   bench_as USER CMD...     exec CMD as USER (setpriv: no shell, no PAM, signals go straight to CMD)
#   bench_start_daemon ROOT [serve args]   pgfleet serve in the background; sets $BENCH_DAEMON_PID
#   bench_create_tenant NAME VAR           creates a tenant, its generated password into $VAR
#   bench_tenant_field NAME FIELD          one field of `tenant info --json`
#   bench_pgbench OUT ARGS...              runs pgbench (connection from the PG* environment), prints its TPS
#   bench_median N...        the median of numbers
#   bench_machine            one line: nproc, CPU model, kernel, load
#   bench_footer             the report's last lines: CLI retries, load before/after, machine, busy notes
#
# Every process the helpers start has $BENCH_TMP on its command line (or is a tenant postmaster
# under it), so a later run can tell a dead run's leftovers from anything else and sweep them.

BENCH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_TMP=""
BENCH_DAEMON_PID=""
BENCH_ROOT=""
BENCH_USER_PREFIX="${BENCH_USER_PREFIX:-pgfb-}"
_bench_deferred=()

bench_log() { printf '==> %s\n' "$*" >&2; }
bench_warn() { printf 'warning: %s\n' "$*" >&2; }
bench_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

bench_need_root() {
    [ "$(id -u)" -eq 0 ] || bench_die "run this as root: tenants get their own OS users only then, and the helpers create throwaway users"
}

# --- temp dir, cleanup, stale runs --------------------------------------------------------------

bench_init() {
    local name="$1"
    bench_need_root
    _bench_sweep_stale
    BENCH_TMP="$(mktemp -d "/tmp/pgfleet-bench-$name.XXXXXX")"
    chmod 0711 "$BENCH_TMP"
    mkdir -m 0700 "$BENCH_TMP/.state"
    echo "$$" >"$BENCH_TMP/.state/owner"
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    bench_log "working in $BENCH_TMP"
}

bench_defer() {
    _bench_deferred+=("$*")
}

_bench_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ "${#_bench_deferred[@]}" -gt 0 ]; then
        bench_log "cleaning up"
        local i
        for ((i = ${#_bench_deferred[@]} - 1; i >= 0; i--)); do
            eval "${_bench_deferred[$i]}" || true
        done
    fi
    [ -n "$BENCH_TMP" ] && _bench_sweep_dir "$BENCH_TMP"
    exit "$status"
}

# Kills $pid only if it still is one of ours: its command line mentions $dir.
_bench_kill_ours() {
    local pid="$1" dir="$2" signal="${3:-TERM}"
    [ -r "/proc/$pid/cmdline" ] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir" || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
}

_bench_wait_gone() {
    local pid="$1" seconds="$2" i
    for ((i = 0; i < seconds * 10; i++)); do
        [ -d "/proc/$pid" ] || return 0
        # A zombie child of ours is gone for our purposes.
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
        sleep 0.1
    done
    return 1
}

# Removes everything a run left under $dir: processes recorded in .state/pids, postmasters of
# data directories under it, users recorded in .state/users, then the directory.
_bench_sweep_dir() {
    local dir="$1" pid pidfile user
    if [ -f "$dir/.state/pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            _bench_kill_ours "$pid" "$dir" TERM
            _bench_wait_gone "$pid" 60 || _bench_kill_ours "$pid" "$dir" KILL
        done < <(tac "$dir/.state/pids")
    fi
    while IFS= read -r pidfile; do
        pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        # A postmaster's command line names its data directory (-D), which is under $dir.
        _bench_kill_ours "$pid" "$dir" INT
        _bench_wait_gone "$pid" 30 || _bench_kill_ours "$pid" "$dir" QUIT
    done < <(find "$dir" -name postmaster.pid -path '*/data/*' 2>/dev/null)
    if [ -f "$dir/.state/users" ]; then
        while read -r user; do
            [ -n "$user" ] || continue
            if id "$user" >/dev/null 2>&1; then
                pkill -KILL -u "$user" 2>/dev/null || true
                userdel "$user" 2>/dev/null || bench_warn "could not remove user $user"
            fi
        done <"$dir/.state/users"
    fi
    rm -rf "$dir"
}

# Directories of earlier runs whose script is gone (killed with SIGKILL, machine reset, …).
_bench_sweep_stale() {
    local dir owner
    for dir in /tmp/pgfleet-bench-*.*; do
        [ -d "$dir/.state" ] || continue
        owner="$(cat "$dir/.state/owner" 2>/dev/null || true)"
        if [[ "$owner" =~ ^[0-9]+$ ]] && [ -d "/proc/$owner" ]; then continue; fi
        bench_log "removing the leftovers of an earlier run: $dir"
        _bench_sweep_dir "$dir"
    done
}

_bench_record() {
    echo "$2" >>"$BENCH_TMP/.state/$1"
}

# --- tools ----------------------------------------------------------------------------------------

bench_build_pgfleet() {
    if [ -n "${PGFLEET_BIN:-}" ]; then
        [ -x "$PGFLEET_BIN" ] || bench_die "PGFLEET_BIN=$PGFLEET_BIN is not executable"
        PGFLEET="$PGFLEET_BIN"
        bench_log "using $PGFLEET (PGFLEET_BIN)"
        return
    fi
    PGFLEET="$BENCH_REPO/.build/release/pgfleet"
    # The Swift runtime and Foundation are linked statically: every CLI call starts a process,
    # and loading a dozen shared Swift libraries cost ~4 ms of each. A release build made
    # without the flag (by hand) links them dynamically and is rebuilt.
    if [ -x "$PGFLEET" ] && [ -z "$(cd "$BENCH_REPO" && find Sources Package.swift Package.resolved -newer "$PGFLEET" -print -quit)" ] \
        && ! { command -v readelf >/dev/null && readelf -d "$PGFLEET" | grep -q 'NEEDED.*libswiftCore'; }; then
        bench_log "reusing the release build $PGFLEET (newer than every source file)"
        return
    fi
    command -v swift >/dev/null || bench_die "swift is not on PATH; build pgfleet or set PGFLEET_BIN"
    bench_log "building pgfleet in release mode (swift build -c release --static-swift-stdlib --product pgfleet);"
    bench_log "  the first build takes 5-15 minutes on 2 cores, and waits if another build holds .build/"
    (cd "$BENCH_REPO" && swift build -c release --static-swift-stdlib --product pgfleet >&2)
    [ -x "$PGFLEET" ] || bench_die "the build did not produce $PGFLEET"
}

# apt-get install without starting the package's service (Debian starts pgbouncer on 6432 otherwise):
# a policy-rc.d that refuses, in place only for the install and only if the host has none.
bench_install_pkg() {
    local pkg="$1" policy=/usr/sbin/policy-rc.d ours=0
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed'; then return; fi
    bench_log "installing $pkg (apt-get install -y $pkg; its service is not started)"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# pgfleet bench: no service starts during this install\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        ours=1
        bench_defer "[ -f $policy ] && grep -q 'pgfleet bench' $policy && rm -f $policy"
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >&2 || {
        bench_log "apt-get install failed; updating the package lists and retrying"
        apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >&2
    } || status=$?
    [ "$ours" -eq 1 ] && rm -f "$policy"
    [ "$status" -eq 0 ] || bench_die "could not install $pkg"
    # The package enables its unit for the next boot; ours is a benchmark-only install.
    if command -v systemctl >/dev/null; then
        if [ -d /run/systemd/system ]; then systemctl disable --now "$pkg" >/dev/null 2>&1 || true; else systemctl disable "$pkg" >/dev/null 2>&1 || true; fi
    fi
}

bench_free_port() {
    local port used i
    used="$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)"
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 12000))
        if ! grep -qx "$port" <<<"$used"; then
            echo "$port"
            return
        fi
    done
    bench_die "no free TCP port found"
}

bench_add_user() {
    local name="$1"
    if id "$name" >/dev/null 2>&1; then bench_die "user $name exists already"; fi
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group "$name"
    _bench_record users "$name"
}

bench_as() {
    local user="$1"
    shift
    setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups --reset-env -- "$@"
}

# Starts a background process in its own session (Ctrl-C reaches only this script, whose trap
# then stops things in order) and records it for the sweep. Sets $BENCH_LAST_PID.
bench_spawn() {
    local log="$1"
    shift
    setsid "$@" >>"$log" 2>&1 </dev/null &
    BENCH_LAST_PID=$!
    _bench_record pids "$BENCH_LAST_PID"
}

# --- the pgfleet daemon ---------------------------------------------------------------------------

# bench_pgfleet ARGS…: the CLI against the benchmark's daemon (--root goes after the subcommand).
bench_pgfleet() {
    "$PGFLEET" "$@" --root "$BENCH_ROOT"
}

# bench_start_daemon ROOT [extra serve arguments…]
bench_start_daemon() {
    BENCH_ROOT="$1"
    shift
    mkdir -p "$BENCH_ROOT"
    chmod 0711 "$BENCH_ROOT"
    bench_log "starting pgfleet serve --root $BENCH_ROOT $*"
    # The ready pool's OS user, made by the daemon when its pool is on; removed at exit unless
    # it was there before (another run's).
    id "${BENCH_USER_PREFIX}_pool" >/dev/null 2>&1 || _bench_record users "${BENCH_USER_PREFIX}_pool"
    # PGFLEET_SERVE_ARGS: extra options for the daemon under test (e.g. --proxy-threads 1).
    # shellcheck disable=SC2086
    bench_spawn "$BENCH_TMP/serve.log" "$PGFLEET" serve --root "$BENCH_ROOT" --user-prefix "$BENCH_USER_PREFIX" "$@" ${PGFLEET_SERVE_ARGS:-}
    BENCH_DAEMON_PID=$BENCH_LAST_PID
    bench_defer bench_stop_daemon
    local i
    for ((i = 0; i < 600; i++)); do
        if "$PGFLEET" status --root "$BENCH_ROOT" >/dev/null 2>&1; then return; fi
        [ -d "/proc/$BENCH_DAEMON_PID" ] || break
        sleep 0.1
    done
    tail -n 20 "$BENCH_TMP/serve.log" >&2
    bench_die "pgfleet serve did not come up (log above, $BENCH_TMP/serve.log)"
}

# SIGTERM: the daemon stops its tenants (fast shutdown) and exits.
bench_stop_daemon() {
    [ -n "$BENCH_DAEMON_PID" ] && [ -d "/proc/$BENCH_DAEMON_PID" ] || return 0
    bench_log "stopping pgfleet serve (pid $BENCH_DAEMON_PID, SIGTERM)"
    kill -TERM "$BENCH_DAEMON_PID" 2>/dev/null || true
    if ! _bench_wait_gone "$BENCH_DAEMON_PID" 60; then
        bench_warn "pgfleet serve did not stop within 60 s; killing it"
        kill -KILL "$BENCH_DAEMON_PID" 2>/dev/null || true
    fi
    wait "$BENCH_DAEMON_PID" 2>/dev/null || true
    BENCH_DAEMON_PID=""
}

# bench_create_tenant NAME VAR [extra create arguments…]: the generated password goes into $VAR,
# never to the terminal or a command line. The tenant is dropped at exit.
bench_create_tenant() {
    local name="$1" var="$2" out password user attempt
    shift 2
    bench_log "creating tenant $name"
    bench_defer "bench_drop_tenant $name"
    # The OS user the daemon will create, recorded first so that a sweep finds it whatever happens.
    _bench_record users "$BENCH_USER_PREFIX$name"
    for attempt in 1 2; do
        out="$(bench_pgfleet tenant create "$name" "$@" 2>"$BENCH_TMP/create-$name.err")" && break
        cat "$BENCH_TMP/create-$name.err" >&2
        printf -- '--- the last lines of pgfleet serve'"'"'s log:\n' >&2
        tail -n 15 "$BENCH_TMP/serve.log" >&2
        [ "$attempt" -eq 1 ] || bench_die "tenant create $name failed twice"
        # Seen once on a loaded machine: "error: I/O on closed channel" from the CLI.
        bench_warn "tenant create $name failed; dropping whatever it left and trying once more"
        bench_pgfleet tenant drop "$name" --yes >/dev/null 2>&1 || true
    done
    password="$(sed -n 's/^password for [^:]*: //p' <<<"$out" | head -n1)"
    [ -n "$password" ] || bench_die "tenant create printed no generated password (has its output changed?)"
    printf -v "$var" '%s' "$password"
    user="$(bench_tenant_field "$name" osUser)"
    [ "$user" = "$BENCH_USER_PREFIX$name" ] || _bench_record users "$user"
    bench_wait_running "$name" 120
}

bench_tenant_field() {
    bench_pgfleet tenant info "$1" --json | jq -r ".$2"
}

bench_wait_running() {
    local name="$1" seconds="${2:-60}" i state=""
    for ((i = 0; i < seconds * 5; i++)); do
        state="$(bench_tenant_field "$name" state 2>/dev/null || true)"
        [ "$state" = running ] && return
        sleep 0.2
    done
    bench_die "tenant $name is $state, not running, after $seconds s"
}

bench_drop_tenant() {
    [ -n "$BENCH_DAEMON_PID" ] && [ -d "/proc/$BENCH_DAEMON_PID" ] || return 0
    bench_log "dropping tenant $1"
    bench_pgfleet tenant drop "$1" --yes >/dev/null 2>&1 || bench_warn "could not drop tenant $1"
}

# --- measuring ------------------------------------------------------------------------------------

# bench_pgbench OUT ARGS…: pgbench with the connection taken from PGHOST/PGPORT/PGUSER/PGDATABASE
# and PGPASSWORD in the environment (never argv). Output goes to OUT; prints the TPS.
bench_pgbench() {
    local out="$1" tps
    shift
    if ! "$PGBENCH" "$@" >"$out" 2>&1; then
        tail -n 15 "$out" >&2
        bench_die "pgbench $* failed (full output in $out)"
    fi
    if grep -q '^number of failed transactions: [1-9]' "$out"; then
        bench_warn "pgbench $*: $(grep '^number of failed transactions' "$out")"
    fi
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n1)"
    [ -n "$tps" ] || bench_die "no tps line in the output of pgbench $* ($out)"
    printf '%.0f\n' "$tps"
}

bench_median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# bench_ratio A B: A/B with two decimals, "-" when B is missing or zero.
bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0 || a == "") print "-"; else printf "%.2f\n", a / b}'
}

bench_machine() {
    local model
    model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
    printf 'machine: %s cores, %s, kernel %s, load average %s\n' \
        "$(nproc)" "${model:-unknown CPU}" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# Other heavy processes (a concurrent build, a fuzzer) make the numbers noisy: name the ones
# using 20 % of a core or more over one second.
bench_busy_note() {
    local busy
    busy="$(top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ {block++} block == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 20 {printf "%s%s %s%%", sep, $12, $9; sep = ", "}' | head -c 300)"
    [ -n "$busy" ] && printf 'note: busy besides the benchmark: %s; expect noisy numbers\n' "$busy"
    return 0
}

# --- connection timing (wake.sh, provision.sh) -----------------------------------------------------
#
#   bench_python                 sets $BENCH_PYTHON: a python3 that can import psycopg ($PYTHON wins)
#   bench_timer_start            starts the timer: one python3+psycopg process for the whole run, so
#                                neither process start-up nor imports are part of any sample
#   bench_timer_target ID CONNINFO [PWVAR [PEERUSER]]
#                                names a connection; the password is the content of $PWVAR, sent on
#                                the timer's stdin (never argv) and given to libpq as PGPASSWORD;
#                                PEERUSER: connect with that effective uid (peer authentication)
#   bench_timer_query ID         one connect + `select 1` (closing is not timed): prints ms
#   bench_timer_poll ID SECONDS  connect + `select 1` until one succeeds: prints "END_US ATTEMPTS",
#                                END_US the wall clock (µs since the epoch, as $EPOCHREALTIME) when
#                                the row of the first successful `select 1` arrived
#   bench_timer_spawn SECONDS STAMPS PWREGEX CONNINFO PEERUSER COMMAND…
#                                runs COMMAND, then polls as bench_timer_poll, all in the timer
#                                (see the function): "START_US EXIT_US END_US ATTEMPTS"
#   bench_elapsed_ms START [END] ms between two $EPOCHREALTIME values (END: now), one decimal
#   bench_percentile P N...      the P-th percentile (linear between ranks, so P=50 is the median), one decimal
#   bench_loadavg                the 1/5/15-minute load average
#
# The CLI sometimes fails with "error: I/O on closed channel" although the daemon answered in full
# (seen on fast calls such as `tenant info`, more often on a busy machine; see bench/README.md):
#   bench_pgfleet_retry ARGS…    bench_pgfleet, tried up to 3 times when it fails that way; each
#                                retry is counted (bench_cli_retries)
#   bench_tenant_get NAME FIELD  bench_tenant_field with those retries
#   bench_cli_retries            how many calls were retried so far
#
# Debian clusters (pg_createcluster) made by a benchmark are named pgfleet-bench-PID-…:
#   bench_pgcc_name TAG          prints the name for this run, e.g. pgfleet-bench-1234-TAG
#   bench_pgcc_drop VERSION NAME pg_dropcluster --stop (quietly; nothing if it does not exist)
#   bench_pgcc_cleanup_at_exit VERSION   drops every cluster of this run at exit
#   bench_sweep_pgcc             drops the clusters of runs that are gone (killed with SIGKILL, …)

_BENCH_TIMER_PY='
import os, signal, sys, time

signal.signal(signal.SIGINT, signal.SIG_IGN)  # the script handles Ctrl-C and closes our stdin
import psycopg

targets = {}
out = sys.stdout


def reply(*fields):
    out.write("\t".join(str(f) for f in fields).replace("\n", " ") + "\n")
    out.flush()


def once(t):
    """One connect + select 1; returns (ms, wall clock µs when the row arrived)."""
    if t["password"] is None:
        os.environ.pop("PGPASSWORD", None)
    else:
        os.environ["PGPASSWORD"] = t["password"]
    if t["peer"]:
        os.setegid(t["peer"][1])
        os.seteuid(t["peer"][0])
    try:
        start = time.perf_counter_ns()
        conn = psycopg.connect(t["conninfo"], autocommit=True)
        try:
            row = conn.execute("select 1").fetchone()
            end = time.perf_counter_ns()
            wall = time.time_ns() // 1000
        finally:
            conn.close()
    finally:
        if t["peer"]:
            os.seteuid(0)
            os.setegid(0)
        os.environ.pop("PGPASSWORD", None)
    if row != (1,):
        raise RuntimeError("select 1 returned %r" % (row,))
    return (end - start) / 1e6, wall


for line in sys.stdin:
    parts = line.rstrip("\n").split("\t")
    try:
        if parts[0] == "target":
            _, ident, conninfo, peer = parts
            password = sys.stdin.readline().rstrip("\n")
            if peer:
                import pwd
                entry = pwd.getpwnam(peer)
                peer = (entry.pw_uid, entry.pw_gid)
            targets[ident] = {"conninfo": conninfo, "password": password or None, "peer": peer or None}
            reply("ok")
        elif parts[0] == "query":
            ms, _ = once(targets[parts[1]])
            reply("ok", "%.3f" % ms)
        elif parts[0] == "poll":
            target, deadline = targets[parts[1]], time.monotonic() + float(parts[2])
            attempts, last = 0, ""
            while True:
                attempts += 1
                try:
                    _, wall = once(target)
                    reply("ok", wall, attempts)
                    break
                except psycopg.Error as error:
                    last = str(error).strip()
                if time.monotonic() > deadline:
                    reply("error", "no successful select 1 within %s s after %d attempts; last error: %s" % (parts[2], attempts, last))
                    break
                time.sleep(0.005)
        elif parts[0] == "spawn":
            # spawn SECONDS STAMPS PWREGEX CONNINFO PEER ARGV...: runs the command, then at once
            # polls as "poll" does. The password (group 1 of PWREGEX on its stdout) stays in here.
            seconds, stamps, pattern, conninfo, peer = parts[1:6]
            argv = parts[6:]
            import re, subprocess, threading
            lines = []

            def collect(stream):
                for raw in stream:
                    lines.append((time.time_ns() // 1000, raw.decode(errors="replace").rstrip("\n")))

            start_us = time.time_ns() // 1000
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            reader = threading.Thread(target=collect, args=(proc.stderr,))
            reader.start()
            stdout = proc.stdout.read().decode(errors="replace")
            status = proc.wait()
            exit_us = time.time_ns() // 1000
            reader.join()
            if stamps:
                with open(stamps, "w") as f:
                    for stamp, text in lines:
                        f.write("%d.%06d\t%s\n" % (stamp // 1000000, stamp % 1000000, text))
                    f.write("%d.%06d\teof\n" % (exit_us // 1000000, exit_us % 1000000))
            if status != 0:
                reply("error", "%s exited with %d: %s" % (argv[0], status, " | ".join(text for _, text in lines[-15:]) + " | " + stdout[-2000:]))
                continue
            password = None
            if pattern:
                found = re.search(pattern, stdout, re.M)
                if not found:
                    reply("error", "%s printed nothing that matches %s" % (argv[0], pattern))
                    continue
                password = found.group(1)
            stdout = ""
            if peer:
                import pwd
                entry = pwd.getpwnam(peer)
                peer = (entry.pw_uid, entry.pw_gid)
            target, deadline = {"conninfo": conninfo, "password": password, "peer": peer or None}, time.monotonic() + float(seconds)
            attempts, last = 0, ""
            while True:
                attempts += 1
                try:
                    _, wall = once(target)
                    reply("ok", start_us, exit_us, wall, attempts)
                    break
                except psycopg.Error as error:
                    last = str(error).strip()
                if time.monotonic() > deadline:
                    reply("error", "no successful select 1 within %s s after %d attempts; last error: %s" % (seconds, attempts, last))
                    break
                time.sleep(0.005)
        elif parts[0] == "forget":
            targets.pop(parts[1], None)
            reply("ok")
        else:
            reply("error", "unknown command %r" % parts[0])
    except Exception as error:  # reported to the script, which decides
        reply("error", "%s: %s" % (type(error).__name__, str(error).strip()))
'

bench_python() {
    local candidate="${PYTHON:-python3}"
    command -v "$candidate" >/dev/null || bench_die "$candidate not found (set PYTHON to a python3 with psycopg)"
    # The interpreter itself, not a wrapper such as pyenv's shim: no shell script in between.
    BENCH_PYTHON="$("$candidate" -c 'import sys, psycopg; print(sys.executable)' 2>/dev/null)" ||
        bench_die "$candidate cannot import psycopg (pip install 'psycopg[binary]', or set PYTHON)"
}

bench_timer_start() {
    [ -n "${BENCH_PYTHON:-}" ] || bench_python
    # $BENCH_TMP on its command line: a sweep recognises it. It exits when our end of its stdin closes.
    coproc BENCH_TIMER { exec "$BENCH_PYTHON" -c "$_BENCH_TIMER_PY" "$BENCH_TMP" 2>>"$BENCH_TMP/timer.log"; }
    _bench_record pids "$BENCH_TIMER_PID"
    bench_defer bench_timer_stop
    bench_log "timing clients with $("$BENCH_PYTHON" -c 'import sys, psycopg; print("Python %d.%d.%d, psycopg %s (%s), libpq %d" % (sys.version_info[:3] + (psycopg.__version__, psycopg.pq.__impl__, psycopg.pq.version())))') in one process"
}

bench_timer_stop() {
    [ -n "${BENCH_TIMER_PID:-}" ] || return 0
    local pid="$BENCH_TIMER_PID"
    # Closing its stdin ends it; the fds disappear from BENCH_TIMER when it is gone.
    [ -n "${BENCH_TIMER[1]:-}" ] && eval "exec ${BENCH_TIMER[1]}>&-"
    _bench_wait_gone "$pid" 5 || kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# _bench_timer_call REPLYVAR TIMEOUT LINE [EXTRA-LINE]: one request, its reply fields into REPLYVAR (an array).
_bench_timer_call() {
    local -n _reply="$1"
    local _btc_timeout="$2" _btc_line="$3"
    if [ -z "${BENCH_TIMER_PID:-}" ] || [ -z "${BENCH_TIMER[1]:-}" ]; then bench_die "the timer is not running (see $BENCH_TMP/timer.log)"; fi
    printf '%s\n' "$_btc_line" >&"${BENCH_TIMER[1]}"
    [ $# -ge 4 ] && printf '%s\n' "$4" >&"${BENCH_TIMER[1]}"
    local _btc_answer
    IFS= read -r -t "$_btc_timeout" -u "${BENCH_TIMER[0]}" _btc_answer ||
        bench_die "no answer from the timer within $_btc_timeout s to: ${_btc_line%%$'\t'*} (see $BENCH_TMP/timer.log)"
    IFS=$'\t' read -r -a _reply <<<"$_btc_answer"
}

bench_timer_target() {
    # Odd local names: ${!3} must see the caller's variable, not one of ours.
    local _bt_id="$1" _bt_conninfo="$2" _bt_pwvar="${3:-}" _bt_peer="${4:-}" _bt_pw="" _bt_reply=()
    [ -n "$_bt_pwvar" ] && _bt_pw="${!_bt_pwvar}"
    _bench_timer_call _bt_reply 30 "target"$'\t'"$_bt_id"$'\t'"$_bt_conninfo"$'\t'"$_bt_peer" "$_bt_pw"
    [ "${_bt_reply[0]}" = ok ] || bench_die "timer: ${_bt_reply[*]:1}"
}

# Exit status 1 (and the error on stderr) when the connection fails; the caller decides.
bench_timer_query() {
    local reply=()
    _bench_timer_call reply 120 "query"$'\t'"$1"
    if [ "${reply[0]}" != ok ]; then
        printf 'connect + select 1 (%s) failed: %s\n' "$1" "${reply[*]:1}" >&2
        return 1
    fi
    printf '%s\n' "${reply[1]}"
}

bench_timer_poll() {
    local reply=()
    _bench_timer_call reply "$(($2 + 30))" "poll"$'\t'"$1"$'\t'"$2"
    if [ "${reply[0]}" != ok ]; then
        printf 'connect + select 1 (%s): %s\n' "$1" "${reply[*]:1}" >&2
        return 1
    fi
    printf '%s %s\n' "${reply[1]}" "${reply[2]}"
}

# bench_timer_spawn SECONDS STAMPS PWREGEX CONNINFO PEERUSER COMMAND ARGS…: the timer runs the
# command itself (no shell in between, so both kinds of sample pay the same harness costs), writes
# its stderr lines, each with the time it arrived, to STAMPS ("eof" last; empty: not written),
# takes the password from its stdout (group 1 of PWREGEX; empty: none), then connects + `select 1`
# until one succeeds. Prints "START_US EXIT_US END_US ATTEMPTS" (wall clock, µs since the epoch).
bench_timer_spawn() {
    local seconds="$1" line reply=() arg
    line="spawn"$'\t'"$1"$'\t'"$2"$'\t'"$3"$'\t'"$4"$'\t'"$5"
    shift 5
    for arg in "$@"; do
        case "$arg" in *$'\t'* | *$'\n'*) bench_die "bench_timer_spawn: a tab or newline in an argument" ;; esac
        line+=$'\t'"$arg"
    done
    _bench_timer_call reply "$((seconds + 120))" "$line"
    if [ "${reply[0]}" != ok ]; then
        printf '%s\n' "${reply[*]:1}" >&2
        return 1
    fi
    printf '%s %s %s %s\n' "${reply[1]}" "${reply[2]}" "${reply[3]}" "${reply[4]}"
}

bench_timer_forget() {
    local reply=()
    _bench_timer_call reply 30 "forget"$'\t'"$1"
}

# $EPOCHREALTIME is seconds.microseconds (with the locale's decimal point).
bench_elapsed_ms() {
    local start="$1" end="${2:-$EPOCHREALTIME}"
    awk -v a="${start/,/.}" -v b="${end/,/.}" 'BEGIN {printf "%.1f\n", (b - a) * 1000}'
}

bench_percentile() {
    local p="$1"
    shift
    printf '%s\n' "$@" | sort -g | awk -v p="$p" '{v[NR] = $1}
        END {if (NR == 0) {print "-"; exit}
             r = 1 + (NR - 1) * p / 100; i = int(r); f = r - i
             printf "%.1f\n", (i < NR) ? v[i] + f * (v[i + 1] - v[i]) : v[NR]}'
}

bench_loadavg() {
    cut -d' ' -f1-3 /proc/loadavg
}

# --- the CLI, retried -----------------------------------------------------------------------------

bench_pgfleet_retry() {
    local attempt status err="$BENCH_TMP/.state/cli.$BASHPID.err"
    for attempt in 1 2 3; do
        status=0
        bench_pgfleet "$@" 2>"$err" || status=$?
        if [ "$status" -eq 0 ]; then
            rm -f "$err"
            return 0
        fi
        if [ "$attempt" -eq 3 ] || ! grep -q 'I/O on closed channel' "$err"; then
            cat "$err" >&2
            rm -f "$err"
            return "$status"
        fi
        printf '%s\n' "$1 $2" >>"$BENCH_TMP/.state/cli-retries"
    done
}

bench_tenant_get() {
    local json
    json="$(bench_pgfleet_retry tenant info "$1" --json)" || return 1
    jq -r ".$2" <<<"$json"
}

bench_cli_retries() {
    if [ -f "$BENCH_TMP/.state/cli-retries" ]; then wc -l <"$BENCH_TMP/.state/cli-retries"; else echo 0; fi
}

# --- Debian clusters (pg_createcluster) -----------------------------------------------------------

bench_pgcc_name() {
    printf 'pgfleet-bench-%s-%s\n' "$$" "$1"
}

bench_pgcc_drop() {
    local version="$1" name="$2"
    pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v n="$name" '$1 == v && $2 == n {found = 1} END {exit !found}' || return 0
    pg_dropcluster --stop "$version" "$name" >/dev/null 2>&1 || bench_warn "could not drop cluster $version/$name (pg_dropcluster --stop $version $name)"
}

bench_pgcc_cleanup_at_exit() {
    bench_defer "_bench_pgcc_drop_ours $1"
}

_bench_pgcc_drop_ours() {
    local version="$1" name
    while read -r name; do
        bench_log "dropping leftover cluster $version/$name"
        bench_pgcc_drop "$version" "$name"
    done < <(pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v p="pgfleet-bench-$$-" '$1 == v && index($2, p) == 1 {print $2}')
}

# Clusters named pgfleet-bench-PID-… whose PID is not a live benchmark (the owner of a run's temp dir).
bench_sweep_pgcc() {
    command -v pg_lsclusters >/dev/null || return 0
    local version name pid dir live=" "
    for dir in /tmp/pgfleet-bench-*.*; do
        [ -f "$dir/.state/owner" ] || continue
        pid="$(cat "$dir/.state/owner" 2>/dev/null || true)"
        [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] && live+="$pid "
    done
    while read -r version name; do
        pid="${name#pgfleet-bench-}"
        pid="${pid%%-*}"
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        [[ "$live" == *" $pid "* ]] && continue
        bench_log "removing cluster $version/$name left by an earlier run"
        bench_pgcc_drop "$version" "$name"
    done < <(pg_lsclusters -h 2>/dev/null | awk 'index($2, "pgfleet-bench-") == 1 {print $1, $2}')
}

# bench_footer: the lines that end every report: CLI retries (if any), the load average before
# and after measuring ($LOAD_BEFORE, $LOAD_AFTER), the machine, and what else kept it busy
# ($BUSY_BEFORE, $BUSY_AFTER, as bench_busy_note printed them).
bench_footer() {
    local retries
    retries="$(bench_cli_retries)"
    if [ "$retries" -gt 0 ]; then
        echo "pgfleet CLI: $retries call(s) failed with \"I/O on closed channel\" after a complete answer and were retried (a client-side race in pgfleet)"
    fi
    echo "load average: $LOAD_BEFORE before measuring, $LOAD_AFTER after"
    bench_machine
    if [ -n "${BUSY_BEFORE:-}" ]; then echo "note (before measuring): ${BUSY_BEFORE#note: }"; fi
    if [ -n "${BUSY_AFTER:-}" ]; then echo "note (after measuring): ${BUSY_AFTER#note: }"; fi
    return 0
}
