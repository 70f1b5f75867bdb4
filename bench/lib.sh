# shellcheck shell=bash
# Shared helpers for pgfleet's benchmarks (bench/*.sh). Source it from a script that runs with
# `set -euo pipefail`; it defines functions and a few variables, and installs its cleanup trap in
# bench_init.
#
#   bench_init NAME          temp dir $BENCH_TMP (0711, under /tmp), EXIT/INT/TERM trap, stale-run sweep
#   bench_defer CMD...       run CMD at exit (last deferred runs first); failures are ignored
#   bench_build_pgfleet      sets $PGFLEET (release build, reused when up to date; $PGFLEET_BIN wins)
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
    if [ -x "$PGFLEET" ] && [ -z "$(cd "$BENCH_REPO" && find Sources Package.swift Package.resolved -newer "$PGFLEET" -print -quit)" ]; then
        bench_log "reusing the release build $PGFLEET (newer than every source file)"
        return
    fi
    command -v swift >/dev/null || bench_die "swift is not on PATH; build pgfleet or set PGFLEET_BIN"
    bench_log "building pgfleet in release mode (swift build -c release --product pgfleet);"
    bench_log "  the first build takes 5-10 minutes on 2 cores, and waits if another build holds .build/"
    (cd "$BENCH_REPO" && swift build -c release --product pgfleet >&2)
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
