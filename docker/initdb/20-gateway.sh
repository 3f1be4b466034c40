#!/bin/sh
# 20-gateway.sh: the gateway's login role (a member of mandant_gateway and
# nothing else), on the first start of the data directory, when
# MANDANT_GATEWAY_PASSWORD is set (docker/compose.yaml sets it).
set -eu
[ -n "${MANDANT_GATEWAY_PASSWORD:-}" ] || exit 0
psql -v ON_ERROR_STOP=1 -v pw="$MANDANT_GATEWAY_PASSWORD" -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<'SQL'
CREATE ROLE mandant_gateway_login LOGIN PASSWORD :'pw' IN ROLE mandant_gateway;
SQL
