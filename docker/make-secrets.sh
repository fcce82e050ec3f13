#!/bin/sh
# Create the secret files compose.yaml mounts, from one new random password:
#   secrets/postgres_password   read by PostgreSQL (POSTGRES_PASSWORD_FILE)
#   secrets/database_url        read by qwc-service (QWC_DATABASE_URL_FILE)
#
# The directory is private to you (0700); the files are world-readable (0444)
# only so that the container users (root for PostgreSQL's set-up, uid 10001
# for qwc-service) can read them through their bind mounts, which do not
# pass through the directory. Hex keeps the password URL-safe.
#
# PostgreSQL takes the password only when it creates its data volume; to
# change it later, ALTER ROLE in the database first (docs/deployment.md).
set -eu
cd "$(dirname "$0")"
umask 077

if [ -e secrets/postgres_password ] || [ -e secrets/database_url ]; then
    echo "make-secrets.sh: $(pwd)/secrets already holds secrets; not replacing them" >&2
    exit 1
fi

mkdir -p secrets
chmod 700 secrets
password=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
[ "${#password}" -eq 48 ] || { echo "make-secrets.sh: could not read /dev/urandom" >&2; exit 1; }
printf '%s' "$password" > secrets/postgres_password
printf 'postgresql://qwc:%s@db:5432/qwc' "$password" > secrets/database_url
chmod 444 secrets/postgres_password secrets/database_url
echo "wrote $(pwd)/secrets/postgres_password and $(pwd)/secrets/database_url"
