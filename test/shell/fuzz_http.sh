#!/bin/sh
# fuzz_http.sh: the randomized test of mandant.http_call() at length.
# The generator of test/sql/http_random.sql (test/fixtures/http_random.sql:
# odd methods, mutated paths and query strings, spoofed hosts and tenants,
# good, foreign and garbage tokens, bodies of every argument type and
# non-JSON ones) draws batches of FUZZ_HTTP_BATCH requests, each batch with
# a fresh seed (FUZZ_SEED + batch number), for FUZZ_SECONDS (default 60),
# against a scratch database.  Each request is a statement of its own, as
# the gateway sends it, as a member of mandant_gateway.  Any 500 answer,
# any error that escapes http_call, or a lost connection fails the test,
# with the batch's seed and the requests to reproduce it.  Prints how many
# requests it sent and their answers by status.  Runs against the cluster
# of scripts/test.sh (PGHOST, PGPORT, PGUSER set); `make fuzz` runs it,
# `make test` only the fixed-seed test/sql/http_random.sql.
set -eu
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-60}	# how long to draw batches
batch=${FUZZ_HTTP_BATCH:-400}	# requests per batch
seed=${FUZZ_SEED:-$(date +%s)}	# batch n draws with seed + n
db=mandant_fuzz_http		# the scratch database, dropped at the end
work=$(mktemp -d /tmp/mandant-fuzz-http.XXXXXX)

# cleanup: drop the scratch database and the work directory.
cleanup() {
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
# No rate limits: past the first minute they would answer nearly every
# request with 429 before it reaches the rest of http_call (the limits
# have tests of their own in test/sql/).
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "ALTER DATABASE $db SET mandant.http_requests_per_address = 0" \
	-c "ALTER DATABASE $db SET mandant.http_requests_per_tenant = 0"
# The fixture logs in three users: their access tokens must outlive the run.
PGOPTIONS="-c mandant.access_token_ttl=86400" psql -X -q -v ON_ERROR_STOP=1 -d "$db" \
	-c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant CASCADE" \
	-f test/fixtures/roles.sql -f test/fixtures/http_random.sql >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<-'SQL'
	CREATE TABLE rnd.draw (n integer PRIMARY KEY, request jsonb, body text);
	CREATE TABLE rnd.reply (n integer PRIMARY KEY, status integer NOT NULL);
	CREATE TABLE rnd.total (status integer PRIMARY KEY, requests bigint NOT NULL);
	GRANT SELECT ON rnd.draw TO PUBLIC;
	GRANT INSERT ON rnd.reply TO PUBLIC;
SQL

# One batch, as a psql script: draw with the batch's seed, send each
# request as the gateway would, add the answers to rnd.total, and print
# "status count" lines, a negative status counting requests without an
# answer (-1) and 500 answers (-500).
cat >"$work/batch.sql" <<-'SQL'
	\set ON_ERROR_STOP 1
	TRUNCATE rnd.draw, rnd.reply;
	SELECT setseed(:fraction);
	INSERT INTO rnd.draw SELECT n, r.request, r.body FROM generate_series(1, :batch) n, rnd.request(n) r;
	SET ROLE regress_gateway;
	SET mandant.http_base_domain = 'example.test';
	\set ON_ERROR_STOP 0
	\o /dev/null
	SELECT format('INSERT INTO rnd.reply SELECT %s, c.status FROM mandant.http_call(%L, %L) c', n, request, body)
	FROM rnd.draw ORDER BY n \gexec
	\o
	\set ON_ERROR_STOP 1
	RESET ROLE;
	INSERT INTO rnd.total SELECT status, count(*) FROM rnd.reply GROUP BY status
	ON CONFLICT (status) DO UPDATE SET requests = rnd.total.requests + excluded.requests;
	SELECT -1, count(*) FROM rnd.draw d WHERE NOT EXISTS (SELECT 1 FROM rnd.reply r WHERE r.n = d.n)
	UNION ALL
	SELECT -500, count(*) FROM rnd.reply WHERE status >= 500 AND status <> 503;
SQL

echo "fuzz_http: seed $seed, batches of $batch requests for ${seconds}s"
start=$(date +%s)
n=0
while [ $(($(date +%s) - start)) -lt "$seconds" ]; do
	n=$((n + 1))
	s=$((seed + n))
	fraction=$(awk -v s="$s" 'BEGIN { printf "%.6f", (s % 2000001 - 1000000) / 1000000 }')
	rc=0
	psql -X -q -At -F ' ' -d "$db" -v fraction="$fraction" -v batch="$batch" \
		-f "$work/batch.sql" >"$work/out" 2>"$work/error" || rc=$?
	escaped=$(awk '$1 == -1 { print $2 }' "$work/out")
	failed=$(awk '$1 == -500 { print $2 }' "$work/out")
	if [ "$rc" -ne 0 ] || [ "${escaped:-x}" != 0 ] || [ "${failed:-x}" != 0 ]; then
		echo "fuzz_http: batch $n (FUZZ_SEED=$((s - 1)), setseed($fraction)) failed:" \
			"psql exit $rc, ${escaped:-?} escaped errors, ${failed:-?} answers 500"
		head -c 4000 "$work/error"
		psql -X -At -d "$db" -c "SELECT d.request, d.body FROM rnd.draw d LEFT JOIN rnd.reply r USING (n)
			WHERE r.n IS NULL OR (r.status >= 500 AND r.status <> 503) ORDER BY n LIMIT 5" || true
		exit 1
	fi
done

psql -X -q -At -F ' ' -d "$db" -c "SELECT status, requests FROM rnd.total ORDER BY status" >"$work/total"
awk '{ total += $2; line = line sprintf(" %s: %d", $1, $2) }
	END { printf "fuzz_http: %d requests in '"$n"' batches, no 500, no escaped error, no lost connection\n", total
		printf "fuzz_http: answers by status:%s\n", line }' "$work/total"
