#!/bin/sh
# delete_tenant.sh: deleting a large tenant (issue 17) against a plain
# DELETE of as many rows.
#
# BENCH_ROUNDS tenants (default 3) get BENCH_ROWS rows each (default
# 1,000,000) in a table under audit, outbox and quota
# (mandant.enable_audit, enable_outbox, enable_quota), beside BENCH_OTHERS
# other tenants (default 2) with BENCH_OTHER_ROWS rows each (default
# 100,000).  The rows are loaded before the triggers are attached (so the
# tenants have no audit trail of their own to erase; loading them through
# the triggers would take minutes).  An identical table without mandant's
# triggers, RLS or registration holds the same rows.  Each round, after a
# VACUUM of both tables, deletes one tenant's rows from the plain table
# with one DELETE as the superuser (the baseline), then deletes that
# tenant with mandant.delete_tenant() as a member of mandant_admin, each
# in a fresh connection after a CHECKPOINT.  Prints the median time of
# each (commit included), rows per second, the ratio delete_tenant /
# DELETE, and the backend's peak memory over the rounds: VmHWM (peak
# resident set, the shared buffers it touched included) and the highest
# RssAnon (its private memory) sampled from /proc/PID/status every 50 ms.
#
#   BENCH_ROWS=1000000 BENCH_ROUNDS=3 bench/delete_tenant.sh
#   BENCH_SYNCHRONOUS_COMMIT=off bench/delete_tenant.sh
#
# Runs against the cluster of `make run` (make bench starts it) in a
# scratch database it drops at the end; reads /proc of the server's
# backends, so it runs on the server's machine, as root or as the server's
# OS user.
set -eu
. "$(dirname "$0")/lib.sh"
rows=${BENCH_ROWS:-1000000}
others=${BENCH_OTHERS:-2}
other_rows=${BENCH_OTHER_ROWS:-100000}
bench_setup mandant_bench_delete_tenant

echo "bench/delete_tenant: $rounds tenants of $rows rows beside $others tenants of $other_rows rows," \
	"synchronous_commit=${BENCH_SYNCHRONOUS_COMMIT:-on}"
su_psql -d "$bench_db" >/dev/null <<EOF
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
SELECT 'CREATE ROLE mandant_bench_admin LOGIN IN ROLE mandant_admin'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mandant_bench_admin') \gexec
INSERT INTO mandant.plan (key, name, limits) VALUES ('bench', 'Bench', '{"records": null}');
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key)
SELECT ('c0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'bench-' || i, 'Bench ' || i,
	   'b@bench.test', 'bench'
FROM generate_series(1, $rounds + $others) i;
CREATE SCHEMA bench;
CREATE TABLE bench.plain (tenant_id uuid, id bigint, title text NOT NULL, body text,
						  created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id));
INSERT INTO bench.plain (tenant_id, id, title, body)
SELECT ('c0000000-0000-4000-8000-' || lpad(t::text, 12, '0'))::uuid, i, 'note ' || i, repeat('x', 40)
FROM generate_series(1, $rounds + $others) t,
	 generate_series(1, CASE WHEN t <= $rounds THEN $rows ELSE $other_rows END) i;
CREATE TABLE bench.note (LIKE bench.plain INCLUDING ALL);
INSERT INTO bench.note SELECT * FROM bench.plain;
SELECT mandant.enable_tenancy('bench.note');
SELECT mandant.enable_audit('bench.note', 'bench');
SELECT mandant.enable_outbox('bench.note', 'bench');
SELECT mandant.enable_quota('bench.note', 'records');
VACUUM ANALYZE bench.plain, bench.note;
EOF

# measure NAME ROLE SQL: runs SQL in a fresh connection as ROLE and prints
# "NAME ms peak_rss_kB peak_anon_kB", sampling the backend's /proc status
# every 50 ms while it runs.
measure() {
	name=$1 role=$2 sql=$3
	su_psql -d "$bench_db" -c CHECKPOINT
	psql -X -q -At -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U "$role" -d "$bench_db" \
		>"$work/$name.out" <<EOF &
SET client_min_messages = warning;
SET application_name = 'bench_delete_$name';
SELECT pg_sleep(0.3);
SELECT clock_timestamp() AS t0 \\gset
$sql \\g /dev/null
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1) AS ms \\gset
SELECT pg_sleep(0.3);
\\echo ms :ms
EOF
	client=$!
	pid=
	while [ -z "$pid" ] && kill -0 "$client" 2>/dev/null; do
		pid=$(su_psql -d "$bench_db" -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'bench_delete_$name'")
	done
	hwm=0 anon=0
	while kill -0 "$client" 2>/dev/null; do
		if status=$(cat "/proc/$pid/status" 2>/dev/null); then
			hwm=$(echo "$status" | awk '/^VmHWM:/ { print $2 }')
			now=$(echo "$status" | awk '/^RssAnon:/ { print $2 }')
			[ "${now:-0}" -gt "$anon" ] && anon=$now
		fi
		sleep 0.05
	done
	wait "$client"
	echo "$name $(sed -n 's/^ms //p' "$work/$name.out") $hwm $anon"
}

r=1
: >"$work/results"
while [ "$r" -le "$rounds" ]; do
	tenant=c0000000-0000-4000-8000-$(printf '%012d' "$r")
	su_psql -d "$bench_db" -c "VACUUM bench.plain, bench.note"
	measure plain postgres "DELETE FROM bench.plain WHERE tenant_id = '$tenant'" >>"$work/results"
	measure mandant mandant_bench_admin "SELECT mandant.delete_tenant('$tenant', 'bench-$r')" >>"$work/results"
	left=$(su_psql -d "$bench_db" -Atc "SELECT (SELECT count(*) FROM bench.plain WHERE tenant_id = '$tenant')
		+ (SELECT count(*) FROM bench.note WHERE tenant_id = '$tenant')")
	if [ "$left" != 0 ]; then
		echo "bench/delete_tenant: $left rows of tenant $tenant are left" >&2
		exit 1
	fi
	r=$((r + 1))
done

printf '%-14s %9s %9s %9s %9s %12s %13s\n' "deleting" rows "ms" "ms rounds" "rows/s" "VmHWM kB" "peak anon kB"
for v in plain mandant; do
	ms=$(awk -v v="$v" '$1 == v { print $2 }' "$work/results" | median)
	spread=$(awk -v v="$v" '$1 == v { if (n++ == 0 || $2 < lo) lo = $2; if (n == 1 || $2 > hi) hi = $2 }
		END { printf "%.0f-%.0f", lo, hi }' "$work/results")
	awk -v v="$v" -v ms="$ms" -v n="$rows" -v s="$spread" '$1 == v { if ($3 > hwm) hwm = $3; if ($4 > anon) anon = $4 }
		END { printf "%-14s %9d %9.1f %9s %9.0f %12d %13d\n", (v == "plain" ? "plain DELETE" : "delete_tenant"),
			n, ms, s, n * 1000 / ms, hwm, anon }' "$work/results"
	echo "$ms" >"$work/$v.median"
done
awk -v a="$(cat "$work/plain.median")" -v b="$(cat "$work/mandant.median")" -v r="$rounds" \
	'BEGIN { printf "delete_tenant / DELETE: %.2f (medians of %d rounds)\n", b / a, r }'
