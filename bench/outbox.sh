#!/bin/sh
# outbox.sh: the price of the transactional outbox, and how fast consumers
# drain it, measured with pgbench on one server in one run.
#
# Writes: the same table three times; every transaction inserts one row:
#   (a) plain    no trigger
#   (b) mandant  mandant.enable_outbox(): the C trigger appending the event
#   (c) plpgsql  a PL/pgSQL trigger doing the same by hand: to_jsonb(NEW),
#                INSERT into an outbox table, pg_notify() per row
# once with mandant.outbox_notify = 'coalesce' (the default: at most one
# NOTIFY per interval, cluster-wide) and once with 'commit' (one NOTIFY per
# transaction).  A session LISTENs throughout, as a consumer would.  Targets (issue 5): b/a >= 0.85 at 1 client and >= 0.80 at
# 8 clients; mandant's overhead at most half of (c)'s ("ovh" <= 0.50).
#
# Drain: 100,000 pending events claimed and acknowledged in batches of 100
# by 1 and by 2 consumers (mandant.outbox_claim + mandant.outbox_ack, two
# round trips per batch).  Target: >= 20,000 events/s with one consumer.
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/outbox.sh
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench_outbox

echo "bench/outbox: preparing"
su_psql -d "$bench_db" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_commit') THEN
		CREATE ROLE mandant_bench_commit LOGIN;
	END IF;
END
$$;
-- bench.mandant has no tenant column and the sessions enter no tenant, so
-- its events are the platform's, which only trusted backends write.
GRANT mandant_service TO mandant_bench_commit;
ALTER ROLE mandant_bench_commit SET mandant.outbox_notify = 'commit';
CREATE SCHEMA bench;
CREATE TABLE bench.plain (id bigserial PRIMARY KEY, name text NOT NULL, status text NOT NULL,
						  amount numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bench.mandant (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.plpgsql (LIKE bench.plain INCLUDING ALL);
CREATE SEQUENCE bench.mandant_id_seq OWNED BY bench.mandant.id;
CREATE SEQUENCE bench.plpgsql_id_seq OWNED BY bench.plpgsql.id;
ALTER TABLE bench.mandant ALTER COLUMN id SET DEFAULT nextval('bench.mandant_id_seq');
ALTER TABLE bench.plpgsql ALTER COLUMN id SET DEFAULT nextval('bench.plpgsql_id_seq');
SELECT mandant.enable_outbox('bench.mandant', 'bench', 'item');

CREATE TABLE bench.outbox (
	id				bigserial PRIMARY KEY,
	event_id		uuid NOT NULL DEFAULT gen_random_uuid(),
	topic			text NOT NULL,
	aggregate_id	text NOT NULL,
	payload			jsonb NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	published_at	timestamptz
);
CREATE INDEX ON bench.outbox (id) WHERE published_at IS NULL;
CREATE FUNCTION bench.publish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bench.outbox (topic, aggregate_id, payload)
	VALUES ('bench.item.' || lower(TG_OP), NEW.id::text, to_jsonb(NEW));
	PERFORM pg_notify('bench_outbox', '');
	RETURN NULL;
END
$$;
CREATE TRIGGER publish AFTER INSERT OR UPDATE ON bench.plpgsql
	FOR EACH ROW EXECUTE FUNCTION bench.publish();
GRANT USAGE ON SCHEMA bench TO mandant_bench_commit;
GRANT INSERT ON ALL TABLES IN SCHEMA bench TO mandant_bench_commit;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA bench TO mandant_bench_commit;
SQL

for v in plain mandant plpgsql; do
	cat >"$work/insert-$v.sql" <<SQL
\set amount random(1, 100000)
INSERT INTO bench.$v (name, status, amount) VALUES ('new item', 'open', :amount / 100.0);
SQL
done

# A listener, idle between wake-ups as a consumer would be (not inside a
# statement: a session holding a snapshot keeps acknowledged events from
# being cleaned up, and every claim then walks past them).
mkfifo "$work/listener"
psql -X -q -h "$sockdir" -p "$port" -U postgres -d "$bench_db" <"$work/listener" >/dev/null 2>&1 &
listener=$!
exec 3>"$work/listener"
echo "LISTEN mandant_outbox; LISTEN bench_outbox;" >&3
trap 'exec 3>&-; wait $listener; su_psql -d postgres -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" >/dev/null 2>&1; rm -rf "$work"' EXIT

variants="plain mandant plpgsql"
show_overhead=1
echo "bench/outbox: $rounds rounds of ${seconds}s per variant, interleaved; PostgreSQL $(server_version), $(nproc) cores"
echo
echo "mandant.outbox_notify = coalesce, the default (the PL/pgSQL trigger notifies per row)"
compare insert postgres
echo
echo "mandant.outbox_notify = commit: one NOTIFY per transaction"
compare insert mandant_bench_commit

# Drain: claim and acknowledge 100,000 events in batches of 100.
cat >"$work/drain.sql" <<'SQL'
SELECT COALESCE(array_agg(id), '{}') AS ids FROM mandant.outbox_claim('drain-' || :client_id, 100) \gset
SELECT mandant.outbox_ack(:ids);
SQL
echo
printf '%-10s %12s %12s\n' consumers seconds "events/s"
for consumers in 1 2; do
	su_psql -d "$bench_db" >/dev/null <<'SQL'
TRUNCATE mandant.outbox;
INSERT INTO bench.mandant (name, status, amount)
SELECT 'drain item', 'open', i FROM generate_series(1, 100000) i;
VACUUM ANALYZE mandant.outbox;
SQL
	start=$(date +%s.%N)
	pgbench -n -M prepared -c "$consumers" -j "$consumers" -t $((1000 / consumers)) \
		-h "$sockdir" -p "$port" -U postgres -f "$work/drain.sql" "$bench_db" >/dev/null 2>&1
	end=$(date +%s.%N)
	left=$(su_psql -d "$bench_db" -Atc "SELECT count(*) FROM mandant.outbox WHERE published_at IS NULL")
	awk -v c="$consumers" -v s="$start" -v e="$end" -v left="$left" \
		'BEGIN { printf "%-10s %12.2f %12.0f%s\n", c, e - s, (100000 - left) / (e - s), (left > 0 ? "  (" left " left)" : "") }'
done
