#!/bin/sh
# fuzz.sh: the crash fuzzer.  Calls every function of schema mandant with
# hostile arguments and fires its trigger functions on tables of odd
# shapes (test/fixtures/fuzz.sql), in batches, for FUZZ_SECONDS (60 in
# `make test`, longer with `make fuzz`), as the superuser and as a role
# with no grants.  Errors are expected; a lost connection (a crashed
# backend) or a batch that hangs fails the test.  Prints how many calls
# it made and what they answered.  With FUZZ_HUGE=1 it also feeds inputs
# of half a gigabyte to the functions that compute sizes.  Runs against
# the cluster of scripts/test.sh (PGHOST, PGPORT, PGUSER set).
set -eu
cd "$(dirname "$0")/../.."

db=mandant_fuzz
seconds=${FUZZ_SECONDS:-60}
batch=${FUZZ_BATCH:-200}
seed=${FUZZ_SEED:-$(date +%s)}
work=$(mktemp -d /tmp/mandant-fuzz.XXXXXX)
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant CASCADE" \
	-c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_fuzz_nobody') THEN
		CREATE ROLE regress_fuzz_nobody NOLOGIN; END IF; END \$\$" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f test/fixtures/fuzz.sql >/dev/null

echo "fuzz: seed $seed, batches of $batch calls for ${seconds}s"
start=$(date +%s)
n=0
: >"$work/outcomes"
while [ $(($(date +%s) - start)) -lt "$seconds" ]; do
	n=$((n + 1))
	if ! psql -X -q -At -F ' ' -v ON_ERROR_STOP=1 -d "$db" \
		-c "SET statement_timeout = '120s'" -c "SET mandant.deferred_wait_ms = 0" \
		-c "SELECT outcome, calls FROM fuzz.batch($seed + $n, $batch)" >>"$work/outcomes" 2>"$work/error"; then
		echo "fuzz: batch $n (seed $seed + $n) failed:"
		cat "$work/error"
		exit 1
	fi
done

if [ "${FUZZ_HUGE:-0}" = 1 ]; then
	echo "fuzz: half-gigabyte inputs"
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
		-c "SELECT 'base32 of 2^29 + 1 bytes: ' || length(mandant.base32_encode(convert_to(repeat('a', 536870913), 'UTF8'))) || ' characters'"
fi

awk '{ n = $NF; $NF = ""; sub(/ +$/, ""); calls[$0] += n; total += n }
	END {
		printf "fuzz: %d calls in '"$n"' batches, no crash\n", total
		for (k in calls) printf "  %-30s %d\n", k, calls[k] | "sort"
	}' "$work/outcomes"
