#!/usr/bin/env bash
# Make sure a local PostgreSQL server is installed, running, and has the `crm` role and database
# (postgresql+psycopg://crm:crm@127.0.0.1:5432/crm). Idempotent: quick when all is in place.
# Used by .ci/run and `make bench`. Needs root (apt-get, su postgres) only for what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "postgres.sh: installing postgresql (apt-get)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

cd /  # the postgres user cannot enter a private clone folder
if ! pg_isready -q -h 127.0.0.1; then
  version=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 || { echo "postgres.sh: PostgreSQL did not start" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='crm'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE crm LOGIN CREATEDB PASSWORD 'crm'\""
  # Lets the tests' DROP DATABASE ... WITH (FORCE) end a lingering autovacuum worker.
  su postgres -c "PGOPTIONS=--client-min-messages=warning psql -qc 'GRANT pg_signal_backend TO crm'"
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='crm'\"" | grep -q 1 \
    || su postgres -c "createdb -O crm crm"
fi
