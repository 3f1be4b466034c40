#!/bin/sh
# audit.sh: the price of the audit trail, measured with pgbench on one
# server in one run.
#
# The same table three times, each loaded with the same 100,000 rows:
#   (a) plain    no trigger
#   (b) mandant  mandant.enable_audit(): the C trigger writing
#                mandant.audit_event (diff, hash, append without SPI)
#   (c) plpgsql  the trigger people write by hand: to_jsonb(OLD)/to_jsonb(NEW)
#                into a jsonb audit table
# Workloads: "insert" adds a row, "update" changes one column of a random
# row.  Targets (issue 3), at 1 and 8 clients, for both: b/a >= 0.85 and
# mandant's overhead (1 - b/a) at most half of the PL/pgSQL trigger's
# (the "ovh" column <= 0.50).
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/audit.sh
#
# Runs against the cluster of `make run` (make bench starts it) in a
# scratch database it drops at the end.
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench_audit

echo "bench/audit: loading 3 x 100,000 rows"
su_psql -d "$bench_db" >/dev/null <<'EOF'
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.plain (
	id			bigserial PRIMARY KEY,
	name		text NOT NULL,
	status		text NOT NULL,
	amount		numeric(12, 2) NOT NULL,
	owner_id	uuid,
	created_at	timestamptz NOT NULL DEFAULT now()
);
INSERT INTO bench.plain (name, status, amount, owner_id)
SELECT 'item ' || i, 'open', i % 1000, gen_random_uuid() FROM generate_series(1, 100000) i;
CREATE TABLE bench.mandant (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.plpgsql (LIKE bench.plain INCLUDING ALL);
-- LIKE ... INCLUDING ALL shares the sequence; give each its own.
CREATE SEQUENCE bench.mandant_id_seq OWNED BY bench.mandant.id;
CREATE SEQUENCE bench.plpgsql_id_seq OWNED BY bench.plpgsql.id;
ALTER TABLE bench.mandant ALTER COLUMN id SET DEFAULT nextval('bench.mandant_id_seq');
ALTER TABLE bench.plpgsql ALTER COLUMN id SET DEFAULT nextval('bench.plpgsql_id_seq');
INSERT INTO bench.mandant SELECT * FROM bench.plain;
INSERT INTO bench.plpgsql SELECT * FROM bench.plain;
SELECT setval('bench.mandant_id_seq', 100000), setval('bench.plpgsql_id_seq', 100000);

SELECT mandant.enable_audit('bench.mandant');

CREATE TABLE bench.audit_log (
	id			bigserial PRIMARY KEY,
	table_name	text NOT NULL,
	operation	text NOT NULL,
	old_row		jsonb,
	new_row		jsonb,
	actor		text NOT NULL DEFAULT current_user,
	changed_at	timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION bench.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bench.audit_log (table_name, operation, old_row, new_row)
	VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
			CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
			CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
	RETURN NULL;
END
$$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON bench.plpgsql
	FOR EACH ROW EXECUTE FUNCTION bench.audit_row();
VACUUM ANALYZE;
EOF

for v in plain mandant plpgsql; do
	cat >"$work/insert-$v.sql" <<EOF
\set amount random(1, 100000)
INSERT INTO bench.$v (name, status, amount, owner_id) VALUES ('new item', 'open', :amount / 100.0, gen_random_uuid());
EOF
	cat >"$work/update-$v.sql" <<EOF
\set id random(1, 100000)
UPDATE bench.$v SET amount = amount + 1 WHERE id = :id;
EOF
done

# Per-row cost in one big statement (no commit in the way): the plain
# insert, the "floor" of writing an equivalent event row and its primary key
# entry with a data-modifying CTE (no trigger), mandant and the PL/pgSQL
# trigger.  The best of two runs of 100,000 rows each.
su_psql -d "$bench_db" >/dev/null <<'EOF'
CREATE TABLE bench.floor (LIKE bench.plain INCLUDING ALL);
CREATE SEQUENCE bench.floor_id_seq OWNED BY bench.floor.id;
ALTER TABLE bench.floor ALTER COLUMN id SET DEFAULT nextval('bench.floor_id_seq');
CREATE TABLE bench.floor_event (LIKE mandant.audit_event INCLUDING DEFAULTS);
CREATE SEQUENCE bench.floor_event_id_seq CACHE 32;
ALTER TABLE bench.floor_event ALTER COLUMN id SET DEFAULT nextval('bench.floor_event_id_seq');
ALTER TABLE bench.floor_event ADD PRIMARY KEY (tenant_id, id);
EOF
bulk_ms() {
	su_psql -d "$bench_db" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
rows="SELECT 'bulk item', 'open', i % 1000, gen_random_uuid() FROM generate_series(1, 100000) i"
echo
printf '%-26s %12s %14s\n' "bulk, 100,000 rows" "us per row" "over plain"
plain_us=
for v in plain floor mandant plpgsql; do
	case $v in
	floor) sql="WITH ins AS (INSERT INTO bench.floor (name, status, amount, owner_id) $rows RETURNING *)
		INSERT INTO bench.floor_event (tenant_id, occurred_at, txid, category, action, entity_type, entity_id, changes, hash)
		SELECT '00000000-0000-0000-0000-000000000000', statement_timestamp(), pg_current_xact_id()::text::bigint, 'bench', 'insert', 'bench.floor',
			   ins.id::text, to_jsonb(ins), sha256(ins.name::bytea) FROM ins" ;;
	*) sql="INSERT INTO bench.$v (name, status, amount, owner_id) $rows" ;;
	esac
	best=$( (bulk_ms "$sql"; bulk_ms "$sql") | sort -n | head -1)
	us=$(awk -v ms="$best" 'BEGIN { printf "%.2f", ms * 1000 / 100000 }')
	[ -z "$plain_us" ] && plain_us=$us
	awk -v v="$v" -v us="$us" -v p="$plain_us" 'BEGIN { printf "%-26s %12.2f %14.2f\n", v, us, us - p }'
done

variants="plain mandant plpgsql"
show_overhead=1
echo "bench/audit: $rounds rounds of ${seconds}s per variant, interleaved; PostgreSQL $(server_version), $(nproc) cores"
for workload in insert update; do
	echo
	compare "$workload" postgres
done

echo
su_psql -d "$bench_db" -Atc "SELECT 'events written by mandant: ' || count(*) || ', by the PL/pgSQL trigger: ' || (SELECT count(*) FROM bench.audit_log) FROM mandant.audit_event"
