#!/bin/sh
# quota.sh: plan limits on a distributed table (issue 16, item 5).  The
# rows are written on the workers; the coordinator counts each statement
# (INSERT, DELETE, COPY) for the transaction's tenant in its own counters
# and refuses what passes the limit before anything commits; TRUNCATE
# forgets the counters, and a new counter counts the rows through Citus.
# Runs after distributed.sh, on its roles.
. "$(dirname "$0")/lib.sh"

acme=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.tenant WHERE slug = 'acme';
EOF
)
stark=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('stark', 'Stark', 'it@stark.example');
EOF
)
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.quota_work (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    title     text NOT NULL,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.quota_work TO citus_app;
	SELECT create_distributed_table('app.quota_work', 'tenant_id');
	SELECT mandant.enable_tenancy('app.quota_work');
EOF

is "enable_quota on a distributed table marks it, with no TRUNCATE trigger to fire on the workers" \
	"mandant.quota_trigger 0" coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_quota('app.quota_work', 'records');
	SELECT min(tgfoid::regproc::text) || ' ' || count(*) FILTER (WHERE tgname = 'mandant_quota_truncate')
	FROM pg_trigger WHERE tgrelid = 'app.quota_work'::regclass AND tgname LIKE 'mandant_quota%';
EOF
fails "enable_quota refuses a table distributed by another column than its tenant column" 0A000 \
	coordinator citus_owner <<-'EOF'
	CREATE TABLE app.quota_other (tenant_id uuid NOT NULL, k uuid NOT NULL, PRIMARY KEY (k, tenant_id));
	SELECT mandant.enable_tenancy('app.quota_other');
	SELECT create_distributed_table('app.quota_other', 'k');
	SELECT mandant.enable_quota('app.quota_other', 'records');
EOF

# used: what the coordinator's counter says for stark (a mandant_service
# role reads every counter).
used="SELECT used FROM mandant.tenant_usage WHERE tenant_id = '$stark' AND resource = 'records'"
is "rows inside the plan's limit are counted" "3" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('q1'), ('q2'), ('q3');
	COMMIT;
	$used;
EOF
fails "an insert past the free plan's 5 records is refused" MD030 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('q4'), ('q5'), ('q6');
EOF
is "nothing of the refused statement stays on the workers" "3 3" coordinator postgres <<-EOF
	SELECT (SELECT count(*) FROM app.quota_work WHERE tenant_id = '$stark') || ' ' || ($used);
EOF
is "a delete gives back" "2" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	DELETE FROM app.quota_work WHERE title = 'q3';
	COMMIT;
	$used;
EOF
# COPY FROM takes no table under row level security: a superuser's, in the
# tenant.
is "COPY counts" "4" coordinator postgres <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	COPY app.quota_work (title) FROM STDIN;
	c1
	c2
	\.
	COMMIT;
	$used;
EOF
fails "COPY past the limit is refused" MD030 coordinator postgres <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	COPY app.quota_work (title) FROM STDIN;
	c3
	c4
	\.
EOF
fails "INSERT ... ON CONFLICT DO UPDATE is refused (its count mixes inserts and updates)" 0A000 \
	coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (tenant_id, title) VALUES ('$stark', 'u1')
	ON CONFLICT (tenant_id, id) DO UPDATE SET title = EXCLUDED.title;
EOF
fails "rows are written inside a tenant (none to count them for otherwise)" 0A000 coordinator postgres <<-EOF
	INSERT INTO app.quota_work (tenant_id, title) VALUES ('$stark', 'no tenant');
EOF

fails "a superuser's row of another tenant is refused on the shards" 42501 coordinator postgres <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (tenant_id, title) VALUES ('$acme', 'x');
EOF
fails "a role that bypasses row level security writes in a transaction block" 25P01 coordinator postgres <<-EOF
	DO \$\$
	BEGIN
		PERFORM mandant.set_tenant('$stark');
		INSERT INTO app.quota_work (tenant_id, title) VALUES ('$stark', 'autocommit');
	END
	\$\$;
EOF
for sql in "MERGE INTO app.quota_work t USING (SELECT '$stark'::uuid AS tenant_id, 'm1' AS title) s
	ON t.tenant_id = s.tenant_id AND t.title = s.title
	WHEN NOT MATCHED THEN INSERT (tenant_id, title) VALUES (s.tenant_id, s.title)" \
	"WITH d AS (DELETE FROM app.quota_work WHERE title = 'q1' RETURNING 1) SELECT count(*) FROM d"; do
	fails "${sql%% *} on the table is refused (its count mixes rows)" 0A000 coordinator citus_app <<-EOF
		BEGIN;
		SELECT mandant.set_tenant('$stark');
		$sql;
	EOF
done
# Planned, not only parsed: an EXPLAIN ANALYZE, a function's body.
fails "EXPLAIN ANALYZE of a MERGE on the table is refused" 0A000 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	EXPLAIN ANALYZE MERGE INTO app.quota_work t USING app.quota_work s
	    ON t.tenant_id = s.tenant_id AND t.id = s.id AND false
	    WHEN NOT MATCHED THEN INSERT (tenant_id, title) VALUES (s.tenant_id, s.title || '+');
EOF
fails "a MERGE in a SQL function's body is refused" 0A000 coordinator citus_owner <<-EOF
	CREATE FUNCTION app.double_work() RETURNS void LANGUAGE sql
	BEGIN ATOMIC
	    MERGE INTO app.quota_work t USING app.quota_work s
	        ON t.tenant_id = s.tenant_id AND t.id = s.id AND false
	        WHEN NOT MATCHED THEN INSERT (tenant_id, title) VALUES (s.tenant_id, s.title || '+');
	END;
	GRANT EXECUTE ON FUNCTION app.double_work() TO citus_app;
	\\c - citus_app
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	SELECT app.double_work();
EOF
# Instrumented (EXPLAIN ANALYZE, auto_explain's log_analyze), Citus runs
# each task wrapped in an EXPLAIN of its own, and the statement reports
# that one's rows: an insert of three would count as one, a delete of
# none give one back.
before=$(value coordinator postgres <<-EOF
	SELECT (SELECT count(*) FROM app.quota_work WHERE tenant_id = '$stark') || ' ' || ($used);
EOF
)
for sql in "INSERT INTO app.quota_work (title) VALUES ('e1'), ('e2'), ('e3')" \
	"DELETE FROM app.quota_work WHERE title = 'no such row'"; do
	fails "EXPLAIN ANALYZE of ${sql%% *} on the table is refused" 0A000 coordinator citus_app <<-EOF
		BEGIN;
		SELECT mandant.set_tenant('$stark');
		EXPLAIN (ANALYZE, COSTS OFF) $sql;
	EOF
done
setup coordinator postgres <<-'EOF'
	DROP ROLE IF EXISTS citus_explained;
	CREATE ROLE citus_explained LOGIN IN ROLE mandant_service;
	GRANT USAGE ON SCHEMA app TO citus_explained;
	GRANT SELECT, INSERT, DELETE ON app.quota_work TO citus_explained;
	ALTER ROLE citus_explained SET session_preload_libraries = 'auto_explain';
	ALTER ROLE citus_explained SET auto_explain.log_min_duration = 0;
	ALTER ROLE citus_explained SET auto_explain.log_analyze = on;
EOF
fails "and an INSERT that auto_explain instruments" 0A000 coordinator citus_explained <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('e1'), ('e2'), ('e3');
EOF
is "none of them was counted or written" "$before" coordinator postgres <<-EOF
	SELECT (SELECT count(*) FROM app.quota_work WHERE tenant_id = '$stark') || ' ' || ($used);
EOF
fails "a write through a worker is refused (the counters are the coordinator's)" 0A000 worker1 citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('w1');
EOF

# A counter that is gone is made again from the rows through Citus.
setup coordinator postgres <<-EOF
	DELETE FROM mandant.tenant_usage WHERE tenant_id = '$stark';
EOF
is "a new counter counts the rows already there, and the statement's" "5" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('n1');
	COMMIT;
	$used;
EOF
fails "and the limit holds on it" MD030 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('n2');
EOF
is "usage_reconcile counts through Citus and finds no drift" "0" coordinator citus_admin <<-EOF
	SELECT count(*) FROM mandant.usage_reconcile() WHERE tenant_id = '$stark';
EOF
setup coordinator citus_owner <<-EOF
	TRUNCATE app.quota_work;
EOF
is "TRUNCATE forgets the counters; the next write counts again" "1" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('t1');
	COMMIT;
	$used;
EOF
setup coordinator citus_admin <<-EOF
	SELECT mandant.set_quota('$stark', 'records', 9, reason => 'trial');
EOF
is "set_quota raises the limit" "7" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('s1'), ('s2'), ('s3'), ('s4'), ('s5'), ('s6');
	COMMIT;
	$used;
EOF

# A tenant table that stays on the coordinator counts as on one server,
# into the same counter.
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.quota_local (tenant_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
	GRANT SELECT, INSERT ON app.quota_local TO citus_app;
	SELECT mandant.enable_tenancy('app.quota_local');
	SELECT mandant.enable_quota('app.quota_local', 'records');
EOF
is "a table kept on the coordinator counts into the same counter" "8" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_local (tenant_id, id) VALUES ('$stark', 1);
	COMMIT;
	$used;
EOF
fails "and the limit holds across both" MD030 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_work (title) VALUES ('over'), ('over2');
EOF

# A partition under quota, its partitioned table not: Citus's plan of a
# write through the partitioned table names that table only, and rows
# that an UPDATE of the partition key (or a cascade) moves into the
# partition on the workers pass the coordinator by.  enable_quota refuses
# such a partition; one attached under quota is refused writes through
# the partitioned table.
partitioned_tenant_table app.quota_parted
fails "enable_quota on a partition of a distributed table is refused" 0A000 coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_quota('app.quota_parted_1', 'records');
EOF
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.quota_parted_2 (tenant_id uuid NOT NULL, id int NOT NULL, k int NOT NULL DEFAULT 2,
	                                 PRIMARY KEY (tenant_id, id, k));
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.quota_parted_2 TO citus_app;
	SELECT create_distributed_table('app.quota_parted_2', 'tenant_id', colocate_with => 'app.quota_parted');
	SELECT mandant.enable_tenancy('app.quota_parted_2');
	SELECT mandant.enable_quota('app.quota_parted_2', 'records');
	ALTER TABLE app.quota_parted ATTACH PARTITION app.quota_parted_2 FOR VALUES IN (2);
EOF
for sql in "INSERT INTO app.quota_parted (tenant_id, id, k) VALUES ('$stark', 1, 2)" \
	"DELETE FROM app.quota_parted WHERE id = 1" \
	"UPDATE app.quota_parted SET k = 2 WHERE k = 1"; do
	fails "${sql%% *} through a partitioned table into its attached partition under quota is refused" 0A000 \
		coordinator citus_app <<-EOF
		BEGIN;
		SELECT mandant.set_tenant('$stark');
		$sql;
	EOF
done
is "writes of the partition itself count" "true true" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	INSERT INTO app.quota_parted_2 (tenant_id, id) VALUES ('$stark', 1);
	COMMIT;
	\c - postgres
	SELECT (($used) = mandant.count_rows('$stark', 'records'))::text AS after_insert \gset
	\c - citus_app
	BEGIN;
	SELECT mandant.set_tenant('$stark');
	DELETE FROM app.quota_parted_2 WHERE id = 1;
	COMMIT;
	\c - postgres
	SELECT :'after_insert' || ' ' || (($used) = mandant.count_rows('$stark', 'records'));
EOF
setup coordinator citus_owner <<-'EOF'
	SELECT mandant.disable_quota('app.quota_parted_2');
	DROP TABLE app.quota_parted;
EOF

# disable_quota drops the trigger from the shards too (Citus takes a DROP
# TRIGGER of a distributed table only when told to).
shard_triggers="SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                WHERE c.relname ~ '^quota_work_[0-9]+\$' AND t.tgname = 'mandant_quota'"
is "disable_quota works on a distributed table" "0" coordinator citus_owner <<-'EOF'
	SELECT mandant.disable_quota('app.quota_work');
	SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.quota_work'::regclass AND tgname = 'mandant_quota';
EOF
for n in $workers; do
	is "$n: and leaves no quota trigger on its shards there" "0" "$n" postgres <<-EOF
		$shard_triggers;
	EOF
done
setup coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_quota('app.quota_work', 'records');
EOF

is "delete_tenant erases a tenant with rows under quota on every node" "0 0" coordinator citus_admin <<-EOF
	SELECT mandant.delete_tenant('$stark', 'stark') IS NOT NULL;
	\c - postgres
	SELECT (SELECT count(*) FROM app.quota_work WHERE tenant_id = '$stark') || ' ' ||
	       (SELECT count(*) FROM mandant.tenant_usage WHERE tenant_id = '$stark');
EOF

done_testing
