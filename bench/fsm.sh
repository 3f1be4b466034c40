#!/bin/sh
# fsm.sh: the price of enforcing a state machine, measured with pgbench on
# one server in one run.
#
# The same table three times (100,000 rows); every transaction moves one
# random row to its next state around a cycle (open -> active -> done ->
# open) with a single UPDATE:
#   (a) plain    no check
#   (b) mandant  mandant.enable_state_machine(): the C trigger (the table is
#                not audited, so every transition is also appended to
#                mandant.state_transition_log, as the design requires)
#   (c) plpgsql  a BEFORE trigger that looks the transition up in a table
# The second run replaces (b) by mandant bound with log_transitions => false:
# the check alone.
# Targets (issue 4), at 1 and 8 clients: b/a >= 0.95 and mandant's overhead
# at most a quarter of the PL/pgSQL trigger's ("ovh" <= 0.25).
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/fsm.sh
set -eu
. "$(dirname "$0")/lib.sh"
bench_setup mandant_bench_fsm

echo "bench/fsm: loading 3 x 100,000 rows"
su_psql -d "$bench_db" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.plain (id int PRIMARY KEY, title text NOT NULL, status text NOT NULL);
INSERT INTO bench.plain SELECT i, 'item ' || i, 'open' FROM generate_series(1, 100000) i;
CREATE TABLE bench.mandant (LIKE bench.plain INCLUDING ALL);
INSERT INTO bench.mandant SELECT * FROM bench.plain;
CREATE TABLE bench.plpgsql (LIKE bench.plain INCLUDING ALL);
INSERT INTO bench.plpgsql SELECT * FROM bench.plain;
CREATE TABLE bench.nolog (LIKE bench.plain INCLUDING ALL);
INSERT INTO bench.nolog SELECT * FROM bench.plain;

SELECT mandant.create_state_machine('cycle', '{open}', states => '{open,active,done}');
SELECT mandant.add_transition('cycle', 'open', 'active');
SELECT mandant.add_transition('cycle', 'active', 'done');
SELECT mandant.add_transition('cycle', 'done', 'open');
SELECT mandant.enable_state_machine('bench.mandant', 'cycle');
SELECT mandant.enable_state_machine('bench.nolog', 'cycle', log_transitions => false);

CREATE TABLE bench.transition (from_state text, to_state text, PRIMARY KEY (from_state, to_state));
INSERT INTO bench.transition VALUES ('open', 'active'), ('active', 'done'), ('done', 'open');
CREATE FUNCTION bench.check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
		SELECT 1 FROM bench.transition t WHERE t.from_state = OLD.status AND t.to_state = NEW.status) THEN
		RAISE EXCEPTION 'invalid transition from % to %', OLD.status, NEW.status;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER check_transition BEFORE UPDATE ON bench.plpgsql
	FOR EACH ROW EXECUTE FUNCTION bench.check_transition();
VACUUM ANALYZE;
SQL

for v in plain mandant nolog plpgsql; do
	cat >"$work/update-$v.sql" <<SQL
\set id random(1, 100000)
UPDATE bench.$v SET status = CASE status WHEN 'open' THEN 'active' WHEN 'active' THEN 'done' ELSE 'open' END WHERE id = :id;
SQL
done

variants="plain mandant plpgsql"
show_overhead=1
echo "bench/fsm: $rounds rounds of ${seconds}s per variant, interleaved; PostgreSQL $(server_version), $(nproc) cores"
echo
compare update postgres
echo
variants="plain nolog plpgsql"
compare update postgres
echo
su_psql -d "$bench_db" -Atc "SELECT 'transitions logged by mandant: ' || count(*) FROM mandant.state_transition_log"
