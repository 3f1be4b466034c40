#!/bin/sh
# audit_verify.sh: a full audit verification against an incremental one
# (issue 17), on one tenant with a long trail.
#
# One tenant gets BENCH_EVENTS application events (default 200,000), which
# are sealed and verified once incrementally, so that a checkpoint stands
# at the head.  Each round then adds BENCH_NEW events (default 1,000),
# seals them and times, in the same state, mandant.audit_verify() (the
# whole chain) and mandant.audit_verify_since_checkpoint() (the new seals,
# after which the checkpoint moves to the head).  Prints the median of
# BENCH_ROUNDS rounds (default 5) of each, the cost per checked event and
# the ratio full / incremental.
#
#   BENCH_EVENTS=200000 BENCH_NEW=1000 BENCH_ROUNDS=5 bench/audit_verify.sh
#
# Runs against the cluster of `make run` (make bench starts it) in a
# scratch database it drops at the end.
set -eu
. "$(dirname "$0")/lib.sh"
events=${BENCH_EVENTS:-200000}
new=${BENCH_NEW:-1000}
rounds=${BENCH_ROUNDS:-5}
tenant=c0000000-0000-4000-8000-00000000000c
bench_setup mandant_bench_audit_verify

echo "bench/audit_verify: $events events of one tenant, sealed"
su_psql -d "$bench_db" >/dev/null <<EOF
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
INSERT INTO mandant.tenant (id, slug, name, owner_email)
VALUES ('$tenant', 'bench-initech', 'Initech', 'o@initech.test');
SELECT count(mandant.audit_log_for('$tenant', NULL, NULL, 'bench', 'note', 'bench.thing', i::text,
								   jsonb_build_object('n', i, 'title', 'note ' || i)))
FROM generate_series(1, $events) i;
EOF
su_psql -d "$bench_db" >/dev/null <<EOF
SELECT mandant.audit_seal();
VACUUM ANALYZE mandant.audit_event, mandant.audit_seal;
SELECT ok FROM mandant.audit_verify_since_checkpoint('$tenant');
EOF

# One round: new events, sealed; then "full_ms full_checked incr_ms
# incr_checked", both timed in one session by clock_timestamp().
round() {
	su_psql -d "$bench_db" -At <<EOF
SET client_min_messages = warning;
SELECT count(mandant.audit_log_for('$tenant', NULL, NULL, 'bench', 'note', 'bench.thing', i::text,
								   jsonb_build_object('n', i, 'title', 'note ' || i)))
FROM generate_series(1, $new) i \\g /dev/null
SELECT mandant.audit_seal() \\g /dev/null
SELECT clock_timestamp() AS t0 \\gset
SELECT ok AS full_ok, checked AS full_checked FROM mandant.audit_verify('$tenant') \\gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1) AS full_ms \\gset
SELECT clock_timestamp() AS t0 \\gset
SELECT ok AS incr_ok, checked AS incr_checked FROM mandant.audit_verify_since_checkpoint('$tenant') \\gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1) AS incr_ms \\gset
\\echo :full_ms :full_checked :incr_ms :incr_checked :full_ok :incr_ok
EOF
}

: >"$work/rounds"
r=0
while [ "$r" -lt "$rounds" ]; do
	round >>"$work/rounds"
	r=$((r + 1))
done
if grep -q ' f' "$work/rounds"; then
	echo "bench/audit_verify: a verification failed" >&2
	exit 1
fi
full=$(cut -d' ' -f1 <"$work/rounds" | median)
incr=$(cut -d' ' -f3 <"$work/rounds" | median)
full_n=$(tail -n 1 "$work/rounds" | cut -d' ' -f2)
incr_n=$(tail -n 1 "$work/rounds" | cut -d' ' -f4)
printf '%-12s %10s %10s %10s\n' verify checked "ms median" "us/event"
awk -v f="$full" -v fn="$full_n" -v i="$incr" -v in_="$incr_n" -v r="$rounds" 'BEGIN {
	printf "%-12s %10d %10.1f %10.2f\n", "full", fn, f, f * 1000 / fn
	printf "%-12s %10d %10.1f %10.2f\n", "incremental", in_, i, i * 1000 / in_
	printf "full / incremental: %.1f (median of %d rounds)\n", f / i, r
}'
