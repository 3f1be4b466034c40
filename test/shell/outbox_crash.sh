#!/bin/sh
# outbox_crash.sh: a consumer that claims events and dies (its connection
# killed) loses nothing.  After a committed claim the events come back when
# the lease expires; after a claim whose transaction never committed they
# are claimable at once.  Runs against the cluster of scripts/test.sh
# (PGHOST, PGPORT, PGUSER set).
set -eu
db=mandant_outbox_crash

q() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"
}

psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
q -c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant CASCADE" >/dev/null
q -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_consumer')
	  THEN CREATE ROLE regress_consumer LOGIN IN ROLE mandant_service; END IF; END \$\$"
q -c "SELECT mandant.emit('crash.test.event', 'a' || i, jsonb_build_object('i', i)) FROM generate_series(1, 3) i" >/dev/null

# kill_consumer NAME: terminate the backend of a psql started with
# application_name NAME once it sleeps after its claim.
kill_consumer() {
	n=0
	until [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND query LIKE '%pg_sleep%'")" = 1 ]; do
		n=$((n + 1))
		[ $n -lt 100 ] || { echo "consumer $1 never started"; exit 1; }
		sleep 0.1
	done
	q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$1'" >/dev/null
	wait
}

# 1. Claim committed, then the consumer dies: the lease holds, then expires.
PGAPPNAME=doomed psql -X -q -At -U regress_consumer -d "$db" \
	-c "SELECT count(*) FROM mandant.outbox_claim('doomed', 10, '2 seconds')" \
	-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
kill_consumer doomed
while_leased=$(q -U regress_consumer -c "SELECT count(*) FROM mandant.outbox_claim('survivor', 10)")
echo "claimable while the dead consumer's lease holds: $while_leased"
[ "$while_leased" = 0 ]
sleep 2.5
after=$(q -U regress_consumer -c "WITH c AS (SELECT * FROM mandant.outbox_claim('survivor', 10))
	SELECT string_agg(aggregate_id || ':' || attempts, ',' ORDER BY aggregate_id) || ' acked ' || mandant.outbox_ack(array_agg(id)) FROM c")
echo "claimable after the lease expired (aggregate:attempts): $after"
[ "$after" = "a1:2,a2:2,a3:2 acked 3" ]

# 2. Claim not committed when the consumer dies: nothing was leased.
q -c "SELECT mandant.emit('crash.test.event', 'b1', '{}')" >/dev/null
PGAPPNAME=doomed2 psql -X -q -At -U regress_consumer -d "$db" \
	-c "BEGIN" \
	-c "SELECT count(*) FROM mandant.outbox_claim('doomed2', 10, '1 hour')" \
	-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
kill_consumer doomed2
at_once=$(q -U regress_consumer -c "SELECT string_agg(aggregate_id, ',') FROM mandant.outbox_claim('survivor', 10)")
echo "claimable at once after an uncommitted claim died: $at_once"
[ "$at_once" = "b1" ]
stats=$(q -U regress_consumer -c "SELECT pending, leased, dead FROM mandant.outbox_stats()")
echo "pending|leased|dead: $stats"
[ "$stats" = "0|1|0" ]
