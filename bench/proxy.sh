#!/usr/bin/env bash
# TPS through pgfleet's routing proxy against PostgreSQL reached directly and through PgBouncer.
# Run `bench/proxy.sh --help` for what it does; it needs root.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/proxy.sh [options]

Measures pgbench throughput (TPS) to one pgfleet tenant five ways, select-only (-S) and
connect-per-transaction (-S -C), and prints the median of several rounds with ratios:

  direct socket   the tenant's own unix socket (the baseline)
  direct TCP      a sibling cluster: same bundle, same settings, listening on 127.0.0.1
                  (the tenant itself has no TCP listener)
  PgBouncer       session pooling, TCP in, the tenant's unix socket out
  HAProxy         a plain byte pump for reference: `mode tcp`, TCP in, the tenant's unix socket
                  out, no pooling (each client connection is a new backend), no parsing at all
  pgfleet proxy   `pgfleet serve --listen 127.0.0.1:PORT --tls disable`, user postgres@TENANT

Then it times logins phase by phase through PgBouncer and pgfleet (bench/login_phases.py: a raw
socket client doing SCRAM itself, the two in turn) and prints the medians and ratios.

Within a round every variant runs once per workload, in an order that rotates from round to
round, so a slow phase of the machine spreads over all variants instead of hitting one.

It builds pgfleet in release mode if needed (5-10 minutes the first time), installs pgbouncer and
haproxy if missing, starts a throwaway daemon, tenant, sibling cluster, PgBouncer and HAProxy
under /tmp, and removes
all of them, and the OS users it created, when it exits (also on Ctrl-C or an error).
A run killed with SIGKILL is swept by the next one.

Options:
  -T, --duration S   seconds per pgbench run (default 10; env BENCH_DURATION)
  -r, --rounds N     rounds; the table shows the median (default 3; env BENCH_ROUNDS)
  -c, --clients N    pgbench clients (default 16)
  -j, --jobs N       pgbench threads (default 2)
  -s, --scale N      pgbench -i scale (default 10)
  -w, --warmup S     seconds of untimed select-only load per variant first (default 2; 0: none)
      --no-haproxy   leave HAProxy out (four variants)
  -l, --logins N     logins of each timed phase by phase (default 300; 0: none)
  -h, --help         this text

Environment: PGFLEET_BIN (use this pgfleet binary, do not build), PGBENCH (pgbench binary,
default the tenant bundle's).
Needs root, pgbench, psql, jq, setpriv. Progress goes to stderr (==> lines), the table to stdout.
EOF
}

DURATION="${BENCH_DURATION:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS=16
JOBS=2
SCALE=10
WARMUP=2
HAPROXY_VARIANT=1
LOGINS=300

while [ $# -gt 0 ]; do
    case "$1" in
    -T | --duration) DURATION="${2:?$1 needs a value}"; shift 2 ;;
    -r | --rounds) ROUNDS="${2:?$1 needs a value}"; shift 2 ;;
    -c | --clients) CLIENTS="${2:?$1 needs a value}"; shift 2 ;;
    -j | --jobs) JOBS="${2:?$1 needs a value}"; shift 2 ;;
    -s | --scale) SCALE="${2:?$1 needs a value}"; shift 2 ;;
    -w | --warmup) WARMUP="${2:?$1 needs a value}"; shift 2 ;;
    --no-haproxy) HAPROXY_VARIANT=0; shift ;;
    -l | --logins) LOGINS="${2:?$1 needs a value}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done
for value in "$DURATION" "$ROUNDS" "$CLIENTS" "$JOBS" "$SCALE" "$WARMUP" "$LOGINS"; do
    [[ "$value" =~ ^[0-9]+$ ]] || { printf 'error: %s is not a whole number (see --help)\n' "$value" >&2; exit 2; }
done
if [ "$DURATION" -lt 1 ] || [ "$ROUNDS" -lt 1 ] || [ "$CLIENTS" -lt 1 ] || [ "$JOBS" -lt 1 ] || [ "$SCALE" -lt 1 ]; then
    echo "error: --duration, --rounds, --clients, --jobs and --scale must be at least 1" >&2
    exit 2
fi

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in psql jq setpriv ss python3; do
    command -v "$tool" >/dev/null || bench_die "$tool is missing (psql: apt-get install postgresql-client-15)"
done

bench_init proxy
bench_build_pgfleet
bench_install_pkg pgbouncer
PGBOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
[ -x "$PGBOUNCER" ] || bench_die "pgbouncer is not installed"
if [ "$HAPROXY_VARIANT" -eq 1 ]; then
    bench_install_pkg haproxy
    HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
    [ -x "$HAPROXY" ] || bench_die "haproxy is not installed"
fi

# libpq defaults would try GSS and then TLS first on TCP; every variant here is plaintext, and one
# wasted round trip per connection would distort connect-per-transaction.
export PGSSLMODE=disable PGGSSENCMODE=disable PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSSLNEGOTIATION

# --- pgfleet: daemon, tenant, data ----------------------------------------------------------------

PROXY_PORT="$(bench_free_port)"
# No ready pool: its background initdb would only add noise here.
bench_start_daemon "$BENCH_TMP/root" --listen "127.0.0.1:$PROXY_PORT" --tls disable --pool-size 0
TENANT="proxy-$$"
PASSWORD=""
bench_create_tenant "$TENANT" PASSWORD
# Three poolers hold server sessions on this one tenant at once (PgBouncer's pool, pgfleet's pool,
# the direct clients): more than a small tenant's default max_connections.
bench_log "raising the tenant's max_connections to $((CLIENTS * 4 + 20)) for three poolers side by side"
bench_pgfleet tenant set "$TENANT" "max_connections=$((CLIENTS * 4 + 20))" --restart >/dev/null
SOCKET_DIR="$(bench_tenant_field "$TENANT" socketDirectory)"
TENANT_PORT="$(bench_tenant_field "$TENANT" port)"
TENANT_USER="$(bench_tenant_field "$TENANT" osUser)"
TENANT_DATA="$(bench_tenant_field "$TENANT" dataDirectory)"
BUNDLE="$(bench_tenant_field "$TENANT" bundle)"
PG_VERSION="$(bench_tenant_field "$TENANT" version)"
BIN="$BENCH_ROOT/bundles/$BUNDLE/bin"
[ -x "$BIN/initdb" ] || bench_die "no initdb in the tenant's bundle ($BIN)"
PGBENCH="${PGBENCH:-$BIN/pgbench}"
[ -x "$PGBENCH" ] || PGBENCH="$(command -v pgbench)" || bench_die "pgbench not found"

# Connection of each variant, as libpq environment variables.
declare -A LABEL=(
    [socket]="direct, unix socket"
    [tcp]="direct TCP (sibling cluster)"
    [pgbouncer]="PgBouncer, session pool"
    [haproxy]="HAProxy, byte pump"
    [pgfleet]="pgfleet proxy"
)
VARIANTS=(socket tcp pgbouncer pgfleet)
[ "$HAPROXY_VARIANT" -eq 1 ] && VARIANTS=(socket tcp pgbouncer haproxy pgfleet)
SIBLING_PORT="$(bench_free_port)"
PGBOUNCER_PORT="$(bench_free_port)"
while [ "$PGBOUNCER_PORT" = "$SIBLING_PORT" ] || [ "$PGBOUNCER_PORT" = "$PROXY_PORT" ]; do PGBOUNCER_PORT="$(bench_free_port)"; done
HAPROXY_PORT="$(bench_free_port)"
while [ "$HAPROXY_PORT" = "$SIBLING_PORT" ] || [ "$HAPROXY_PORT" = "$PROXY_PORT" ] || [ "$HAPROXY_PORT" = "$PGBOUNCER_PORT" ]; do
    HAPROXY_PORT="$(bench_free_port)"
done

connect_env() {
    case "$1" in
    socket) echo "PGHOST=$SOCKET_DIR PGPORT=$TENANT_PORT PGUSER=postgres" ;;
    tcp) echo "PGHOST=127.0.0.1 PGPORT=$SIBLING_PORT PGUSER=postgres" ;;
    pgbouncer) echo "PGHOST=127.0.0.1 PGPORT=$PGBOUNCER_PORT PGUSER=postgres" ;;
    haproxy) echo "PGHOST=127.0.0.1 PGPORT=$HAPROXY_PORT PGUSER=postgres" ;;
    pgfleet) echo "PGHOST=127.0.0.1 PGPORT=$PROXY_PORT PGUSER=postgres@$TENANT" ;;
    esac
}

# as_client VARIANT CMD…: CMD with that variant's connection; the password only in the environment
# (exported in a subshell: never on a command line, not even env's).
as_client() {
    local variant="$1" settings
    shift
    read -ra settings <<<"$(connect_env "$variant")"
    (
        export "${settings[@]}" PGDATABASE=postgres PGPASSWORD="$PASSWORD"
        "$@"
    )
}

query() {
    as_client "$1" psql -XAtq -v ON_ERROR_STOP=1 -c "$2"
}

bench_log "loading pgbench data into the tenant (pgbench -i -s $SCALE, over its unix socket)"
as_client socket "$PGBENCH" -i -q -s "$SCALE" >"$BENCH_TMP/init-tenant.log" 2>&1 ||
    { tail -n 20 "$BENCH_TMP/init-tenant.log" >&2; bench_die "pgbench -i into the tenant failed"; }

# --- the sibling cluster: direct TCP --------------------------------------------------------------

SIBLING_USER="${BENCH_USER_PREFIX}sib-$$"
SIBLING_DIR="$BENCH_TMP/sibling"
bench_log "creating the sibling cluster for direct TCP (bundle $BUNDLE, OS user $SIBLING_USER, 127.0.0.1:$SIBLING_PORT)"
bench_add_user "$SIBLING_USER"
install -d -m 0700 -o "$SIBLING_USER" -g "$SIBLING_USER" "$SIBLING_DIR" "$SIBLING_DIR/socket"
( umask 077 && printf '%s\n' "$PASSWORD" >"$SIBLING_DIR/.pw" )
chown "$SIBLING_USER:" "$SIBLING_DIR/.pw"
# The same initdb arguments pgfleet uses for a tenant (Sources/FleetSupervisor/Provisioning.swift).
if ! bench_as "$SIBLING_USER" "$BIN/initdb" --pgdata="$SIBLING_DIR/data" --username=postgres --pwfile="$SIBLING_DIR/.pw" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-instructions --no-sync --wal-segsize=1 \
    >"$SIBLING_DIR/initdb.log" 2>&1; then
    rm -f "$SIBLING_DIR/.pw"
    tail -n 20 "$SIBLING_DIR/initdb.log" >&2
    bench_die "initdb of the sibling cluster failed"
fi
rm -f "$SIBLING_DIR/.pw"
# The tenant's own settings files, then only what must differ: where it listens.
install -m 0600 -o "$SIBLING_USER" -g "$SIBLING_USER" "$TENANT_DATA/pgfleet.conf" "$SIBLING_DIR/data/pgfleet.conf"
install -m 0600 -o "$SIBLING_USER" -g "$SIBLING_USER" "$TENANT_DATA/postgresql.auto.conf" "$SIBLING_DIR/data/postgresql.auto.conf"
# What `pgfleet tenant set` wrote (max_connections above), so that both have the same limits.
[ -f "$TENANT_DATA/pgfleet.settings.conf" ] &&
    install -m 0600 -o "$SIBLING_USER" -g "$SIBLING_USER" "$TENANT_DATA/pgfleet.settings.conf" "$SIBLING_DIR/data/pgfleet.settings.conf"
cat >"$SIBLING_DIR/data/bench-sibling.conf" <<EOF
# pgfleet bench: the tenant's settings (pgfleet.conf), but on TCP.
listen_addresses = '127.0.0.1'
port = $SIBLING_PORT
unix_socket_directories = '$SIBLING_DIR/socket'
cluster_name = 'bench-sibling'
EOF
chown "$SIBLING_USER:" "$SIBLING_DIR/data/bench-sibling.conf"
printf "\ninclude 'pgfleet.conf'\ninclude_if_exists 'pgfleet.settings.conf'\ninclude 'bench-sibling.conf'\n" >>"$SIBLING_DIR/data/postgresql.conf"
bench_defer "bench_log 'stopping the sibling cluster'; bench_as $SIBLING_USER $BIN/pg_ctl -D $SIBLING_DIR/data -m fast -w -t 60 stop >/dev/null 2>&1"
bench_as "$SIBLING_USER" "$BIN/pg_ctl" -D "$SIBLING_DIR/data" -l "$SIBLING_DIR/postgresql.log" -w -t 60 start >/dev/null ||
    { tail -n 20 "$SIBLING_DIR/postgresql.log" >&2; bench_die "the sibling cluster did not start"; }

# Fair copy? Compare every setting but the ones about where it listens (tcp_keepalives_* show the
# connection's own socket: 0 on a unix socket, the kernel's values on TCP).
settings_sql="select name || '=' || setting from pg_settings where name not in
    ('listen_addresses', 'port', 'unix_socket_directories', 'unix_socket_permissions', 'cluster_name',
     'data_directory', 'config_file', 'hba_file', 'ident_file')
    and name not like 'tcp\_keepalives\_%' order by 1"
query socket "$settings_sql" >"$BENCH_TMP/settings-tenant.txt"
query tcp "$settings_sql" >"$BENCH_TMP/settings-sibling.txt"
if SETTINGS_DIFF="$(diff "$BENCH_TMP/settings-tenant.txt" "$BENCH_TMP/settings-sibling.txt")"; then
    SIBLING_NOTE="settings identical to the tenant's (pg_settings) except where it listens"
else
    SIBLING_NOTE="settings differ from the tenant's: $(grep '^[<>]' <<<"$SETTINGS_DIFF" | tr '\n' ' ')"
    bench_warn "sibling cluster $SIBLING_NOTE"
fi

bench_log "loading pgbench data into the sibling cluster (pgbench -i -s $SCALE, over TCP)"
as_client tcp "$PGBENCH" -i -q -s "$SCALE" >"$BENCH_TMP/init-sibling.log" 2>&1 ||
    { tail -n 20 "$BENCH_TMP/init-sibling.log" >&2; bench_die "pgbench -i into the sibling cluster failed"; }

# start_as_tenant VARIANT LOG COMMAND ARGS…: a pooler or proxy in the background as the tenant's OS
# user (its socket directory is its own; PgBouncer refuses root anyway), stopped at exit; waits up
# to 10 s until `select 1` through it works. Sets $BENCH_LAST_PID.
start_as_tenant() {
    local variant="$1" log="$2" pid
    shift 2
    bench_spawn "$log" setpriv --reuid="$(id -u "$TENANT_USER")" --regid="$(id -g "$TENANT_USER")" --clear-groups --reset-env -- "$@"
    pid=$BENCH_LAST_PID
    bench_defer "bench_log 'stopping ${LABEL[$variant]}'; kill -TERM $pid 2>/dev/null; _bench_wait_gone $pid 10"
    for _ in $(seq 1 100); do
        query "$variant" "select 1" >/dev/null 2>&1 && break
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
}

# --- PgBouncer --------------------------------------------------------------------------------------

# It runs as the tenant's OS user: the tenant's socket directory is 0700 and its own, and PgBouncer
# refuses to run as root anyway. Auth: scram-sha-256 with the tenant's SCRAM verifier in the
# userlist, so PgBouncer checks the client itself and logs in to the tenant by SCRAM pass-through.
PGB_DIR="$BENCH_TMP/pgbouncer"
bench_log "starting PgBouncer ($("$PGBOUNCER" --version | head -n1)) on 127.0.0.1:$PGBOUNCER_PORT as $TENANT_USER, session pooling"
install -d -m 0700 -o "$TENANT_USER" -g "$(id -g "$TENANT_USER")" "$PGB_DIR"
VERIFIER="$(query socket "select rolpassword from pg_authid where rolname = 'postgres'")"
[[ "$VERIFIER" == SCRAM-SHA-256\$* ]] || bench_die "the tenant's postgres role has no SCRAM verifier"
( umask 077 && printf '"postgres" "%s"\n' "$VERIFIER" >"$PGB_DIR/userlist.txt" )
unset VERIFIER
POOL_SIZE=$((CLIENTS + 4))
MAX_CLIENTS=$((CLIENTS * 4 > 100 ? CLIENTS * 4 : 100))
cat >"$PGB_DIR/pgbouncer.ini" <<EOF
[databases]
postgres = host=$SOCKET_DIR port=$TENANT_PORT dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
pool_mode = session
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENTS
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
chown "$TENANT_USER:" "$PGB_DIR/userlist.txt" "$PGB_DIR/pgbouncer.ini"
start_as_tenant pgbouncer "$PGB_DIR/stderr.log" "$PGBOUNCER" "$PGB_DIR/pgbouncer.ini"
PGBOUNCER_PID=$BENCH_LAST_PID

# --- HAProxy ----------------------------------------------------------------------------------------

# A reference for what a plain byte pump costs here: as the tenant's OS user (its socket directory
# is its own), in the foreground, threads as many as cores (HAProxy's default), no logging.
if [ "$HAPROXY_VARIANT" -eq 1 ]; then
    HAP_DIR="$BENCH_TMP/haproxy"
    install -d -m 0700 -o "$TENANT_USER" -g "$(id -g "$TENANT_USER")" "$HAP_DIR"
    cat >"$HAP_DIR/haproxy.cfg" <<EOF
global
    maxconn $((CLIENTS * 4 > 100 ? CLIENTS * 4 : 100))

defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h

frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend tenant

backend tenant
    server tenant unix@$SOCKET_DIR/.s.PGSQL.$TENANT_PORT
EOF
    chown "$TENANT_USER:" "$HAP_DIR/haproxy.cfg"
    bench_log "starting HAProxy ($("$HAPROXY" -v | head -n1 | awk '{print $3}')) on 127.0.0.1:$HAPROXY_PORT as $TENANT_USER, mode tcp"
    start_as_tenant haproxy "$HAP_DIR/stderr.log" "$HAPROXY" -db -f "$HAP_DIR/haproxy.cfg"
    HAPROXY_PID=$BENCH_LAST_PID
fi

# --- every variant reaches the right server -------------------------------------------------------

for variant in "${VARIANTS[@]}"; do
    name="$(query "$variant" "select current_setting('cluster_name')" 2>"$BENCH_TMP/check.err")" || {
        cat "$BENCH_TMP/check.err" "$PGB_DIR/pgbouncer.log" "$PGB_DIR/stderr.log" "${HAP_DIR:-/nonexistent}/stderr.log" 2>/dev/null | tail -n 20 >&2
        bench_die "cannot connect: ${LABEL[$variant]}"
    }
    want="$TENANT"
    [ "$variant" = tcp ] && want=bench-sibling
    [ "$name" = "$want" ] || bench_die "${LABEL[$variant]} reached cluster '$name', not '$want'"
done
bench_log "all ${#VARIANTS[@]} ways connect (the sibling answers as bench-sibling, the others as tenant $TENANT)"
BUSY_NOTE="$(bench_busy_note)"

# --- measuring ------------------------------------------------------------------------------------

# The process in the middle of each pooled variant: its CPU time per transaction is what it takes
# away from PostgreSQL and pgbench on a machine this small.
declare -A MIDDLE_PID=([pgbouncer]="$PGBOUNCER_PID" [pgfleet]="$BENCH_DAEMON_PID")
[ "$HAPROXY_VARIANT" -eq 1 ] && MIDDLE_PID[haproxy]="$HAPROXY_PID"
CLOCK_TICKS="$(getconf CLK_TCK)"

# cpu_ticks PID: user + system time of the process (all its threads) so far, in clock ticks.
cpu_ticks() {
    # After "pid (comm) " the fields start at the 3rd; utime and stime are the 14th and 15th.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}

run_pgbench() { # VARIANT MODE SECONDS OUT: prints the TPS; OUT.cpu gets the middle's CPU µs per transaction
    local variant="$1" mode="$2" seconds="$3" out="$4" pid before after tps count
    local args=(-n -S -c "$CLIENTS" -j "$JOBS" -T "$seconds")
    [ "$mode" = connect ] && args+=(-C)
    pid="${MIDDLE_PID[$variant]:-}"
    [ -n "$pid" ] && before="$(cpu_ticks "$pid")"
    tps="$(as_client "$variant" bench_pgbench "$out" "${args[@]}")" || return 1
    if [ -n "$pid" ]; then
        after="$(cpu_ticks "$pid")"
        count="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -n1)"
        awk -v a="$before" -v b="$after" -v n="${count:-0}" -v hz="$CLOCK_TICKS" \
            'BEGIN {if (n > 0 && b != "" && a != "") printf "%.1f\n", (b - a) * 1000000 / hz / n}' >"$out.cpu"
    fi
    echo "$tps"
}

if [ "$WARMUP" -gt 0 ]; then
    for variant in "${VARIANTS[@]}"; do
        bench_log "warm-up: ${LABEL[$variant]}, ${WARMUP} s select-only"
        run_pgbench "$variant" select "$WARMUP" "$BENCH_TMP/warmup-$variant.txt" >/dev/null
    done
fi

MODES=(select connect)
declare -A MODE_LABEL=([select]="select-only (pgbench -S)" [connect]="connect per transaction (pgbench -S -C)")
declare -A RESULTS=() CPU=()
total=$((ROUNDS * ${#MODES[@]} * ${#VARIANTS[@]}))
bench_log "measuring: $ROUNDS round(s) × ${#MODES[@]} workloads × ${#VARIANTS[@]} variants × ${DURATION} s ≈ $((total * (DURATION + 1) / 60 + 1)) min"
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in "${MODES[@]}"; do
        for ((k = 0; k < ${#VARIANTS[@]}; k++)); do
            variant="${VARIANTS[$(((k + round - 1) % ${#VARIANTS[@]}))]}"
            tps="$(run_pgbench "$variant" "$mode" "$DURATION" "$BENCH_TMP/round$round-$mode-$variant.txt")"
            RESULTS[$mode.$variant]="${RESULTS[$mode.$variant]:-} $tps"
            [ -s "$BENCH_TMP/round$round-$mode-$variant.txt.cpu" ] &&
                CPU[$mode.$variant]="${CPU[$mode.$variant]:-} $(cat "$BENCH_TMP/round$round-$mode-$variant.txt.cpu")"
            bench_log "round $round/$ROUNDS, ${MODE_LABEL[$mode]}, ${LABEL[$variant]}: $tps TPS"
        done
    done
done

LOGIN_PHASES=""
if [ "$LOGINS" -gt 0 ]; then
    bench_log "timing $LOGINS logins phase by phase through PgBouncer and pgfleet, in turn"
    LOGIN_PHASES="$(PGPASSWORD="$PASSWORD" python3 "$(dirname "${BASH_SOURCE[0]}")/login_phases.py" "$LOGINS" \
        "pgbouncer=127.0.0.1:$PGBOUNCER_PORT:postgres" "pgfleet=127.0.0.1:$PROXY_PORT:postgres@$TENANT")" ||
        bench_die "timing the logins failed"
fi

# --- report ---------------------------------------------------------------------------------------

declare -A MEDIAN=()
for key in "${!RESULTS[@]}"; do
    # shellcheck disable=SC2086 # a list of numbers
    MEDIAN[$key]="$(bench_median ${RESULTS[$key]})"
done

echo
echo "pgfleet proxy benchmark: pgbench -S, $CLIENTS clients (-j $JOBS), $DURATION s per run, median of $ROUNDS round(s), scale $SCALE"
echo "PostgreSQL $PG_VERSION (bundle $BUNDLE), $("$PGBENCH" --version); pgfleet proxy with --tls disable; all clients sslmode=disable"
echo "direct TCP: a sibling cluster (same bundle, initdb arguments and pgfleet.conf as the tenant, on 127.0.0.1), $SIBLING_NOTE"
echo "PgBouncer $("$PGBOUNCER" --version | head -n1 | awk '{print $2}'): pool_mode=session, default_pool_size=$POOL_SIZE, max_client_conn=$MAX_CLIENTS, auth_type=scram-sha-256 (userlist holds the tenant's SCRAM verifier, server login by SCRAM pass-through)"
[ "$HAPROXY_VARIANT" -eq 1 ] && echo "HAProxy $("$HAPROXY" -v | head -n1 | awk '{print $3}'): mode tcp, default threads, no pooling (every client connection a new backend; the client authenticates with the tenant itself)"
for mode in "${MODES[@]}"; do
    echo
    echo "${MODE_LABEL[$mode]}"
    printf '%-30s %9s %10s %7s %13s %12s   %s\n' variant TPS "vs socket" "vs TCP" "vs PgBouncer" "CPU µs/txn" "TPS per round"
    for variant in "${VARIANTS[@]}"; do
        tps="${MEDIAN[$mode.$variant]}"
        cpu=-
        # shellcheck disable=SC2086 # a list of numbers
        [ -n "${CPU[$mode.$variant]:-}" ] && cpu="$(printf '%s\n' ${CPU[$mode.$variant]} | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')"
        printf '%-30s %9s %10s %7s %13s %12s  %s\n' "${LABEL[$variant]}" "$tps" \
            "$(bench_ratio "$tps" "${MEDIAN[$mode.socket]}")" "$(bench_ratio "$tps" "${MEDIAN[$mode.tcp]}")" \
            "$(bench_ratio "$tps" "${MEDIAN[$mode.pgbouncer]}")" "$cpu" "${RESULTS[$mode.$variant]}"
    done
done

if [ -n "$LOGIN_PHASES" ]; then
    echo
    echo "one login, phase by phase (median µs of $LOGINS each; bench/login_phases.py, SCRAM-SHA-256, the client's PBKDF2 not shown)"
    printf '%-46s %10s %10s %9s\n' phase PgBouncer pgfleet ratio
    while IFS=$'\t' read -r label pgb pgf; do
        pgb="${pgb#pgbouncer=}" pgf="${pgf#pgfleet=}"
        printf '%-46s %10s %10s %9s\n' "$label" "$pgb" "$pgf" "$(bench_ratio "$pgf" "$pgb")"
    done <<<"$LOGIN_PHASES"
fi

echo
select_ratio="$(bench_ratio "${MEDIAN[select.pgfleet]}" "${MEDIAN[select.pgbouncer]}")"
connect_ratio="$(bench_ratio "${MEDIAN[connect.pgfleet]}" "${MEDIAN[connect.pgbouncer]}")"
ahead() { awk -v r="$1" 'BEGIN {print (r > 1.0) ? "yes" : "no"}'; }
overall=no
[ "$(ahead "$select_ratio")" = yes ] && [ "$(ahead "$connect_ratio")" = yes ] && overall=yes
echo "pgfleet/PgBouncer: select-only ${select_ratio}x, connect-per-transaction ${connect_ratio}x"
echo "pgfleet ahead of PgBouncer: $overall (select-only: $(ahead "$select_ratio"), connect-per-transaction: $(ahead "$connect_ratio"))"
bench_machine
[ -n "$BUSY_NOTE" ] && echo "$BUSY_NOTE"
exit 0
