#!/bin/sh
# config.sh: how fast configuration changes reach services, and what a read
# costs, on one server in one run.
#
# Hot reload: bench/config_client.c (built here with libpq) LISTENs on
# mandant_config and keeps a cache; it makes 2,000 changes over 20 keys
# through a second connection (mandant.config_set, committed one by one)
# and measures for each the time from sending it to holding the new value,
# re-read with mandant.config_changes().  Once for a tenant's values (a
# member of mandant_service, set_tenant pipelined with the read), once for
# global values (the superuser).  Target (issue 6): p99 < 10 ms.
#
# Reads: 10 reads per transaction inside one tenant (BEGIN; set_tenant;
# 10 x read; COMMIT) on 200 tenants x 50 keys plus 100 global keys:
#   (a) plain    SELECT value FROM mandant.config_entry for the tenant's key
#   (b) mandant  mandant.config_get(): the tenant's value, else the global one
#   (c) inline   (b)'s query written out in the transaction
# reported as transactions/s (x 10 for reads/s).
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" BENCH_CHANGES=2000 bench/config.sh
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench_config
changes=${BENCH_CHANGES:-2000}
tenant=c0000000-0000-4000-8000-000000000001

echo "bench/config: preparing"
cc -O2 -Wall -Wextra -I"$(pg_config --includedir)" bench/config_client.c -lpq -o "$work/config_client"
su_psql -d "$bench_db" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
DO \$\$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_service') THEN
		CREATE ROLE mandant_bench_service LOGIN IN ROLE mandant_service;
	END IF;
END
\$\$;
INSERT INTO mandant.tenant (id, slug, name, owner_email)
SELECT ('c0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'bench-' || i, 'Bench ' || i, 'o@bench.test'
FROM generate_series(1, 200) i;
-- the read workload's data, loaded directly (the hot-reload run uses config_set)
INSERT INTO mandant.config_entry (tenant_id, service, key, value, version, revision, updated_at, updated_by)
SELECT NULL, 'mailer', 'key.' || k, to_jsonb(k), 1, 0, now(), 'bench' FROM generate_series(1, 100) k;
INSERT INTO mandant.config_entry (tenant_id, service, key, value, version, revision, updated_at, updated_by)
SELECT t.id, 'mailer', 'key.' || k, to_jsonb(k * 1000), 1, 0, now(), 'bench'
FROM mandant.tenant t, generate_series(1, 50) k WHERE t.slug LIKE 'bench-%';
ANALYZE mandant.config_entry;
SQL

echo "bench/config: hot reload, $changes changes; PostgreSQL $(server_version), $(nproc) cores"
echo
"$work/config_client" -b "$changes" -t "$tenant" \
	"host=$sockdir port=$port user=mandant_bench_service dbname=$bench_db"
echo
"$work/config_client" -b "$changes" "host=$sockdir port=$port user=postgres dbname=$bench_db"

# Ten reads of random keys (1..100: half the tenant has, half fall back).
reads() {
	echo "BEGIN;"
	echo "SELECT mandant.set_tenant('$tenant');"
	i=1
	while [ $i -le 10 ]; do
		echo "\\set k$i random(1, 100)"
		printf "$1\n" "$i"
		i=$((i + 1))
	done
	echo "COMMIT;"
}
reads "SELECT value FROM mandant.config_entry WHERE tenant_id = '$tenant' AND service = 'mailer' AND key = 'key.' || :k%s;" >"$work/get-plain.sql"
reads "SELECT mandant.config_get('mailer', 'key.' || :k%s);" >"$work/get-mandant.sql"
reads "SELECT value FROM mandant.config_entry WHERE service = 'mailer' AND key = 'key.' || :k%s AND value IS NOT NULL AND (tenant_id = mandant.current_tenant() OR tenant_id IS NULL) ORDER BY tenant_id NULLS LAST LIMIT 1;" >"$work/get-inline.sql"

variants="plain mandant inline"
echo
echo "reads: $rounds rounds of ${seconds}s per variant, interleaved; transactions/s of 10 reads"
compare get mandant_bench_service
