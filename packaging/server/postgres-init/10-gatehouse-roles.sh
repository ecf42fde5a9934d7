#!/bin/sh
# Run by the postgres image on its first start (docker-entrypoint-initdb.d): the login roles of
# the application and of the outbox relay, with passwords, before the migrations run. The
# migrations find them and only grant (they create the roles without passwords when missing,
# which suits trust authentication in development, not a network).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$GATEHOUSE_APP_DB_PASSWORD" \
  -v relay_password="$GATEHOUSE_RELAY_DB_PASSWORD" <<'SQL'
CREATE ROLE gatehouse_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
  PASSWORD :'app_password';
CREATE ROLE gatehouse_relay LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
  PASSWORD :'relay_password';
SQL
