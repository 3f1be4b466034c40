#!/bin/sh
# quota.sh: the price of counting rows against plan limits, and how fast
# tenants are created, on one server in one run.
#
# Inserts: three tenant tables (RLS on all of them); every transaction
# inserts one row for the tenant of its client (8 tenants, so 8 clients
# never share a counter):
#   (a) plain    no quota
#   (b) mandant  mandant.enable_quota(): the C trigger's conditional UPDATE
#                of the tenant's usage row (limit 100,000,000)
#   (c) plpgsql  a PL/pgSQL trigger doing the same UPDATE ... WHERE used <
#                limit by hand, raising when it finds no row
# Target (issue 8): b/a >= 0.85 at 1 and 8 clients.
#
# Tenants: mandant.create_tenant() per second (1 and 2 clients), each with
# its event and audit record.
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/quota.sh
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench_quota

echo "bench/quota: preparing"
su_psql -d "$bench_db" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_admin') THEN
		CREATE ROLE mandant_bench_admin LOGIN IN ROLE mandant_admin;
	END IF;
END
$$;
INSERT INTO mandant.plan (key, name, limits) VALUES ('bench', 'Bench', '{"records": 100000000}');
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key)
SELECT ('c0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'bench-' || i, 'Bench ' || i, 'b@bench.test', 'bench'
FROM generate_series(1, 8) i;
CREATE SCHEMA bench;
CREATE TABLE bench.plain (tenant_id uuid, id bigserial, title text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
						  PRIMARY KEY (tenant_id, id));
CREATE TABLE bench.mandant (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.plpgsql (LIKE bench.plain INCLUDING ALL);
CREATE SEQUENCE bench.mandant_id_seq OWNED BY bench.mandant.id;
CREATE SEQUENCE bench.plpgsql_id_seq OWNED BY bench.plpgsql.id;
ALTER TABLE bench.mandant ALTER COLUMN id SET DEFAULT nextval('bench.mandant_id_seq');
ALTER TABLE bench.plpgsql ALTER COLUMN id SET DEFAULT nextval('bench.plpgsql_id_seq');
SELECT mandant.enable_tenancy(t) FROM unnest(ARRAY['bench.plain', 'bench.mandant', 'bench.plpgsql']::regclass[]) t;
SELECT mandant.enable_quota('bench.mandant', 'records');

CREATE TABLE bench.counter (tenant_id uuid, resource text, used bigint NOT NULL, "limit" bigint,
							PRIMARY KEY (tenant_id, resource));
INSERT INTO bench.counter SELECT id, 'records', 0, 100000000 FROM mandant.tenant WHERE slug LIKE 'bench-%';
CREATE FUNCTION bench.count_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE bench.counter SET used = used + 1
	WHERE tenant_id = NEW.tenant_id AND resource = 'records' AND ("limit" IS NULL OR used < "limit");
	IF NOT FOUND THEN
		RAISE EXCEPTION 'plan limit reached' USING ERRCODE = 'MD030';
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER count_record AFTER INSERT ON bench.plpgsql FOR EACH ROW EXECUTE FUNCTION bench.count_record();
SQL

for v in plain mandant plpgsql; do
	cat >"$work/insert-$v.sql" <<SQL
INSERT INTO bench.$v (tenant_id, title)
VALUES (('c0000000-0000-4000-8000-' || lpad((:client_id % 8 + 1)::text, 12, '0'))::uuid, 'a record');
SQL
done
cat >"$work/create.sql" <<'SQL'
SELECT mandant.create_tenant('bt-' || :client_id || '-' || floor(random() * 1e12)::bigint, 'Bench tenant', 'owner@bench.test');
SQL

variants="plain mandant plpgsql"
show_overhead=1
echo "bench/quota: $rounds rounds of ${seconds}s per variant, interleaved; PostgreSQL $(server_version), $(nproc) cores"
echo
compare insert postgres

echo
printf '%-8s %14s\n' clients "tenants/s"
for c in 1 2; do
	printf '%-8s %14.1f\n' "$c" "$(pgbench -n -M prepared -T "$seconds" -c "$c" -j "$c" -h "$sockdir" -p "$port" \
		-U mandant_bench_admin -f "$work/create.sql" "$bench_db" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')"
done

echo
echo "counters after the run (must equal the rows):"
su_psql -d "$bench_db" -Atc "SELECT 'mandant: ' || (SELECT sum(used) FROM mandant.tenant_usage WHERE resource = 'records')
	|| ' counted, ' || (SELECT count(*) FROM bench.mandant) || ' rows'"
