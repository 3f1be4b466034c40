#!/bin/sh
# tenancy.sh: the price of row level security per tenant, measured with
# pgbench on one server in one run.
#
# Same data three times (100 tenants, 200,000 rows, primary key (tenant_id,
# id)); every transaction enters a random tenant with mandant.set_tenant()
# and reads from one of three tables:
#   (a) plain        no row level security, the query filters by tenant
#   (b) mandant      mandant.enable_tenancy(): tenant_id = mandant.current_tenant()
#   (c) handwritten  tenant_id = current_setting('app.current_tenant', true)::uuid
# Two workloads: "point" reads one row by key (the issue's target: b/a >=
# 0.95, b >= c); "scan" counts the tenant's rows with index scans off, so
# that the policy runs once per row and its own cost shows.  The variants
# run interleaved, BENCH_ROUNDS times each, as a non-superuser (superusers
# bypass row level security); the median TPS of each is reported with the
# ratios b/a and b/c.
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/tenancy.sh
#
# Uses the cluster of `make run` (started if needed) and a scratch database
# mandant_bench that it drops at the end.
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench

echo "bench/tenancy: loading 100 tenants x 2,000 rows into three tables"
su_psql -d "$bench_db" >/dev/null <<'EOF'
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_app') THEN
		CREATE ROLE mandant_bench_app LOGIN IN ROLE mandant_service;
	END IF;
END
$$;
INSERT INTO mandant.tenant (id, slug, name, owner_email)
SELECT format('00000000-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid,
	   'bench-' || i, 'Bench ' || i, 'owner@bench' || i || '.example'
FROM generate_series(1, 100) i;

CREATE SCHEMA bench;
GRANT USAGE ON SCHEMA bench TO mandant_bench_app;
CREATE TABLE bench.plain (tenant_id uuid NOT NULL, id int NOT NULL, payload text,
						  PRIMARY KEY (tenant_id, id));
INSERT INTO bench.plain
SELECT format('00000000-0000-4000-8000-%s', lpad((i % 100 + 1)::text, 12, '0'))::uuid,
	   i, md5(i::text)
FROM generate_series(1, 200000) i;
CREATE TABLE bench.mandant (LIKE bench.plain INCLUDING ALL);
INSERT INTO bench.mandant SELECT * FROM bench.plain;
SELECT mandant.enable_tenancy('bench.mandant');
CREATE TABLE bench.handwritten (LIKE bench.plain INCLUDING ALL);
INSERT INTO bench.handwritten SELECT * FROM bench.plain;
ALTER TABLE bench.handwritten ENABLE ROW LEVEL SECURITY;
ALTER TABLE bench.handwritten FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON bench.handwritten
	USING (tenant_id = current_setting('app.current_tenant', true)::uuid)
	WITH CHECK (tenant_id = current_setting('app.current_tenant', true)::uuid);
GRANT SELECT ON bench.plain, bench.mandant, bench.handwritten TO mandant_bench_app;
VACUUM ANALYZE bench.plain, bench.mandant, bench.handwritten;
EOF

# One script per workload and variant; only the query differs.
#   point  read one row by key (what every request does)
#   scan   count a tenant's rows with index scans and parallel workers off,
#          so that the policy is evaluated for every row (a report that
#          ends in a sequential scan)
for variant in plain mandant handwritten; do
	case $variant in
	plain)
		point="SELECT payload FROM bench.plain WHERE tenant_id = mandant.current_tenant() AND id = :id;"
		scan="SELECT count(*) FROM bench.plain WHERE tenant_id = (SELECT mandant.current_tenant());"
		;;
	*)
		point="SELECT payload FROM bench.$variant WHERE id = :id;"
		scan="SELECT count(*) FROM bench.$variant;"
		;;
	esac
	cat >"$work/point-$variant.sql" <<EOF
\set id random(1, 200000)
\set t :id % 100 + 1
BEGIN;
SELECT mandant.set_tenant(('00000000-0000-4000-8000-' || lpad(:t::text, 12, '0'))::uuid);
$point
COMMIT;
EOF
	cat >"$work/scan-$variant.sql" <<EOF
\set t random(1, 100)
BEGIN;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SET LOCAL max_parallel_workers_per_gather = 0;
SELECT mandant.set_tenant(('00000000-0000-4000-8000-' || lpad(:t::text, 12, '0'))::uuid);
$scan
COMMIT;
EOF
done

# Every lookup must return its row: check once, as the benchmark role.
found=$(psql -X -At -h "$sockdir" -p "$port" -U mandant_bench_app -d "$bench_db" <<'EOF'
BEGIN;
SELECT mandant.set_tenant('00000000-0000-4000-8000-000000000043');
SELECT (SELECT count(*) FROM bench.plain WHERE tenant_id = mandant.current_tenant() AND id = 42)
	 + (SELECT count(*) FROM bench.mandant WHERE id = 42)
	 + (SELECT count(*) FROM bench.handwritten WHERE id = 42)
	 + (SELECT count(*) FROM bench.mandant WHERE id = 43);
COMMIT;
EOF
)
found=$(echo "$found" | grep -E '^[0-9]+$' | tail -1)
if [ "$found" != 3 ]; then
	echo "bench/tenancy: sanity check failed (expected 3 visible rows, got $found)" >&2
	exit 1
fi

variants="plain mandant handwritten"
echo "bench/tenancy: $rounds rounds of ${seconds}s per variant, interleaved; PostgreSQL $(server_version), $(nproc) cores"
for workload in point scan; do
	echo
	compare "$workload" mandant_bench_app
done
