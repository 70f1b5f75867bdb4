#!/usr/bin/env bash
# Installs what is missing, builds pgfleet, starts the fleet in the background and creates a demo
# tenant on Debian's PostgreSQL. Run it again at any time: it reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

printf '==> building pgfleet\n' >&2
swift build --product pgfleet
bin="$(swift build --show-bin-path)/pgfleet"
ln -sf "$bin" /usr/local/bin/pgfleet 2>/dev/null || true

export PGFLEET_ROOT="${PGFLEET_ROOT:-$([ "$(id -u)" -eq 0 ] && echo /var/lib/pgfleet || echo "$HOME/.local/share/pgfleet")}"
mkdir -p "$PGFLEET_ROOT/log"
if ! "$bin" status >/dev/null 2>&1; then
    printf '==> starting pgfleet serve (root %s, log %s/log/serve.log)\n' "$PGFLEET_ROOT" "$PGFLEET_ROOT" >&2
    setsid nohup "$bin" serve --root "$PGFLEET_ROOT" >>"$PGFLEET_ROOT/log/serve.log" 2>&1 < /dev/null &
    for _ in $(seq 1 300); do
        "$bin" status >/dev/null 2>&1 && break
        sleep 0.2
    done
    "$bin" status >/dev/null || { echo "error: pgfleet serve did not start; see $PGFLEET_ROOT/log/serve.log" >&2; exit 1; }
fi

if "$bin" tenant info demo >/dev/null 2>&1; then
    printf '==> the demo tenant exists already (its password was shown when it was created)\n' >&2
    "$bin" tenant info demo
else
    printf '==> creating the demo tenant\n' >&2
    "$bin" tenant create demo
fi
"$bin" tenant list
cat <<MSG

pgfleet is running. Try:
  pgfleet status
  pgfleet tenant create acme
  pgfleet tenant logs demo --follow
Stop it with: kill \$(cat $PGFLEET_ROOT/run/serve.pid)
MSG
