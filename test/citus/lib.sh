# lib.sh: what the distributed suite shares; sourced by test/citus/*.sh,
# which scripts/citus.sh (make test-citus) runs against a cluster of one
# coordinator and two workers it started, each node with Citus and mandant
# installed in the database $MANDANT_CITUS_DB.
#
# Each test prints TAP ("ok N - what").  A failed check prints what came
# instead, an error with its SQLSTATE (psql's VERBOSITY verbose):
#
#   not ok 3 - router read sees the tenant's rows
#   # expected: 3
#   # got: ERROR:  42501: permission denied for table notes
#
# SQL is read from standard input (a here-document), one psql session per
# check, as ROLE on NODE (coordinator, worker1 or worker2).  Nodes trust
# local connections on their socket, so any role connects without a
# password.
set -eu

cd "$(dirname "$0")/../.."

: "${MANDANT_CITUS_SOCK:?run by scripts/citus.sh (make test-citus)}"
sock=$MANDANT_CITUS_SOCK
db=$MANDANT_CITUS_DB
port_coordinator=$MANDANT_CITUS_COORDINATOR
set -- $MANDANT_CITUS_WORKERS
port_worker1=$1
port_worker2=$2
set --
nodes="coordinator worker1 worker2"
workers="worker1 worker2"

lib_work=$(mktemp -d "$MANDANT_CITUS_WORK/test.XXXXXX")
tap_n=0
tap_failed=0

# ok STATUS DESCRIPTION: one TAP line, "ok" when STATUS is 0.
ok() {
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

# run NODE ROLE: the SQL on standard input in one psql session; rows go to
# $lib_work/out (unaligned, tuples only), messages to $lib_work/err.
# Returns psql's exit status (it stops at the first error).
run() {
	eval "p=\$port_$1"
	psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$sock" -p "$p" \
		-U "$2" -d "$db" -f - >"$lib_work/out" 2>"$lib_work/err"
}

# got: what a failed check shows: the first error, else the last row.
got() {
	if grep -q 'ERROR: ' "$lib_work/err"; then
		grep -m1 'ERROR: ' "$lib_work/err" | sed 's/^psql:[^ ]* //; s/^/# got: /'
		grep -m1 '^DETAIL: ' "$lib_work/err" | sed 's/^/#      /' || true
	else
		echo "# got: $(last_row)"
	fi
}

# last_row: the last non-empty row the session printed.
last_row() {
	grep -v '^$' "$lib_work/out" | tail -1 || true
}

# is DESCRIPTION EXPECTED NODE ROLE <<SQL: ok when the session succeeds and
# the last row it prints is EXPECTED.
is() {
	desc=$1 expected=$2
	if run "$3" "$4" && [ "$(last_row)" = "$expected" ]; then
		ok 0 "$desc"
	else
		ok 1 "$desc"
		echo "# expected: $expected"
		got
	fi
}

# fails DESCRIPTION SQLSTATE NODE ROLE <<SQL: ok when the session fails
# with an error of that SQLSTATE.
fails() {
	desc=$1 code=$2
	if run "$3" "$4"; then
		ok 1 "$desc"
		echo "# expected: an error $code"
		echo "# got: success, $(last_row)"
	elif grep -q "ERROR:  $code:" "$lib_work/err"; then
		ok 0 "$desc"
	else
		ok 1 "$desc"
		echo "# expected: an error $code"
		got
	fi
}

# setup NODE ROLE <<SQL: a step that later checks need; stops the file
# (Bail out!) when it fails.
setup() {
	if ! run "$1" "$2"; then
		echo "Bail out! setup on $1 as $2 failed"
		sed 's/^/# /' "$lib_work/err"
		exit 1
	fi
}

# value NODE ROLE <<SQL: the last row of a session that must succeed
# (called in $(...): a failure bails out on standard error).
value() {
	setup "$1" "$2" >&2
	last_row
}

# count NODE ROLE <<SQL: the last row of the session, or "error".
count() {
	if run "$1" "$2"; then
		last_row
	else
		echo error
	fi
}

# rows_of TENANT: rows with that tenant_id stored on the node: in every
# table but the tombstones and Citus's logical tables (whose shards are
# counted where they are).
rows_of() {
	cat <<-EOF
		SET citus.override_table_visibility = off;
		SELECT string_agg(format('SELECT count(*) AS c FROM %s WHERE %I = %L',
		                         c.oid::regclass, a.attname, '$1'), ' UNION ALL ') AS q
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND a.attname = 'tenant_id' AND NOT a.attisdropped
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND c.oid <> 'mandant.tenant_tombstone'::regclass
		  AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition) \gset
		SELECT sum(c) FROM (:q) s;
	EOF
}
# partitioned_tenant_table TABLE: as citus_owner, a tenant table TABLE
# (tenant_id, id, k) partitioned by list (k) with one partition TABLE_1
# for k = 1, distributed by tenant_id, both registered tenant tables, and
# citus_app may read and write through both.
partitioned_tenant_table() {
	setup coordinator citus_owner <<-EOF
		CREATE TABLE $1 (tenant_id uuid NOT NULL, id int NOT NULL, k int NOT NULL DEFAULT 1,
		                 PRIMARY KEY (tenant_id, id, k)) PARTITION BY LIST (k);
		CREATE TABLE ${1}_1 PARTITION OF $1 FOR VALUES IN (1);
		GRANT SELECT, INSERT, UPDATE, DELETE ON $1, ${1}_1 TO citus_app;
		SELECT create_distributed_table('$1', 'tenant_id');
		SELECT mandant.enable_tenancy('$1');
		SELECT mandant.enable_tenancy('${1}_1');
	EOF
}
# done_testing: the plan line, and the exit status (1 if a check failed).
done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
}
