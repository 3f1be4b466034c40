#!/bin/sh
# tenant_scale.sh: one big tenant beside many small ones (issue 17): how
# fast the big one is exported, imported, deleted and verified, in how
# much memory, and what its export does to the other tenants' requests.
#
# Database A gets one tenant table app.items (owned by a non-superuser,
# with mandant.enable_tenancy and enable_audit), BENCH_SMALL_TENANTS small
# tenants of 1,000 rows each (ids 1 .. 1,000 * BENCH_SMALL_TENANTS) and one
# big tenant of BENCH_ROWS rows of about 260 bytes (5,000,000 rows make
# more than 1 GB of heap), loaded in replica mode so that the audit
# trigger is skipped; then BENCH_EVENTS (default 100,000) of the big
# tenant's rows are updated in its context as an application role, which
# audits them, and the trail is sealed.  Then, each step timed in one
# session whose backend's /proc/<pid>/status is sampled every 0.2 s
# (RssAnon: the backend's private memory; VmRSS and VmHWM count the
# shared buffers it touched as well):
#   export     COPY (SELECT mandant.export_tenant_stream(big)) TO STDOUT
#              into a file, against the same rows written by hand
#              (COPY (SELECT to_jsonb(t)::text FROM app.items t WHERE
#              tenant_id = big) TO STDOUT), interleaved, BENCH_EXPORT_ROUNDS
#              times (default 2; the faster round of each counts), and
#              against the export of a small tenant (memory must not grow
#              with the tenant);
#   latency    BENCH_LAT_ROUNDS rounds (default 2) of pgbench point reads
#              of the small tenants (BENCH_LAT_CLIENTS clients, default
#              4, at BENCH_RATE transactions per second, default 500; 0
#              for as fast as they can) without, then during another
#              export of the big tenant, then during its export by hand
#              (the baseline: what any export of these rows costs the
#              others), each for 70 % of the first export's time; average
#              and 99th percentile latency from pgbench's transaction log;
#   import     COPY mandant.tenant_import FROM STDIN of the exported file
#              into database B (the same schema, no tenants), whose
#              counts must equal A's; against the rows by hand (the lines
#              of to_jsonb COPYed into a temporary table, then INSERT ...
#              SELECT jsonb_populate_record() into a copy of app.items
#              with its indexes but no triggers, policy or foreign key);
#   verify     in B: BENCH_NEW (default 1,000) new sealed events, then
#              mandant.audit_verify() (the whole chain) against
#              mandant.audit_verify_since_checkpoint() (the new seals),
#              median of BENCH_VERIFY_ROUNDS rounds (default 3);
#   delete     mandant.delete_tenant() of the big tenant in A.
# Throughput is in MB (10^6 bytes of the stream) per second, memory in
# MiB.  Targets of the issue: export >= 50 MB/s, import >= 25 MB/s,
# memory flat, the small tenants' latency within 20 %.
#
#   BENCH_ROWS=5000000 BENCH_SMALL_TENANTS=100 bench/tenant_scale.sh
#
# Not part of `make bench`: at full size it runs for tens of minutes and
# needs about 10 GB of disk (two databases, the stream files, WAL).  Try
# it small first: BENCH_ROWS=200000 BENCH_SMALL_TENANTS=10.  Runs against
# the cluster of `make run` in two scratch databases it drops at the end.
set -eu
. "$(dirname "$0")/lib.sh"
rows=${BENCH_ROWS:-5000000}
small=${BENCH_SMALL_TENANTS:-100}
events=${BENCH_EVENTS:-100000}
new=${BENCH_NEW:-1000}
verify_rounds=${BENCH_VERIFY_ROUNDS:-3}
export_rounds=${BENCH_EXPORT_ROUNDS:-2}
lat_rounds=${BENCH_LAT_ROUNDS:-2}
lat_clients=${BENCH_LAT_CLIENTS:-4}
rate=${BENCH_RATE:-500}
[ "$events" -gt "$rows" ] && events=$rows
big=b0000000-0000-4000-8000-00000000000b
first_small=00000000-0000-4000-8000-000000000001
bench_setup mandant_bench_scale
db_a=$bench_db
db_b=${bench_db}_b
trap 'su_psql -d postgres -c "DROP DATABASE IF EXISTS $db_a WITH (FORCE)" -c "DROP DATABASE IF EXISTS $db_b WITH (FORCE)" >/dev/null 2>&1; rm -rf "$work"' EXIT
su_psql -d postgres -c "DROP DATABASE IF EXISTS $db_b WITH (FORCE)" -c "CREATE DATABASE $db_b" 2>/dev/null

now() {
	date +%s.%N
}

# watch.sh PID NAME: samples the memory of backend PID every 0.2 s until
# it exits into $work/NAME.samples (RssAnon VmRSS VmHWM, kB), then writes
# $work/NAME.mem: peak RssAnon, peak VmRSS, last VmHWM.
cat >"$work/watch.sh" <<'EOF'
pid=$1 out=$2
while [ -r "/proc/$pid/status" ]; do
	awk '$1 == "RssAnon:" { a = $2 } $1 == "VmRSS:" { r = $2 } $1 == "VmHWM:" { h = $2 }
		END { if (h != "") print a, r, h }' "/proc/$pid/status" 2>/dev/null >>"$out.samples"
	sleep 0.2
done
awk '$1 > a { a = $1 } $2 > r { r = $2 } { h = $3 } END { print a + 0, r + 0, h + 0 }' "$out.samples" >"$out.mem.tmp"
mv "$out.mem.tmp" "$out.mem"
EOF

# timed NAME DB: runs the SQL on stdin in one session of the superuser in
# DB, timed from its first statement to its last, while watch.sh samples
# its backend; writes $work/NAME.s (seconds), $work/NAME.mem and the
# session's output $work/NAME.out.
timed() {
	name=$1 db=$2
	rm -f "$work/$name.mem" "$work/$name.samples"
	{
		printf '%s\n' 'SELECT pg_backend_pid() AS pid \gset' '\setenv BENCH_PID :pid' \
			"\\! sh $work/watch.sh \"\$BENCH_PID\" $work/$name >/dev/null 2>&1 &" \
			'SELECT pg_sleep(0.3) \g /dev/null' \
			'SELECT clock_timestamp() AS t0 \gset'
		cat
		printf '%s\n' "SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \\gset" \
			'\setenv BENCH_SECS :secs' "\\! echo \"\$BENCH_SECS\" >$work/$name.s" \
			'SELECT pg_sleep(0.3) \g /dev/null'
	} >"$work/$name.sql"
	su_psql -d "$db" -At -f "$work/$name.sql" >"$work/$name.out"
	while [ ! -f "$work/$name.mem" ]; do
		sleep 0.1
	done
}

# secs_of NAME: the seconds of a timed run.
secs_of() {
	cat "$work/$1.s"
}

# mib_of NAME FIELD: a memory figure of a timed run in MiB (1 RssAnon,
# 2 VmRSS, 3 VmHWM).
mib_of() {
	awk -v f="$2" '{ printf "%.1f", $f / 1024 }' "$work/$1.mem"
}

started=$(now)
echo "bench/tenant_scale: $small small tenants x 1,000 rows and one of $rows rows; PostgreSQL $(server_version), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# The schema, in A and B alike: an application schema of its owner, read
# by an application role.
schema() {
	su_psql -d "$1" >/dev/null <<EOF
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
SELECT format('CREATE ROLE %I', r)
FROM unnest(ARRAY['mandant_bench_owner', 'mandant_bench_app']) r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\\gexec
ALTER ROLE mandant_bench_app LOGIN;
GRANT mandant_service TO mandant_bench_app;
CREATE SCHEMA app AUTHORIZATION mandant_bench_owner;
SET ROLE mandant_bench_owner;
CREATE TABLE app.items (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id	uuid NOT NULL,
	title		text NOT NULL,
	body		text,
	amount		numeric(12, 2) NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL DEFAULT now(),
	tags		text[] NOT NULL DEFAULT '{}'
);
SELECT mandant.enable_tenancy('app.items');
SELECT mandant.enable_audit('app.items', 'items');
GRANT USAGE ON SCHEMA app TO mandant_bench_app;
GRANT SELECT, UPDATE ON app.items TO mandant_bench_app;
EOF
}
schema "$db_a"
schema "$db_b"

# The tenants and their rows, loaded in replica mode (no audit trigger);
# the small tenants first, so that tenant k owns ids 1000 (k - 1) + 1 ..
# 1000 k.
su_psql -d "$db_a" >/dev/null <<EOF
SET client_min_messages = warning;
INSERT INTO mandant.tenant (id, slug, name, owner_email)
SELECT format('00000000-0000-4000-8000-%s', lpad(k::text, 12, '0'))::uuid,
	   'bench-' || k, 'Bench ' || k, 'owner@bench' || k || '.example'
FROM generate_series(1, $small) k;
INSERT INTO mandant.tenant (id, slug, name, owner_email)
VALUES ('$big', 'bench-big', 'Big Bench', 'owner@big.example');
SET session_replication_role = replica;
INSERT INTO app.items (tenant_id, title, body, amount, created_at, tags)
SELECT format('00000000-0000-4000-8000-%s', lpad(((i - 1) / 1000 + 1)::text, 12, '0'))::uuid,
	   'Item ' || i, left(repeat(md5(i::text), 4), 120), (i % 100000) / 100.0,
	   timestamptz '2026-01-01' + i * interval '1 second', ARRAY['tag' || i % 17, 'group' || i % 101]
FROM generate_series(1, 1000 * $small) i;
INSERT INTO app.items (tenant_id, title, body, amount, created_at, tags)
SELECT '$big', 'Item of the big tenant ' || i, left(repeat(md5(i::text), 4), 120), (i % 100000) / 100.0,
	   timestamptz '2026-01-01' + i * interval '1 second', ARRAY['tag' || i % 17, 'group' || i % 101]
FROM generate_series(1, $rows) i;
EOF
# The big tenant's audit trail: its rows updated in its context, sealed.
psql -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U mandant_bench_app -d "$db_a" >/dev/null <<EOF
BEGIN;
SELECT mandant.set_tenant('$big');
UPDATE app.items SET amount = amount + 1
WHERE id BETWEEN 1000 * $small + 1 AND 1000 * $small + $events;
COMMIT;
EOF
su_psql -d "$db_a" >/dev/null <<EOF
SELECT mandant.audit_seal();
VACUUM ANALYZE app.items, mandant.audit_event, mandant.audit_seal;
EOF
su_psql -d "$db_a" -At -F ' ' >"$work/sizes" <<EOF
SELECT (SELECT count(*) FROM app.items WHERE tenant_id = '$big'),
	   (SELECT sum(pg_column_size(t.*)) FROM app.items t WHERE tenant_id = '$big'),
	   pg_relation_size('app.items'), pg_total_relation_size('app.items'),
	   (SELECT count(*) FROM mandant.audit_event WHERE tenant_id = '$big'),
	   (SELECT count(*) FROM mandant.audit_seal WHERE tenant_id = '$big'),
	   (SELECT count(*) FROM app.items WHERE tenant_id <> '$big');
EOF
read -r big_rows big_bytes heap_bytes total_bytes big_events big_seals small_rows <"$work/sizes"
setup_s=$(awk -v a="$started" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
awk -v r="$big_rows" -v b="$big_bytes" -v h="$heap_bytes" -v t="$total_bytes" -v e="$big_events" \
	-v s="$big_seals" -v sr="$small_rows" -v secs="$setup_s" 'BEGIN {
	printf "setup: %d s; big tenant %d rows (%.2f GB of row data), %d audit events, %d seals;", secs, r, b / 1e9, e, s
	printf " small tenants %d rows; app.items %.2f GB heap, %.2f GB with indexes\n", sr, h / 1e9, t / 1e9
}'
if [ "$rows" -ge 5000000 ] && [ "$big_bytes" -lt 1000000000 ]; then
	echo "bench/tenant_scale: the big tenant has less than 1 GB of rows" >&2
	exit 1
fi

# Every point read of the latency runs must find its row: check once.
found=$(psql -X -q -At -h "$sockdir" -p "$port" -U mandant_bench_app -d "$db_a" <<EOF | tail -n 1
BEGIN;
SELECT mandant.set_tenant('00000000-0000-4000-8000-$(printf %012d "$small")') \\g /dev/null
SELECT count(*) FROM app.items WHERE id IN (1000 * $small, 1000 * $small - 999, 1, 1000 * $small + 1);
COMMIT;
EOF
)
if [ "$found" != 2 ]; then
	echo "bench/tenant_scale: sanity check failed (expected 2 visible rows, got $found)" >&2
	exit 1
fi

# export NAME TENANT [FILE]: the stream of TENANT into FILE (default
# $work/NAME.jsonl).
export_stream() {
	timed "$1" "$db_a" <<EOF
\\copy (SELECT mandant.export_tenant_stream('$2')) TO '${3:-$work/$1.jsonl}'
EOF
}

# export_hand NAME FILE: the big tenant's rows by hand, into FILE.
export_hand() {
	timed "$1" "$db_a" <<EOF
\\copy (SELECT to_jsonb(t)::text FROM app.items t WHERE tenant_id = '$big') TO '$2'
EOF
}

echo "export: $export_rounds rounds of the big tenant's stream and the same rows by hand with to_jsonb; a small tenant's stream"
r=1
while [ "$r" -le "$export_rounds" ]; do
	export_hand "baseline$r" "$work/baseline.jsonl"
	export_stream "export$r" "$big" "$work/export.jsonl"
	r=$((r + 1))
done
baseline_bytes=$(wc -c <"$work/baseline.jsonl")
# The faster round of each stands for it.
fastest() {
	r=1 best=
	while [ "$r" -le "$export_rounds" ]; do
		if [ -z "$best" ] || awk -v a="$(secs_of "$1$r")" -v b="$(secs_of "$1$best")" 'BEGIN { exit !(a < b) }'; then
			best=$r
		fi
		r=$((r + 1))
	done
	for f in s mem samples; do
		cp "$work/$1$best.$f" "$work/$1.$f"
	done
}
fastest export
fastest baseline
export_bytes=$(wc -c <"$work/export.jsonl")
# The file holds COPY's rows, each up to 1,000 lines of the stream with
# their newlines escaped: count the stream's lines in COPY's unescaped text.
perl -pe 's/\\(.)/$1 eq "n" ? "\n" : $1 eq "t" ? "\t" : $1/ge' "$work/export.jsonl" >"$work/export.lines"
export_lines=$(wc -l <"$work/export.lines")
trailer_lines=$(tail -n 1 "$work/export.lines" | sed -n 's/.*"lines": *\([0-9]*\).*/\1/p')
table_lines=$(grep -c '^{"table":' "$work/export.lines" || true)
rm -f "$work/export.lines"
if [ "$trailer_lines" != $((export_lines - 1)) ] || [ "$table_lines" != "$big_rows" ]; then
	echo "bench/tenant_scale: the stream has $export_lines lines, $table_lines of rows; its trailer says $trailer_lines before it; the tenant has $big_rows rows" >&2
	exit 1
fi
export_stream export_small "$first_small"
small_bytes=$(wc -c <"$work/export_small.jsonl")

# The small tenants' point reads, as the application role.
cat >"$work/point.sql" <<EOF
\\set k random(1, $small)
\\set id 1000 * (:k - 1) + random(1, 1000)
BEGIN;
SELECT mandant.set_tenant(('00000000-0000-4000-8000-' || lpad(:k::text, 12, '0'))::uuid);
SELECT * FROM app.items WHERE id = :id;
COMMIT;
EOF
lat_s=$(awk -v s="$(secs_of export)" 'BEGIN { d = int(s * 0.7); print (d < 3) ? 3 : d }')
rate_opt=
[ "$rate" != 0 ] && rate_opt="-R $rate"
# point NAME: one pgbench run of $lat_s seconds, its transaction log in
# $work/NAME.*; writes $work/NAME.lat: transactions, average and 99th
# percentile latency in ms.
point() {
	# shellcheck disable=SC2086
	pgbench -n -M prepared -T "$lat_s" -c "$lat_clients" -j "$(nproc)" $rate_opt -h "$sockdir" -p "$port" \
		-U mandant_bench_app -l --log-prefix="$work/$1" -f "$work/point.sql" "$db_a" >"$work/$1.pgbench" 2>&1
	cat "$work/$1".[0-9]* | awk '{ print $3 / 1000 }' | sort -n |
		awk '{ v[NR] = $1; s += $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%d %.3f %.3f\n", NR, s / NR, v[i] }' \
			>"$work/$1.lat"
	rm -f "$work/$1".[0-9]*
}

echo "latency: $lat_rounds rounds of ${lat_s} s of point reads ($lat_clients clients, rate ${rate:-0}/s), without, during the stream's export and during the export by hand"
r=1
while [ "$r" -le "$lat_rounds" ]; do
	point "idle$r"
	export_stream "during$r" "$big" "$work/during.jsonl" &
	exporter=$!
	sleep 1
	point "busy$r"
	wait "$exporter"
	export_hand "duringhand$r" "$work/during.jsonl" &
	exporter=$!
	sleep 1
	point "hand$r"
	wait "$exporter"
	rm -f "$work/during.jsonl"
	r=$((r + 1))
done

echo "import: into a second database, from the file; the rows by hand from to_jsonb's lines"
timed import "$db_b" <<EOF
\\copy mandant.tenant_import FROM '$work/export.jsonl'
EOF
import_count_sql="SELECT (SELECT count(*) FROM app.items WHERE tenant_id = '$big'),
	   (SELECT count(*) FROM mandant.audit_event WHERE tenant_id = '$big'),
	   (SELECT count(*) FROM mandant.audit_seal WHERE tenant_id = '$big'),
	   (SELECT md5(string_agg(md5(t::text), '' ORDER BY id)) FROM app.items t WHERE tenant_id = '$big')"
counts_a=$(su_psql -d "$db_a" -At -F ' ' -c "$import_count_sql")
counts_b=$(su_psql -d "$db_b" -At -F ' ' -c "$import_count_sql")
if [ "$counts_a" != "$counts_b" ]; then
	echo "bench/tenant_scale: the import differs (rows, events, seals, digest): A $counts_a, B $counts_b" >&2
	exit 1
fi
rm -f "$work/export.jsonl"
timed import_hand "$db_b" <<EOF
SET client_min_messages = warning;
CREATE TABLE app.items_by_hand (LIKE app.items INCLUDING ALL);
CREATE TEMP TABLE staging (line text);
\\copy staging FROM '$work/baseline.jsonl'
INSERT INTO app.items_by_hand OVERRIDING SYSTEM VALUE
SELECT (jsonb_populate_record(NULL::app.items, line::jsonb)).* FROM staging;
EOF
su_psql -d "$db_b" -c 'DROP TABLE app.items_by_hand'
rm -f "$work/baseline.jsonl"

echo "verify: in the second database, $verify_rounds rounds of $new new sealed events"
su_psql -d "$db_b" -At >"$work/verify0" <<EOF
SELECT clock_timestamp() AS t0 \\gset
SELECT ok FROM mandant.audit_verify_since_checkpoint('$big') \\g /dev/null
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000 AS first_ms \\gset
\\echo :first_ms
EOF
: >"$work/verify"
r=1
while [ "$r" -le "$verify_rounds" ]; do
	su_psql -d "$db_b" -At >>"$work/verify" <<EOF
SET client_min_messages = warning;
SELECT count(mandant.audit_log_for('$big', NULL, NULL, 'bench', 'note', 'bench.thing', i::text,
								   jsonb_build_object('n', i, 'title', 'note ' || i)))
FROM generate_series(1, $new) i \\g /dev/null
SELECT mandant.audit_seal() \\g /dev/null
SELECT clock_timestamp() AS t0 \\gset
SELECT ok AS full_ok, checked AS full_checked FROM mandant.audit_verify('$big') \\gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1) AS full_ms \\gset
SELECT clock_timestamp() AS t0 \\gset
SELECT ok AS incr_ok, checked AS incr_checked FROM mandant.audit_verify_since_checkpoint('$big') \\gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1) AS incr_ms \\gset
\\echo :full_ms :full_checked :incr_ms :incr_checked :full_ok :incr_ok
EOF
	r=$((r + 1))
done
if grep -q ' f' "$work/verify"; then
	echo "bench/tenant_scale: a verification failed in the imported database" >&2
	exit 1
fi

echo "delete: mandant.delete_tenant() of the big tenant"
timed delete "$db_a" <<EOF
SELECT mandant.delete_tenant('$big', 'bench-big');
EOF
left=$(su_psql -d "$db_a" -Atc "SELECT count(*) FROM app.items WHERE tenant_id = '$big'")
if [ "$left" != 0 ]; then
	echo "bench/tenant_scale: $left rows of the big tenant are left after delete_tenant" >&2
	exit 1
fi

echo
echo "bench/tenant_scale: summary ($big_rows rows, $(awk -v b="$big_bytes" 'BEGIN { printf "%.2f", b / 1e9 }') GB of row data, $big_events audit events; $small small tenants; synchronous_commit ${BENCH_SYNCHRONOUS_COMMIT:-on})"
printf '%-22s %9s %10s %8s %11s %12s %10s %9s\n' step MB s "MB/s" "rows/s" "RssAnon MiB" "VmRSS MiB" "VmHWM MiB"
# line STEP NAME BYTES ROWS
line() {
	awk -v step="$1" -v b="$3" -v n="$4" -v s="$(secs_of "$2")" -v a="$(mib_of "$2" 1)" -v r="$(mib_of "$2" 2)" \
		-v h="$(mib_of "$2" 3)" 'BEGIN {
		printf "%-22s %9s %10.2f %8s %11.0f %12.1f %10.1f %9.1f\n", step, (b == "") ? "-" : sprintf("%.1f", b / 1e6), s,
			(b == "") ? "-" : sprintf("%.1f", b / 1e6 / s), n / s, a, r, h
	}'
}
r=1
while [ "$r" -le "$export_rounds" ]; do
	line "export stream $r" "export$r" "$export_bytes" "$big_rows"
	line "export by hand $r" "baseline$r" "$baseline_bytes" "$big_rows"
	r=$((r + 1))
done
line "export small tenant" export_small "$small_bytes" 1000
r=1
while [ "$r" -le "$lat_rounds" ]; do
	line "export during reads $r" "during$r" "$export_bytes" "$big_rows"
	r=$((r + 1))
done
line "import stream" import "$export_bytes" "$big_rows"
line "import by hand" import_hand "$baseline_bytes" "$big_rows"
line "delete_tenant" delete "" "$big_rows"
awk -v a="$(secs_of export)" -v b="$(secs_of baseline)" -v ab="$export_bytes" -v bb="$baseline_bytes" -v l="$export_lines" 'BEGIN {
	printf "stream: %d lines; stream / by hand: %.2f of the time, %.2f of the bytes, %.2f of the MB/s\n",
		l, a / b, ab / bb, (ab / a) / (bb / b)
}'
echo "delete_tenant: $(tr -d '\n' <"$work/delete.out")"
echo "RssAnon MiB at 10, 25, 50, 75, 90 and 100 % of the time:"
for name in export baseline import delete; do
	awk -v n="$name" '{ v[NR] = $1 } END {
		printf "  %-10s", n
		split("0.10 0.25 0.50 0.75 0.90 1", q, " ")
		for (j = 1; j <= 6; j++) { i = int(NR * q[j]); if (i < 1) i = 1; printf " %7.1f", v[i] / 1024 }
		printf "  (%d samples)\n", NR
	}' "$work/$name.samples"
done

printf '\n%-15s %8s %10s %10s %8s %10s %10s %9s %9s\n' latency "txn idle" "avg ms" "p99 ms" "txn busy" "avg ms" "p99 ms" "avg ratio" "p99 ratio"
r=1
while [ "$r" -le "$lat_rounds" ]; do
	paste -d ' ' "$work/idle$r.lat" "$work/busy$r.lat" | awk -v r="$r" '{
		printf "round %-2d stream %8d %10.3f %10.3f %8d %10.3f %10.3f %9.2f %9.2f\n", r, $1, $2, $3, $4, $5, $6, $5 / $2, $6 / $3
	}'
	paste -d ' ' "$work/idle$r.lat" "$work/hand$r.lat" | awk -v r="$r" '{
		printf "round %-2d hand   %8d %10.3f %10.3f %8d %10.3f %10.3f %9.2f %9.2f\n", r, $1, $2, $3, $4, $5, $6, $5 / $2, $6 / $3
	}'
	r=$((r + 1))
done

first_ms=$(cat "$work/verify0")
full=$(cut -d' ' -f1 <"$work/verify" | median)
incr=$(cut -d' ' -f3 <"$work/verify" | median)
full_n=$(tail -n 1 "$work/verify" | cut -d' ' -f2)
incr_n=$(tail -n 1 "$work/verify" | cut -d' ' -f4)
printf '\n%-24s %10s %10s %10s\n' verify checked "ms median" "us/event"
awk -v f="$full" -v fn="$full_n" -v i="$incr" -v in_="$incr_n" -v first="$first_ms" -v r="$verify_rounds" 'BEGIN {
	printf "%-24s %10d %10.1f %10.2f\n", "full", fn, f, f * 1000 / fn
	printf "%-24s %10d %10.1f %10.2f\n", "incremental", in_, i, i * 1000 / in_
	printf "full / incremental: %.1f (median of %d rounds); first incremental after the import: %.1f ms\n", f / i, r, first
}'

# The targets.  Memory is flat when the big tenant's export and import
# take no more private memory than the small tenant's export plus 64 MiB.
echo
awk -v eb="$export_bytes" -v es="$(secs_of export)" -v is="$(secs_of import)" \
	-v ma="$(mib_of export 1)" -v mi="$(mib_of import 1)" -v ms="$(mib_of export_small 1)" 'BEGIN {
	e = eb / 1e6 / es; i = eb / 1e6 / is
	printf "targets: export %.1f MB/s (>= 50: %s), import %.1f MB/s (>= 25: %s),", e, (e >= 50) ? "met" : "MISSED", i, (i >= 25) ? "met" : "MISSED"
	printf " memory %.0f / %.0f MiB against %.0f MiB for a small tenant (flat: %s)\n", ma, mi, ms,
		(ma <= ms + 64 && mi <= ms + 64) ? "yes" : "NO"
}'
r=1
verdict=met
while [ "$r" -le "$lat_rounds" ]; do
	paste -d ' ' "$work/idle$r.lat" "$work/busy$r.lat" | awk '{ exit !($5 <= $2 * 1.2) }' || verdict=MISSED
	r=$((r + 1))
done
echo "targets: the small tenants' average latency during the export within 20 %: $verdict"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
