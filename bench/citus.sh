#!/bin/sh
# citus.sh: what mandant's tenant context costs on Citus (issue 16, item
# 7), measured with pgbench through the coordinator of a cluster of one
# coordinator and two workers.
#
# Same data twice (100 tenants, 1,000 rows each, primary key (tenant_id,
# id)), in two tables distributed by tenant_id and colocated:
#   (a) plain    app.plain, no row level security; the transaction names
#                the tenant in its query only
#   (b) mandant  app.notes, mandant.enable_tenancy(); the transaction
#                enters the tenant with mandant.set_tenant() first, which
#                hands the workers the signed context envelope
#                (mandant.context) that their policy reads
#   (c) round trip  app.plain again, with a statement of no cost
#                (SELECT 1) where (b) enters the tenant: the client's one
#                more round trip per transaction, which b/c takes out of
#                what (b) pays on top of (a)
# Two workloads, each one transaction routed to the one shard of its
# tenant: "point" reads one row by key, "insert" writes one row.  Every
# query names the tenant (tenant_id = '<uuid>'), which is what lets Citus
# route it; (b) pays set_tenant, the envelope that travels with the query
# and the policy on the worker on top of it.  Target (issue 16): b/a >=
# 0.90 at 1 and 8 clients.
#
# The variants run interleaved, BENCH_ROUNDS times each, as a non-superuser
# member of mandant_service (superusers bypass row level security); the
# median TPS of each is reported with b/a and the lowest and highest b/a of
# the single rounds, and b/c.  pgbench's variables are numbers, so each workload and
# variant is 100 scripts, one per tenant with its id written in, of which
# pgbench picks one at random per transaction.  BENCH_SYNCHRONOUS_COMMIT
# applies to the coordinator's sessions and, through the scratch database's
# settings, to the workers' (which commit the inserts).
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

echo "bench/citus: loading 100 tenants x 1,000 rows into two distributed tables"
coord_psql -c "SET client_min_messages = warning" -c "SELECT mandant.citus_setup()" >/dev/null
node_psql "$port_coordinator" "$bench_db" -U "$owner" >/dev/null <<-EOF
	CREATE TABLE app.plain (tenant_id uuid NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));
	CREATE TABLE app.notes (LIKE app.plain INCLUDING ALL);
	GRANT SELECT, INSERT ON app.plain, app.notes TO $app;
	SELECT create_distributed_table('app.plain', 'tenant_id');
EOF
node_psql "$port_coordinator" "$bench_db" -U "$owner" >/dev/null <<-'EOF'
	SELECT mandant.enable_tenancy('app.notes');
	SELECT create_distributed_table('app.notes', 'tenant_id', colocate_with => 'app.plain');
EOF
# The superuser writes the rows (it bypasses the policy); app.notes is a
# copy of app.plain, shard by colocated shard.
coord_psql >/dev/null <<-'EOF'
	INSERT INTO app.plain (tenant_id, id, body)
	SELECT t.id, i, md5(t.slug || i)
	FROM mandant.tenant t, generate_series(1, 1000) i
	WHERE t.slug LIKE 'bench-%';
	INSERT INTO app.notes SELECT * FROM app.plain;
	VACUUM ANALYZE app.plain;
	VACUUM ANALYZE app.notes;
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
	for variant in plain mandant roundtrip; do
		case $variant in
		plain) table=app.plain enter="" ;;
		mandant) table=app.notes enter="SELECT mandant.set_tenant('$t');" ;;
		roundtrip) table=app.plain enter="SELECT 1;" ;;
		esac
		cat >"$work/point-$variant.$n.sql" <<-EOF
			\set i random(1, 1000)
			BEGIN;
			$enter
			SELECT body FROM $table WHERE tenant_id = '$t' AND id = :i;
			COMMIT;
		EOF
		cat >"$work/insert-$variant.$n.sql" <<-EOF
			\set i random(1000001, 4611686018427387903)
			BEGIN;
			$enter
			INSERT INTO $table (tenant_id, id, body) VALUES ('$t', :i, 'x');
			COMMIT;
		EOF
	done
done <"$work/tenants"

# As the benchmark role: both tables are distributed; a tenant sees its row
# in both; app.notes shows nothing without a tenant; an insert works in both.
t=$(head -1 "$work/tenants")
found=$(psql -X -q -At -v ON_ERROR_STOP=1 -h "$sock" -p "$port_coordinator" -U "$app" -d "$bench_db" <<-EOF
	SELECT count(*) FROM pg_dist_partition WHERE logicalrelid IN ('app.plain'::regclass, 'app.notes'::regclass)
	   AND partmethod = 'h';
	SELECT count(*) FROM app.notes WHERE tenant_id = '$t' AND id = 42;
	BEGIN;
	SELECT mandant.set_tenant('$t') \\gset
	SELECT (SELECT count(*) FROM app.plain WHERE tenant_id = '$t' AND id = 42)
	     + (SELECT count(*) FROM app.notes WHERE tenant_id = '$t' AND id = 42);
	INSERT INTO app.plain (tenant_id, id, body) VALUES ('$t', 1000000, 'check');
	INSERT INTO app.notes (tenant_id, id, body) VALUES ('$t', 1000000, 'check');
	ROLLBACK;
EOF
) || { echo "bench/citus: sanity check failed: $found" >&2; exit 1; }
found=$(echo "$found" | tr '\n' ' ')
if [ "$found" != "2 0 2 " ]; then
	echo "bench/citus: sanity check failed (expected \"2 0 2\": distributed tables, rows seen without and with a tenant; got \"$found\")" >&2
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

# compare WORKLOAD: runs WORKLOAD-plain, WORKLOAD-mandant and
# WORKLOAD-roundtrip interleaved ($rounds rounds, a, b, c in each) for
# every client count, and prints the median TPS of each, b/a with the
# lowest and highest b/a of the single rounds, and b/c; keeps every median
# b/a in $work/ratios.
compare() {
	printf '%-7s %-7s %11s %11s %11s %7s  %-12s %7s\n' "$1" clients "a plain" "b mandant" "c roundtrip" \
		"b/a" "b/a rounds" "b/c"
	for c in $clients; do
		: >"$work/a.tps"
		: >"$work/b.tps"
		: >"$work/c.tps"
		r=0
		while [ "$r" -lt "$rounds" ]; do
			tps_of "$c" "$1-plain" >>"$work/a.tps"
			tps_of "$c" "$1-mandant" >>"$work/b.tps"
			tps_of "$c" "$1-roundtrip" >>"$work/c.tps"
			r=$((r + 1))
		done
		a=$(median <"$work/a.tps")
		b=$(median <"$work/b.tps")
		rt=$(median <"$work/c.tps")
		spread=$(paste "$work/a.tps" "$work/b.tps" | awk '$1 > 0 { r = $2 / $1
			if (n++ == 0 || r < lo) lo = r; if (n == 1 || r > hi) hi = r }
			END { if (n) printf "%.3f-%.3f", lo, hi; else print "-" }')
		awk -v w="$1" -v c="$c" -v a="$a" -v b="$b" -v rt="$rt" -v s="$spread" -v out="$work/ratios" 'BEGIN {
			printf "%-7s %-7s %11.1f %11.1f %11.1f %7.3f  %-12s %7.3f\n", w, c, a, b, rt, b / a, s, b / rt
			printf "%s %s %.3f\n", w, c, b / a >>out
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
awk '{ if (NR == 1 || $3 < lo) { lo = $3; at = $1 " at " $2 " clients" } }
	END { printf "bench/citus: target b/a >= 0.90 %s (lowest median b/a %.3f, %s)\n",
	      (lo >= 0.90) ? "met" : "NOT met", lo, at }' "$work/ratios"
