#!/bin/sh
# gateway.sh: what the HTTP gateway costs, on one machine in one run.
#
# One tenant-scoped endpoint, GET /bench/v1/items/{itemId} (scope read): a
# SECURITY DEFINER function reading one row of a table under
# mandant.enable_tenancy, registered with mandant.http_route.  Each request
# carries a valid access token; all three run at BENCH_HTTP_CLIENTS (32)
# concurrent keep-alive clients:
#   (a) sql      pgbench sends the gateway's own statement, SELECT ... FROM
#                mandant.http_call($1::jsonb, $2), straight to the server,
#                as a member of mandant_gateway (the ceiling: no HTTP)
#   (b) gateway  wrk against shim/run (Kore + shim.so)
#   (c) node     wrk against bench/peers/server.js: Node.js + Fastify + pg,
#                BEGIN, SELECT mandant.authenticate($1), the scope check and
#                the function, COMMIT, the same envelope (npm ci installs
#                it into bench/peers/node_modules on first use)
# Each variant runs BENCH_SECONDS, interleaved, BENCH_ROUNDS times, first
# with synchronous_commit on, then off.  Printed: median requests/s, p50
# and p99 latency of the median round, peak RSS (gateway: the Kore parent
# and its workers together; node: its process; pgbench: -), the ratios
# b/a and b/c and their lowest and highest single-round values.
# Targets (issue 15): b/a >= 0.7, b/c >= 2, p99 of (b) < 10 ms, gateway
# RSS < 40 MB.
#
# Server time inside the server (N calls in one statement, minus the same
# loop without the call, as bench/auth.sh does), as the gateway's role:
#   http_call of the route, minus authenticate + the function called
#   directly (target: <= 15 us added); authenticate of a token this
#   backend has already verified (target: <= 10 us).
#
# CPUs: load generator, gateway (or node) and PostgreSQL share this
# machine.  By default nothing is pinned: the scheduler places all three
# stacks the same way.  BENCH_CPUS_LOAD and BENCH_CPUS_SERVER (CPU lists
# for taskset) pin the load generator (pgbench, wrk) and the HTTP server
# (Kore, node) and leave PostgreSQL to the scheduler.  On 2 cores,
# BENCH_CPUS_LOAD=1 BENCH_CPUS_SERVER=0 keeps wrk from competing with the
# Kore workers and shortens the gateway's tail (its slowest requests are
# those whose worker waits for a CPU behind the server's backends), but
# puts node's single event loop on the CPU the backends use most: the
# split changes the comparison more than either program does, so it is
# an option, printed with the results, not the default.
#
# A private cluster of its own (scripts/cluster.sh, on a free port, in a
# temporary directory, with fresh token keys), not the one of `make run`:
# the bench changes synchronous_commit with ALTER SYSTEM and needs the
# signing keys.  Everything it starts is stopped on exit.  Needs the
# installed extension (make install), shim/shim.so (make), wrk, node and
# npm (Debian packages; installed here if missing and running as root).
#
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_HTTP_CLIENTS=32 bench/gateway.sh
#   BENCH_SYNC="on off"    the synchronous_commit settings to run
#   MANDANT_HTTP_WORKERS, MANDANT_DB_CONNECTIONS: as for shim/run
#   BENCH_SHIM=DIR         the gateway in DIR (DIR/run, DIR/shim.so), e.g.
#                          an older build, instead of shim/
#   BENCH_HOLD=FILE        set up, warm up, write ports, token and PIDs
#                          into FILE and wait (for perf) until stopped
set -eu
. "$(dirname "$0")/lib.sh"
top=$(pwd)
http_clients=${BENCH_HTTP_CLIENTS:-32}
loops=${BENCH_LOOPS:-20000}
gw_workers=${MANDANT_HTTP_WORKERS:-2}
gw_conns=${MANDANT_DB_CONNECTIONS:-4}
cpus_load=${BENCH_CPUS_LOAD-}
cpus_server=${BENCH_CPUS_SERVER-}
tenant=c0000000-0000-4000-8000-0000000000a1
item=42
# The sessions choose synchronous_commit from the server's setting.
PGOPTIONS=
export PGOPTIONS

# What the bench needs that the build does not.
shim=${BENCH_SHIM:-shim}
[ -f "$shim/shim.so" ] || { echo "bench/gateway: $shim/shim.so is missing: run make" >&2; exit 1; }
missing=""
for tool in wrk node npm; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
	[ "$(id -u)" = 0 ] || { echo "bench/gateway: install$missing" >&2; exit 1; }
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(echo "$missing" | sed 's/node/nodejs/') >/dev/null
fi
[ -d bench/peers/node_modules ] || (cd bench/peers && npm ci --no-audit --no-fund --silent)

# Command prefixes that pin the load generator and the HTTP server.
load_on="" server_on=""
[ -z "$cpus_load" ] || load_on="taskset -c $cpus_load"
[ -z "$cpus_server" ] || server_on="taskset -c $cpus_server"

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
		LocalAddr => "127.0.0.1", LocalPort => 0, ReuseAddr => 1)->sockport'
}

# A private cluster, the gateway and the node server; stopped on exit.
work=$(mktemp -d /tmp/mandant-bench-gw.XXXXXX)
chmod 755 "$work"
datadir=$work/data
sockdir=$work/sock
port=$(free_port)
bench_db=mandant_bench_gateway
gw_pid="" node_pid=""
cleanup() {
	set +e
	[ -z "$gw_pid" ] || { kill -TERM "$gw_pid" 2>/dev/null; wait "$gw_pid" 2>/dev/null || true; }
	[ -z "$node_pid" ] || { kill -TERM "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null || true; }
	cluster_stop "$datadir"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "bench/gateway: preparing a private cluster"
cluster_init "$datadir" "$sockdir" "$port"
as_server_user sh -c "cat >> '$datadir/postgresql.conf'" <<EOF
max_connections = 100
EOF
cluster_keys "$datadir" "$work/keys"
touch "$work/server.log"
give_to_server_user "$work/server.log"
cluster_start "$datadir" "$work/server.log"

su_psql -d postgres -c "CREATE DATABASE $bench_db" >/dev/null
su_psql -d "$bench_db" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
CREATE ROLE mandant_bench_gw_owner;
CREATE ROLE mandant_bench_gw_gateway LOGIN IN ROLE mandant_gateway;
CREATE ROLE mandant_bench_gw_node LOGIN;
INSERT INTO mandant.tenant (id, slug, name, owner_email)
SELECT format('c0000000-0000-4000-8000-0000000000%s', to_hex(160 + i))::uuid,
	   'bench-gw-' || i, 'Bench ' || i, 'owner@bench' || i || '.test'
FROM generate_series(1, 10) i;

-- The application: items of a tenant, read by a SECURITY DEFINER function
-- of their owner (the gateway's role holds no table rights).
CREATE SCHEMA bench AUTHORIZATION mandant_bench_gw_owner;
GRANT USAGE ON SCHEMA bench TO mandant_bench_gw_node;
SET ROLE mandant_bench_gw_owner;
CREATE TABLE bench.item (
	tenant_id	uuid NOT NULL,
	id			integer NOT NULL,
	name		text NOT NULL,
	price		numeric(10,2) NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
SELECT mandant.enable_tenancy('bench.item');
-- PL/pgSQL, as README advises for routed functions: it keeps its plan per
-- session, where a SECURITY DEFINER function in LANGUAGE sql is parsed on
-- every call (each request is a statement of its own).
CREATE FUNCTION bench.item_get(item_id integer) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS \$\$
BEGIN
	RETURN (SELECT jsonb_build_object('id', i.id, 'name', i.name, 'price', i.price)
			FROM bench.item i WHERE i.tenant_id = mandant.require_tenant() AND i.id = item_id);
END
\$\$;
SELECT mandant.http_route('GET', '/bench/v1/items/{itemId}', 'bench.item_get(integer)', 'read',
						  summary => 'One item');
RESET ROLE;
INSERT INTO bench.item
SELECT t.id, i, 'item ' || i, i * 1.25 FROM mandant.tenant t, generate_series(1, 1000) i;
ANALYZE bench.item;
GRANT EXECUTE ON FUNCTION bench.item_get(integer) TO mandant_bench_gw_node;

-- The limits count every request; set so high that none is refused.
ALTER DATABASE $bench_db SET mandant.http_requests_per_address = 2000000000;
ALTER DATABASE $bench_db SET mandant.http_requests_per_tenant = 2000000000;

SELECT mandant.create_user('bench@bench.test', 'a long bench password', 'Bench') AS id \gset
SELECT mandant.add_member('$tenant', :'id', 'owner');
SQL
token=$(su_psql -d "$bench_db" -Atc "SELECT mandant.login('bench@bench.test', 'a long bench password') ->> 'accessToken'")
request=$(printf '{"method":"GET","path":"/bench/v1/items/%s","host":"127.0.0.1","token":"%s","requestId":"bench","traceId":"bench","clientIp":"127.0.0.1"}' "$item" "$token")

# (a): the statement of shim/src/dispatch.c, with the request object.
cat >"$work/sql.sql" <<'SQL'
SELECT status, body, route, tenant_id::pg_catalog.text, (SELECT pg_catalog.string_agg(key || E'\t' || value, E'\n') FROM pg_catalog.jsonb_each_text(headers)) FROM mandant.http_call(:request::pg_catalog.jsonb, NULL);
SQL
check=$(echo "SELECT status, body FROM mandant.http_call(:'request'::jsonb, NULL)" |
	psql -X -At -h "$sockdir" -p "$port" -U mandant_bench_gw_gateway -d "$bench_db" -v request="$request")
case $check in
200\|*'"success": true'* | 200\|*'"success":true'*) ;;
*) echo "bench/gateway: http_call does not answer 200: $check" >&2; exit 1 ;;
esac

# (b): the gateway; (c): node.
gw_port=$(free_port)
node_port=$(free_port)
$server_on env MANDANT_DATABASE_URL="host=$sockdir port=$port user=mandant_bench_gw_gateway dbname=$bench_db" \
	MANDANT_HTTP_PORT="$gw_port" MANDANT_GATEWAY_DIR="$work/gateway" \
	MANDANT_HTTP_WORKERS="$gw_workers" MANDANT_DB_CONNECTIONS="$gw_conns" \
	"$shim/run" >"$work/gateway.out" 2>"$work/gateway.err" &
gw_pid=$!
$server_on env PEER_PORT="$node_port" PEER_POOL=$((gw_workers * gw_conns)) PGHOST="$sockdir" PGPORT="$port" \
	PGUSER=mandant_bench_gw_node PGDATABASE="$bench_db" \
	node bench/peers/server.js >"$work/node.out" 2>&1 &
node_pid=$!
for url in "http://127.0.0.1:$gw_port/bench/v1/items/$item" "http://127.0.0.1:$node_port/bench/v1/items/$item"; do
	i=0
	until [ "$(curl -s -o "$work/answer" -w '%{http_code}' -H "Authorization: Bearer $token" "$url")" = 200 ]; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "bench/gateway: $url does not answer 200" >&2
			cat "$work/answer" "$work/gateway.out" "$work/node.out" >&2
			exit 1
		fi
		sleep 0.1
	done
done
# Warm up: the pools connect, the backends cache routes and the token.
for p in "$gw_port" "$node_port"; do
	$load_on wrk -t 2 -c "$http_clients" -d 2s -H "Authorization: Bearer $token" \
		"http://127.0.0.1:$p/bench/v1/items/$item" >/dev/null
done
if [ -n "${BENCH_HOLD:-}" ]; then
	# For profiling: everything stays up until the script is stopped.
	printf 'gw_port=%s\nnode_port=%s\npg_port=%s\nsockdir=%s\ntoken=%s\nrequest=%s\ngw_pid=%s\nnode_pid=%s\n' \
		"$gw_port" "$node_port" "$port" "$sockdir" "$token" "$request" "$gw_pid" "$node_pid" >"$BENCH_HOLD"
	echo "bench/gateway: holding; settings in $BENCH_HOLD, stop with SIGTERM"
	while :; do sleep 1; done
fi

# us TEXT: a latency as wrk prints it (812.00us, 1.20ms, 1.01s) in us.
us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "ms") n *= 1000; else if (u == "s") n *= 1000000
		printf "%.0f", n
	}'
}

# run_sql: one pgbench run; appends "rps p50 p99 errors" (latencies in us).
run_sql() {
	rm -f "$work"/pgbench_log.*
	(cd "$work" && $load_on pgbench -n -M prepared -T "$seconds" -c "$http_clients" -j 2 \
		-h "$sockdir" -p "$port" -U mandant_bench_gw_gateway -D request="$request" \
		-l --log-prefix=pgbench_log -f "$work/sql.sql" "$bench_db" >"$work/pgbench.out" 2>&1) ||
		{ cat "$work/pgbench.out" >&2; exit 1; }
	rps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out")
	cat "$work"/pgbench_log.* | awk '{ print $3 }' | sort -n | awk -v rps="$rps" '{ v[NR] = $1 }
		END { printf "%s %d %d 0\n", rps, v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1] }' >>"$work/a.runs"
}

# run_wrk VARIANT PORT: one wrk run; appends "rps p50 p99 errors"
# (latencies in us; errors: answers other than 2xx and wrk's socket
# errors, timeouts of 2 s included, which are counted, not fatal).
run_wrk() {
	$load_on wrk -t 2 -c "$http_clients" -d "${seconds}s" --latency \
		-H "Authorization: Bearer $token" "http://127.0.0.1:$2/bench/v1/items/$item" >"$work/wrk.out"
	errors=$(awk '/^  Non-2xx/ { n += $NF } /^  Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
		END { print n + 0 }' "$work/wrk.out")
	[ "$errors" -eq 0 ] || cat "$work/wrk.out" >>"$work/$1.errors"
	printf '%s %s %s %s\n' "$(sed -n 's/^Requests\/sec: *//p' "$work/wrk.out")" \
		"$(us "$(awk '$1 == "50%" { print $2 }' "$work/wrk.out")")" \
		"$(us "$(awk '$1 == "99%" { print $2 }' "$work/wrk.out")")" "$errors" >>"$work/$1.runs"
}

# peak_kb PID...: the sum of the peak resident sets (VmHWM) of the PIDs.
peak_kb() {
	for p in "$@"; do
		awk '$1 == "VmHWM:" { print $2 }' "/proc/$p/status" 2>/dev/null
	done | awk '{ s += $1 } END { print s + 0 }'
}

# median_run FILE: the line of FILE with the median requests/s.
median_run() {
	sort -n "$1" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}

# compare_all: the three variants, interleaved, and the table line.
compare_all() {
	: >"$work/a.runs"; : >"$work/b.runs"; : >"$work/c.runs"
	r=0
	while [ "$r" -lt "$rounds" ]; do
		run_sql
		run_wrk b "$gw_port"
		run_wrk c "$node_port"
		r=$((r + 1))
	done
	gw_kb=$(peak_kb "$gw_pid" $(pgrep -P "$gw_pid"))
	node_kb=$(peak_kb "$node_pid")
	for v in a b c; do
		set -- $(median_run "$work/$v.runs")
		case $v in
		a) rss=- ;;
		b) rss=$(awk -v k="$gw_kb" 'BEGIN { printf "%.1f", k / 1024 }') ;;
		c) rss=$(awk -v k="$node_kb" 'BEGIN { printf "%.1f", k / 1024 }') ;;
		esac
		name=$(echo "$v" | sed 's/a/a sql/; s/b/b gateway/; s/c/c node/')
		errors=$(awk '{ n += $4 } END { print n + 0 }' "$work/$v.runs")
		awk -v n="$name" -v rps="$1" -v p50="$2" -v p99="$3" -v rss="$rss" -v sc="$sync" -v e="$errors" 'BEGIN {
			printf "%-5s %-10s %10.0f %9.2f %9.2f %9s %7d\n", sc, n, rps, p50 / 1000, p99 / 1000, rss, e
		}'
	done
	for v in b c; do
		[ ! -s "$work/$v.errors" ] || { echo "bench/gateway: $v answered errors:"; sed 's/^/  /' "$work/$v.errors"; } >&2
		rm -f "$work/$v.errors"
	done
	# The gateway's log says which statuses it answered (so far).
	if grep -q '"status":[^2]' "$work/gateway.err"; then
		echo "  gateway statuses: $(grep -o '"status":[0-9]*' "$work/gateway.err" | sort | uniq -c | tr '\n' ' ')" >&2
	fi
	a=$(median_run "$work/a.runs" | cut -d' ' -f1)
	b=$(median_run "$work/b.runs" | cut -d' ' -f1)
	c=$(median_run "$work/c.runs" | cut -d' ' -f1)
	ba=$(paste -d' ' "$work/a.runs" "$work/b.runs" | awk '{ r = $5 / $1; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r }
		END { printf "%.3f-%.3f", lo, hi }')
	bc=$(paste -d' ' "$work/b.runs" "$work/c.runs" | awk '{ r = $1 / $5; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r }
		END { printf "%.3f-%.3f", lo, hi }')
	awk -v a="$a" -v b="$b" -v c="$c" -v ba="$ba" -v bc="$bc" -v sc="$sync" 'BEGIN {
		printf "%-5s b/a %.3f (rounds %s), b/c %.3f (rounds %s)\n", sc, b / a, ba, b / c, bc
	}'
}

echo "bench/gateway: $rounds rounds of ${seconds}s per variant, interleaved, $http_clients clients;" \
	"PostgreSQL $(server_version), $(nproc) cores"
echo "  gateway: $shim/run, $gw_workers workers x $gw_conns connections; node pool $((gw_workers * gw_conns));" \
	"CPUs: load ${cpus_load:-any}, HTTP server ${cpus_server:-any}, PostgreSQL any"
echo "  load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews the figures)"
echo
printf '%-5s %-10s %10s %9s %9s %9s %7s\n' sync variant "req/s" "p50 ms" "p99 ms" "RSS MB" errors
for sync in ${BENCH_SYNC:-on off}; do
	su_psql -d "$bench_db" -c "ALTER SYSTEM SET synchronous_commit = $sync" -c "SELECT pg_reload_conf()" >/dev/null
	compare_all
done
su_psql -d "$bench_db" -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null
echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# server_us SQL-LOOP SQL-BASE: server time per call of the loop minus the
# base loop, in us, as the gateway's role (median of the rounds).
server_us() {
	: >"$work/server"
	r=0
	while [ "$r" -lt "$rounds" ]; do
		psql -X -q -At -h "$sockdir" -p "$port" -U mandant_bench_gw_gateway -d "$bench_db" \
			-v token="$token" -v request="$request" -v item="$item" >>"$work/server" <<SQL
CREATE TEMP TABLE t AS SELECT :'token'::text AS token, :'request'::jsonb AS request, :item::integer AS item;
SET client_min_messages = error;
SELECT count(mandant.authenticate(token)) FROM t \g /dev/null
SELECT clock_timestamp() AS t0 \gset
$2 \g /dev/null
SELECT clock_timestamp() AS t1 \gset
$1 \g /dev/null
SELECT clock_timestamp() AS t2 \gset
SELECT round(extract(epoch FROM (:'t2'::timestamptz - :'t1'::timestamptz) - (:'t1'::timestamptz - :'t0'::timestamptz)) * 1e6 / $loops, 1);
SQL
		r=$((r + 1))
	done
	median <"$work/server"
}

echo
echo "server time per call, $loops calls in one statement, as the gateway's role (median of $rounds):"
# g in every argument: the call runs once per row, not once per plan.
direct="SELECT count(bench.item_get(item)) FROM t, generate_series(1, $loops) g
	WHERE mandant.authenticate(CASE WHEN g > 0 THEN token END) IS NOT NULL"
echo "  http_call minus authenticate + function: $(server_us \
	"SELECT count(c.status) FROM t, generate_series(1, $loops) g,
	LATERAL mandant.http_call(CASE WHEN g > 0 THEN request END, NULL) c WHERE c.status = 200" \
	"$direct") us (target <= 15)"
echo "  authenticate, token already verified: $(server_us \
	"SELECT count(mandant.authenticate(token)) FROM t, generate_series(1, $loops)" \
	"SELECT count(length(token)) FROM t, generate_series(1, $loops)") us (target <= 10)"
