#!/bin/sh
# citus.sh: what mandant's tenant context costs on Citus (issue 16, item
# 7), measured with pgbench through the coordinator of a cluster of one
# coordinator and two workers.
#
# Same data three times (100 tenants, 1,000 rows each, primary key
# (tenant_id, id)), in three tables distributed by tenant_id and
# colocated:
#   (a) plain    app.plain, no row level security; the transaction names
#                the tenant in its query only
#   (b) mandant  app.notes, mandant.enable_tenancy(); the transaction
#                enters the tenant with mandant.set_tenant() first, which
#                hands the workers the signed context envelope
#                (mandant.context) that their policy reads
#   (d) own RLS  app.diy, with the least that row level security on the
#                workers needs without mandant: a policy on a setting,
#                bench.tenant, that the transaction sets with SET LOCAL
#                and Citus forwards (citus.propagate_set_commands =
#                'local'); unsigned, unchecked, and open to any role
#                that sets it.  Its SET runs in app.diy_enter(), a
#                function of the superuser, because mandant refuses that
#                forwarding to other roles (a role's SET would be replayed
#                on the connections of others).  The call costs a little
#                more than a bare SET would, so d overstates this least
#                cost a little.
# Two workloads, each one transaction routed to the one shard of its
# tenant: "point" reads one row by key, "insert" writes one row.  Every
# query names the tenant (tenant_id = '<uuid>'), which is what lets Citus
# route it.  Each runs in two shapes of client:
#   statement  one statement per round trip (BEGIN, then set_tenant, then
#              the query, then COMMIT), as drivers do by default: (b)
#              pays one more round trip than (a);
#   pipelined  BEGIN, the entry into the tenant and the query sent at once
#              (pgbench's \startpipeline, as libpq's pipeline mode and the
#              drivers' batches do), COMMIT after the answer: the same
#              round trips for all three, so what is left is CPU.
# Target (issue 16): b/a >= 0.90 at 1 and 8 clients.  d/a is what any row
# level security on the workers costs, b/d what mandant adds to it.
#
# The variants run interleaved, BENCH_ROUNDS times each, as a non-superuser
# member of mandant_service (superusers bypass row level security); the
# median TPS of each is reported with b/a and the lowest and highest b/a of
# the single rounds, and for the pipelined shape d/a and b/d.  pgbench's
# variables are numbers, so each workload and variant is 100 scripts, one
# per tenant with its id written in, of which pgbench picks one at random
# per transaction.  BENCH_SYNCHRONOUS_COMMIT applies to the coordinator's
# sessions and, through the scratch database's settings, to the workers'
# (which commit the inserts).
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_CLIENTS="1 8" bench/citus.sh
#
# app.notes is set up as README's "Scale out" says: mandant.citus_setup(),
# enable_tenancy(), create_distributed_table().
#
# Runs against the cluster that $MANDANT_CITUS_SOCK & co. name (`.
# DIR/env.sh` after `scripts/citus.sh start DIR`), or else starts one of
# its own with scripts/citus.sh (which builds and installs Citus and
# mandant) and stops it at the end.  Works in a scratch database,
# mandant_citus_bench, made on every node and dropped at the end.
set -eu
# lib.sh: BENCH_* settings, PGOPTIONS, median; its connection helpers are
# for the `make run` cluster and are not used here.
. "$(dirname "$0")/lib.sh"

bench_db=mandant_citus_bench
owner=mandant_citus_bench_owner
app=mandant_citus_bench_app
work=$(mktemp -d /tmp/mandant-bench-citus.XXXXXX)
own_cluster=""

# cleanup: drop the scratch database and the roles on every node, stop the
# cluster if it is ours, remove the work directory.
cleanup() {
	for p in ${port_coordinator:-} ${port_workers:-}; do
		node_psql "$p" postgres -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" \
			-c "DROP ROLE IF EXISTS $app" -c "DROP ROLE IF EXISTS $owner" >/dev/null 2>&1 || true
	done
	if [ -n "$own_cluster" ]; then
		scripts/citus.sh stop "$own_cluster/citus" >/dev/null 2>&1 || true
		rm -rf "$own_cluster"
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# node_psql PORT DB [ARGS...]: psql as the superuser on one node.
node_psql() {
	p=$1 d=$2
	shift 2
	psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$p" -U postgres -d "$d" "$@"
}

# coord_psql [ARGS...]: psql as the superuser on the coordinator, in the
# scratch database.
coord_psql() {
	node_psql "$port_coordinator" "$bench_db" "$@"
}

if [ -z "${MANDANT_CITUS_SOCK:-}" ]; then
	own_cluster=$(mktemp -d /tmp/mandant-bench-citus-cluster.XXXXXX)
	echo "bench/citus: starting a cluster with scripts/citus.sh (log: $work/start.log)"
	if ! scripts/citus.sh start "$own_cluster/citus" >"$work/start.log" 2>&1; then
		tail -30 "$work/start.log" >&2
		exit 1
	fi
	. "$own_cluster/citus/env.sh"
fi
sock=$MANDANT_CITUS_SOCK
port_coordinator=$MANDANT_CITUS_COORDINATOR
port_workers=$MANDANT_CITUS_WORKERS

# The scratch database on every node, as scripts/citus.sh makes its own:
# both extensions, the two roles (made on each node before the workers are
# registered, so that nothing depends on Citus propagating them), the
# commit setting, then the workers registered with the coordinator.
echo "bench/citus: preparing $bench_db on the coordinator and the workers"
for p in $port_coordinator $port_workers; do
	node_psql "$p" postgres -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db" >/dev/null
	node_psql "$p" "$bench_db" >/dev/null <<-EOF
		SET client_min_messages = warning;
		CREATE EXTENSION citus;
		CREATE EXTENSION mandant CASCADE;
		DO \$\$
		BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$owner') THEN
				CREATE ROLE $owner LOGIN;
			END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$app') THEN
				CREATE ROLE $app LOGIN;
			END IF;
		END
		\$\$;
		GRANT mandant_service TO $app;
		ALTER DATABASE $bench_db SET synchronous_commit = '${BENCH_SYNCHRONOUS_COMMIT:-on}';
	EOF
done
set -- $port_workers
coord_psql >/dev/null <<-EOF
	SELECT citus_set_coordinator_host('$sock', $port_coordinator);
	SELECT citus_add_node('$sock', $1);
	SELECT citus_add_node('$sock', $2);
EOF
set --

# The tenants, made before mandant is converted for Citus (as an
# installation that adds Citus later has them).
coord_psql >/dev/null <<-EOF
	SET client_min_messages = warning;
	SELECT mandant.create_tenant('bench-' || i, 'Bench ' || i, 'owner@bench' || i || '.example')
	FROM generate_series(1, 100) i;
	CREATE SCHEMA app AUTHORIZATION $owner;
	GRANT USAGE ON SCHEMA app TO $app;
EOF

echo "bench/citus: loading 100 tenants x 1,000 rows into three distributed tables"
coord_psql -c "SET client_min_messages = warning" -c "SELECT mandant.citus_setup()" >/dev/null
node_psql "$port_coordinator" "$bench_db" -U "$owner" >/dev/null <<-EOF
	CREATE TABLE app.plain (tenant_id uuid NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));
	CREATE TABLE app.notes (LIKE app.plain INCLUDING ALL);
	CREATE TABLE app.diy (LIKE app.plain INCLUDING ALL);
	GRANT SELECT, INSERT ON app.plain, app.notes, app.diy TO $app;
	SELECT create_distributed_table('app.plain', 'tenant_id');
	SELECT create_distributed_table('app.diy', 'tenant_id', colocate_with => 'app.plain');
	ALTER TABLE app.diy ENABLE ROW LEVEL SECURITY;
	CREATE POLICY diy_tenant ON app.diy
		USING (tenant_id = NULLIF(current_setting('bench.tenant', true), '')::uuid);
EOF
node_psql "$port_coordinator" "$bench_db" -U "$owner" >/dev/null <<-'EOF'
	SELECT mandant.enable_tenancy('app.notes');
	SELECT create_distributed_table('app.notes', 'tenant_id', colocate_with => 'app.plain');
EOF
# The superuser writes the rows (it bypasses the policies); app.notes and
# app.diy are copies of app.plain, shard by colocated shard.  app.diy_enter
# is (d)'s way into a tenant (see the header): schema-qualified, no SET
# clause (which would take the SET LOCAL back at its end).
coord_psql >/dev/null <<-EOF
	INSERT INTO app.plain (tenant_id, id, body)
	SELECT t.id, i, md5(t.slug || i)
	FROM mandant.tenant t, generate_series(1, 1000) i
	WHERE t.slug LIKE 'bench-%';
	INSERT INTO app.notes SELECT * FROM app.plain;
	INSERT INTO app.diy SELECT * FROM app.plain;
	VACUUM ANALYZE app.plain;
	VACUUM ANALYZE app.notes;
	VACUUM ANALYZE app.diy;
	CREATE FUNCTION app.diy_enter(tenant uuid) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS \$\$
	BEGIN
		PERFORM pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
		EXECUTE 'SET LOCAL bench.tenant = ' || pg_catalog.quote_literal(tenant);
	END
	\$\$;
	REVOKE ALL ON FUNCTION app.diy_enter(uuid) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION app.diy_enter(uuid) TO $app;
EOF

# The scripts: WORKLOAD-VARIANT.N.sql for each tenant N, only the
# statements differ between the variants.  Inserts take a random id far
# above the loaded ones from a range of 2^62, so that no two clients
# collide on the primary key (the odds are below one in a million).
coord_psql -At -c "SELECT id FROM mandant.tenant WHERE slug LIKE 'bench-%' ORDER BY slug" >"$work/tenants"
[ "$(wc -l <"$work/tenants")" = 100 ] || { echo "bench/citus: expected 100 tenants" >&2; exit 1; }
n=0
while read -r t; do
	n=$((n + 1))
	for variant in plain mandant plainpipe mandantpipe diypipe; do
		case $variant in
		plain*) table=app.plain enter="" ;;
		mandant*) table=app.notes enter="SELECT mandant.set_tenant('$t');" ;;
		diy*) table=app.diy enter="SELECT app.diy_enter('$t');" ;;
		esac
		case $variant in
		*pipe) open='\startpipeline' close='\endpipeline' ;;
		*) open="" close="" ;;
		esac
		cat >"$work/point-$variant.$n.sql" <<-EOF
			\set i random(1, 1000)
			$open
			BEGIN;
			$enter
			SELECT body FROM $table WHERE tenant_id = '$t' AND id = :i;
			$close
			COMMIT;
		EOF
		cat >"$work/insert-$variant.$n.sql" <<-EOF
			\set i random(1000001, 4611686018427387903)
			$open
			BEGIN;
			$enter
			INSERT INTO $table (tenant_id, id, body) VALUES ('$t', :i, 'x');
			$close
			COMMIT;
		EOF
	done
done <"$work/tenants"

# As the benchmark role: the three tables are distributed; a tenant sees
# its row in each; app.notes and app.diy show nothing without a tenant; an
# insert works in each.
t=$(head -1 "$work/tenants")
found=$(psql -X -q -At -v ON_ERROR_STOP=1 -h "$sock" -p "$port_coordinator" -U "$app" -d "$bench_db" <<-EOF
	SELECT count(*) FROM pg_dist_partition
	 WHERE logicalrelid IN ('app.plain'::regclass, 'app.notes'::regclass, 'app.diy'::regclass)
	   AND partmethod = 'h';
	SELECT (SELECT count(*) FROM app.notes WHERE tenant_id = '$t' AND id = 42)
	     + (SELECT count(*) FROM app.diy WHERE tenant_id = '$t' AND id = 42);
	BEGIN;
	SELECT mandant.set_tenant('$t') \\gset
	SELECT app.diy_enter('$t') \\gset
	SELECT (SELECT count(*) FROM app.plain WHERE tenant_id = '$t' AND id = 42)
	     + (SELECT count(*) FROM app.notes WHERE tenant_id = '$t' AND id = 42)
	     + (SELECT count(*) FROM app.diy WHERE tenant_id = '$t' AND id = 42);
	INSERT INTO app.plain (tenant_id, id, body) VALUES ('$t', 1000000, 'check');
	INSERT INTO app.notes (tenant_id, id, body) VALUES ('$t', 1000000, 'check');
	INSERT INTO app.diy (tenant_id, id, body) VALUES ('$t', 1000000, 'check');
	ROLLBACK;
EOF
) || { echo "bench/citus: sanity check failed: $found" >&2; exit 1; }
found=$(echo "$found" | tr '\n' ' ')
if [ "$found" != "3 0 3 " ]; then
	echo "bench/citus: sanity check failed (expected \"3 0 3\": distributed tables, rows seen without and with a tenant; got \"$found\")" >&2
	exit 1
fi

# tps_of CLIENTS NAME: one pgbench run over the 100 scripts NAME.*.sql as
# the benchmark role; prints its TPS, or stops the bench when pgbench
# failed (a client aborted).
tps_of() {
	files=""
	for f in "$work/$2".*.sql; do
		files="$files -f $f"
	done
	# shellcheck disable=SC2086
	if ! pgbench -n -M prepared -T "$seconds" -c "$1" -j "$1" -h "$sock" -p "$port_coordinator" \
		-U "$app" $files "$bench_db" >"$work/pgbench.out" 2>&1; then
		echo "bench/citus: pgbench $2 at $1 clients failed:" >&2
		grep -v '^SQL script\|^ - ' "$work/pgbench.out" | tail -20 >&2
		exit 1
	fi
	sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out"
}

# spread A B: the lowest and highest ratio of the single rounds' TPS in
# files B and A (run in the same round, line by line).
spread() {
	paste "$1" "$2" | awk '$1 > 0 { r = $2 / $1
		if (n++ == 0 || r < lo) lo = r; if (n == 1 || r > hi) hi = r }
		END { if (n) printf "%.3f-%.3f", lo, hi; else print "-" }'
}

# compare WORKLOAD: runs the five variants of WORKLOAD interleaved
# ($rounds rounds, each variant once in each) for every client count, and
# prints the median TPS of each with b/a and the spread of b/a over the
# rounds, per shape, and d/a and b/d for the pipelined one; keeps every
# median b/a in $work/ratios.
compare() {
	printf '%-7s %-7s %-10s %9s %9s %9s %7s  %-12s %6s %6s\n' "$1" clients shape "a plain" \
		"b mandant" "d own RLS" "b/a" "b/a rounds" "d/a" "b/d"
	for c in $clients; do
		for v in plain mandant plainpipe mandantpipe diypipe; do
			: >"$work/$v.tps"
		done
		r=0
		while [ "$r" -lt "$rounds" ]; do
			for v in plain mandant plainpipe mandantpipe diypipe; do
				tps_of "$c" "$1-$v" >>"$work/$v.tps"
			done
			r=$((r + 1))
		done
		for v in plain mandant plainpipe mandantpipe diypipe; do
			eval "m_$v=\$(median <\"\$work/\$v.tps\")"
		done
		# shellcheck disable=SC2154
		awk -v w="$1" -v c="$c" -v a="$m_plain" -v b="$m_mandant" -v s="$(spread "$work/plain.tps" "$work/mandant.tps")" \
			-v pa="$m_plainpipe" -v pb="$m_mandantpipe" -v pd="$m_diypipe" \
			-v ps="$(spread "$work/plainpipe.tps" "$work/mandantpipe.tps")" -v out="$work/ratios" 'BEGIN {
			printf "%-7s %-7s %-10s %9.1f %9.1f %9s %7.3f  %-12s %6s %6s\n", w, c, "statement", a, b, "-", b / a, s, "-", "-"
			printf "%-7s %-7s %-10s %9.1f %9.1f %9.1f %7.3f  %-12s %6.3f %6.3f\n", w, c, "pipelined", pa, pb, pd,
				pb / pa, ps, pd / pa, pb / pd
			printf "%s %s statement %.3f\n", w, c, b / a >>out
			printf "%s %s pipelined %.3f\n", w, c, pb / pa >>out
		}'
	done
}

version=$(coord_psql -At -c "SELECT split_part(current_setting('server_version'), ' ', 1) || ', Citus ' ||
	(SELECT extversion FROM pg_extension WHERE extname = 'citus')")
echo "bench/citus: $rounds rounds of ${seconds}s per variant, interleaved;" \
	"synchronous_commit ${BENCH_SYNCHRONOUS_COMMIT:-on}; PostgreSQL $version, 1 + 2 nodes, $(nproc) cores"
: >"$work/ratios"
for workload in point insert; do
	echo
	compare "$workload"
done
echo
for shape in statement pipelined; do
	awk -v shape="$shape" '$3 == shape { if (n++ == 0 || $4 < lo) { lo = $4; at = $1 " at " $2 " clients" } }
		END { printf "bench/citus: target b/a >= 0.90 %s with %s clients (lowest median b/a %.3f, %s)\n",
		      (lo >= 0.90) ? "met" : "NOT met", shape, lo, at }' "$work/ratios"
done
