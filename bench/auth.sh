#!/bin/sh
# auth.sh: what verifying an access token costs per request, and how many
# logins per second bcrypt allows, on one server in one run.
#
# Requests: pgbench, one transaction (BEGIN; statement; COMMIT) per
# request, as a plain role:
#   (a) select   SELECT 1: the round trips alone
#   (b) mandant  SELECT mandant.authenticate(:token): RS256 signature,
#                claims, denylist, user, membership, tenant, context set
#   (c) context  SELECT mandant.set_tenant(:tenant) as a trusted backend:
#                the cheapest way in, for comparison
# The server time of one authenticate is also measured inside the server:
# 20,000 calls in one statement, minus the same loop without the call.
# Target (issue 7): authenticate <= 100 us of server time per call at 1
# client.
#
# Logins: mandant.login() with the right password, 1 and 2 clients
# (bcrypt cost 12 decides; for information).
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/auth.sh
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench_auth
tenant=c0000000-0000-4000-8000-0000000000a1

echo "bench/auth: preparing"
su_psql -d "$bench_db" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
DO \$\$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_user') THEN
		CREATE ROLE mandant_bench_user LOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_service') THEN
		CREATE ROLE mandant_bench_service LOGIN IN ROLE mandant_service;
	END IF;
END
\$\$;
INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES ('$tenant', 'bench-auth', 'Bench', 'b@bench.test');
SELECT mandant.create_user('bench@bench.test', 'a long bench password', 'Bench') AS id \gset
SELECT mandant.add_member('$tenant', :'id', 'owner');
SQL
token=$(su_psql -d "$bench_db" -Atc "SELECT mandant.login('bench@bench.test', 'a long bench password') ->> 'accessToken'")

# Each variant is one transaction, as an application runs it: a context set
# outside a transaction block would end with its statement (and warn).
cat >"$work/auth-select.sql" <<'SQL'
BEGIN;
SELECT 1;
COMMIT;
SQL
cat >"$work/auth-mandant.sql" <<'SQL'
BEGIN;
SELECT mandant.authenticate(:token);
COMMIT;
SQL
cat >"$work/auth-context.sql" <<'SQL'
BEGIN;
SELECT mandant.set_tenant(:tenant);
COMMIT;
SQL
cat >"$work/login.sql" <<'SQL'
SELECT mandant.login('bench@bench.test', 'a long bench password') IS NOT NULL;
SQL

# tps_with SCRIPT ROLE CLIENTS [SECONDS]: one pgbench run with the token and
# tenant as variables.
tps_with() {
	pgbench -n -M prepared -T "${4:-$seconds}" -c "$3" -j "$3" -h "$sockdir" -p "$port" -U "$2" \
		-D token="$token" -D tenant="$tenant" -f "$work/$1.sql" "$bench_db" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

echo "bench/auth: $rounds rounds of ${seconds}s per variant, interleaved; PostgreSQL $(server_version), $(nproc) cores"
echo
printf '%-8s %12s %12s %12s %8s %8s %14s\n' clients "a select" "b mandant" "c context" "b/a" "c/a" "b - a (us)"
for c in $clients; do
	: >"$work/a" ; : >"$work/b" ; : >"$work/c"
	r=0
	while [ "$r" -lt "$rounds" ]; do
		tps_with auth-select mandant_bench_user "$c" >>"$work/a"
		tps_with auth-mandant mandant_bench_user "$c" >>"$work/b"
		tps_with auth-context mandant_bench_service "$c" >>"$work/c"
		r=$((r + 1))
	done
	a=$(median <"$work/a") b=$(median <"$work/b") h=$(median <"$work/c")
	awk -v c="$c" -v a="$a" -v b="$b" -v h="$h" 'BEGIN {
		printf "%-8s %12.1f %12.1f %12.1f %8.3f %8.3f %14.1f\n", c, a, b, h, b / a, h / a, (1 / b - 1 / a) * c * 1e6
	}'
done

echo
echo "server time per call, 20,000 calls in one statement (median of $rounds):"
: >"$work/server"
r=0
while [ "$r" -lt "$rounds" ]; do
	psql -X -q -At -h "$sockdir" -p "$port" -U mandant_bench_user -d "$bench_db" -v token="$token" >>"$work/server" <<'SQL'
CREATE TEMP TABLE t AS SELECT :'token'::text AS token;
BEGIN;
SELECT clock_timestamp() AS t0 \gset
SELECT count(length(token)) FROM t, generate_series(1, 20000) \g /dev/null
SELECT clock_timestamp() AS t1 \gset
SELECT count(mandant.authenticate(token)) FROM t, generate_series(1, 20000) \g /dev/null
SELECT clock_timestamp() AS t2 \gset
COMMIT;
SELECT round(extract(epoch FROM (:'t2'::timestamptz - :'t1'::timestamptz) - (:'t1'::timestamptz - :'t0'::timestamptz)) * 1e6 / 20000, 1);
SQL
	r=$((r + 1))
done
echo "  mandant.authenticate: $(median <"$work/server") us"

echo
printf '%-8s %12s\n' clients "logins/s"
for c in 1 2; do
	printf '%-8s %12.1f\n' "$c" "$(tps_with login mandant_bench_user "$c" 5)"
done
