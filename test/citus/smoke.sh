#!/bin/sh
# smoke.sh: the cluster itself.  Every node runs Citus and mandant, the
# coordinator knows both workers, and a plain distributed table and a
# reference table work for a superuser.  Nothing here is tenant-aware:
# it is what must hold before the distributed suite means anything.
. "$(dirname "$0")/lib.sh"

for n in $nodes; do
	is "$n: citus and mandant are installed, citus preloaded first" \
		"citus,mandant|citus mandant pgcrypto" "$n" postgres <<-'EOF'
		SELECT current_setting('shared_preload_libraries') || '|' ||
		       string_agg(extname, ' ' ORDER BY extname)
		FROM pg_extension WHERE extname IN ('citus', 'mandant', 'pgcrypto');
	EOF
	# mandant's check hook is active on the node: nobody sets the tenant
	# by hand, superusers included.
	fails "$n: SET LOCAL app.current_tenant is refused" 42501 "$n" postgres <<-'EOF'
		BEGIN;
		SET LOCAL app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
	EOF
done

is "the coordinator knows two active workers" 2 coordinator postgres <<-'EOF'
	SELECT count(*) FROM citus_get_active_worker_nodes();
EOF
is "the workers answer the coordinator, with mandant's version" \
	"2 $(value coordinator postgres <<-'EOF'
		SELECT extversion FROM pg_extension WHERE extname = 'mandant';
	EOF
	)" coordinator postgres <<-'EOF'
	SELECT count(*) || ' ' || min(result)
	FROM run_command_on_workers($$SELECT extversion FROM pg_extension WHERE extname = 'mandant'$$)
	WHERE success;
EOF

setup coordinator postgres <<-'EOF'
	CREATE SCHEMA smoke;
	CREATE TABLE smoke.kv (k int PRIMARY KEY, v text NOT NULL);
	SELECT create_distributed_table('smoke.kv', 'k', shard_count => 8);
	CREATE TABLE smoke.color (id int PRIMARY KEY, name text NOT NULL);
	SELECT create_reference_table('smoke.color');
EOF

is "a distributed table has shards on both workers" 2 coordinator postgres <<-'EOF'
	SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'smoke.kv'::regclass;
EOF
is "multi-shard insert and count" 100 coordinator postgres <<-'EOF'
	INSERT INTO smoke.kv SELECT g, 'v' || g FROM generate_series(1, 100) g;
	SELECT count(*) FROM smoke.kv;
EOF
is "router update and read" "v7!" coordinator postgres <<-'EOF'
	UPDATE smoke.kv SET v = v || '!' WHERE k = 7;
	SELECT v FROM smoke.kv WHERE k = 7;
EOF
is "multi-shard delete in a transaction, rolled back" "50 100" coordinator postgres <<-'EOF'
	BEGIN;
	DELETE FROM smoke.kv WHERE k % 2 = 0;
	SELECT count(*) FROM smoke.kv \gset
	ROLLBACK;
	SELECT :count || ' ' || count(*) FROM smoke.kv;
EOF
is "a reference table joins with a distributed table" 34 coordinator postgres <<-'EOF'
	INSERT INTO smoke.color VALUES (0, 'red'), (1, 'green'), (2, 'blue');
	SELECT count(*) FROM smoke.kv JOIN smoke.color ON color.id = kv.k % 3 WHERE color.name = 'green';
EOF
is "the reference table is on every worker" "2 3" coordinator postgres <<-'EOF'
	SELECT count(*) || ' ' || min(result)
	FROM run_command_on_workers($$SELECT count(*) FROM smoke.color_$$ ||
	     (SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'smoke.color'::regclass))
	WHERE success;
EOF
is "a worker queries the distributed table too (metadata synced)" 100 worker1 postgres <<-'EOF'
	SELECT count(*) FROM smoke.kv;
EOF

setup coordinator postgres <<-'EOF'
	DROP SCHEMA smoke CASCADE;
EOF
# A backend that started before Citus was installed in its database, or
# dropped, notices it: mandant keeps the answer until a relcache-wide
# invalidation, which Citus sends on CREATE and DROP EXTENSION citus.
# Without the fresh answer, mandant would read the coordinator's shell of
# a reference table (citus_require_transaction_block asks the same question).
late="${db}_late"
setup coordinator postgres <<-EOF
	DROP DATABASE IF EXISTS $late;
	CREATE DATABASE $late;
EOF
late_psql() {
	psql -X -q -At -v VERBOSITY=verbose -h "$sock" -p "$port_coordinator" -U postgres -d "$late" "$@"
}
late_psql -c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant CASCADE" >/dev/null
answers=$(late_psql 2>&1 <<-EOF | grep -o "^ok$\|25P01" | tr '\n' ' '
	SELECT 'ok' FROM (SELECT mandant.citus_require_transaction_block('probe')) s;
	\! psql -X -q -h "$sock" -p "$port_coordinator" -U postgres -d "$late" -c "CREATE EXTENSION citus"
	SELECT 'ok' FROM (SELECT mandant.citus_require_transaction_block('probe')) s;
	\! psql -X -q -h "$sock" -p "$port_coordinator" -U postgres -d "$late" -c "DROP EXTENSION citus"
	SELECT 'ok' FROM (SELECT mandant.citus_require_transaction_block('probe')) s;
EOF
)
if [ "$answers" = "ok 25P01 ok " ]; then
	ok 0 "a running backend sees Citus installed, then dropped"
else
	ok 1 "a running backend sees Citus installed, then dropped"
	echo "# expected: ok 25P01 ok (before, with, after Citus)"
	echo "# got: $answers"
fi
setup coordinator postgres <<-EOF
	DROP DATABASE $late WITH (FORCE);
EOF

done_testing
