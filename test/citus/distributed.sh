#!/bin/sh
# distributed.sh: mandant's promises on a distributed cluster (issue 16,
# "The distributed suite"), as a trusted backend (a mandant_service role
# that calls set_tenant) and as an end user (a token, authenticate()).
# Tenant tables are distributed by tenant_id: app.notes got enable_tenancy
# before create_distributed_table, app.tasks after it, with a status
# machine.  Rows of the first tenants are written by a superuser, so that
# the reads are tested apart from the writes.  Quotas on distributed
# tables: quota.sh; the outbox: outbox.sh; the audit trail: triggers.sh.
. "$(dirname "$0")/lib.sh"

# Roles as scripts/demo.sql makes them (Citus propagates them to the
# workers): the migrations' owner, two trusted backends, an operator.
setup coordinator postgres <<-'EOF'
	CREATE ROLE citus_owner LOGIN;
	CREATE ROLE citus_app LOGIN;
	CREATE ROLE citus_app2 LOGIN;
	CREATE ROLE citus_admin LOGIN;
	GRANT mandant_service TO citus_app, citus_app2;
	GRANT mandant_admin TO citus_admin;
	CREATE SCHEMA app AUTHORIZATION citus_owner;
	GRANT USAGE ON SCHEMA app TO citus_app, citus_app2;
EOF

# Two tenants exist before mandant is distributed.
acme=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('acme', 'Acme', 'it@acme.example');
EOF
)
globex=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('globex', 'Globex', 'it@globex.example');
EOF
)

is "mandant.citus_setup() makes plans and tenants reference tables" "2" coordinator postgres <<-'EOF'
	SELECT mandant.citus_setup();
	SELECT count(*) FROM pg_dist_partition
	WHERE logicalrelid IN ('mandant.plan'::regclass, 'mandant.tenant'::regclass) AND partmethod = 'n';
EOF

# where TABLE: "distributed" when TABLE is a hash-distributed table, so
# that a read on a table that stayed local never passes for one on shards.
where() {
	echo "(SELECT CASE WHEN EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = '$1'::regclass
	AND partmethod = 'h') THEN 'distributed' ELSE 'local' END)"
}

is "enable_tenancy before create_distributed_table" "distributed" coordinator citus_owner <<-EOF
	CREATE TABLE app.notes (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    body      text NOT NULL,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.notes TO citus_app, citus_app2;
	SELECT mandant.enable_tenancy('app.notes');
	SELECT create_distributed_table('app.notes', 'tenant_id');
	SELECT $(where app.notes);
EOF
is "enable_tenancy after create_distributed_table" "distributed tenant_isolation" coordinator citus_owner <<-EOF
	CREATE TABLE app.tasks (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    title     text NOT NULL,
	    status    text,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.tasks TO citus_app, citus_app2;
	SELECT create_distributed_table('app.tasks', 'tenant_id');
	SELECT mandant.enable_tenancy('app.tasks');
	SELECT $(where app.tasks) || ' ' || string_agg(polname, ',')
	FROM pg_policy WHERE polrelid = 'app.tasks'::regclass;
EOF

# Where app.notes lives, appended to the reads below: Citus plans no
# subquery of the catalog beside a distributed table, so it is read once.
notes="'$(value coordinator postgres <<-EOF
	SELECT $(where app.notes);
EOF
)'"

is "a superuser writes the first rows (acme 3, globex 2)" "5" coordinator postgres <<-EOF
	INSERT INTO app.notes (tenant_id, body)
	VALUES ('$acme', 'a1'), ('$acme', 'a2'), ('$acme', 'a3'), ('$globex', 'g1'), ('$globex', 'g2');
	SELECT count(*) FROM app.notes;
EOF

# End users with access tokens: Ada, an admin of acme, and Bob, of globex.
setup coordinator citus_app <<-EOF
	SELECT mandant.create_user('ada@acme.example', 'correct horse battery staple', 'Ada') AS ada \gset
	SELECT mandant.create_user('bob@globex.example', 'correct horse battery staple', 'Bob') AS bob \gset
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.add_member('$acme', :'ada', 'admin');
	COMMIT;
	BEGIN;
	SELECT mandant.set_tenant('$globex');
	SELECT mandant.add_member('$globex', :'bob', 'agent');
	COMMIT;
EOF
ada=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.users WHERE email = 'ada@acme.example';
EOF
)
token=$(value coordinator citus_app <<-'EOF'
	SELECT mandant.login('ada@acme.example', 'correct horse battery staple',
	                     tenant_slug => 'acme') ->> 'accessToken';
EOF
)
token_globex=$(value coordinator citus_app <<-'EOF'
	SELECT mandant.login('bob@globex.example', 'correct horse battery staple',
	                     tenant_slug => 'globex') ->> 'accessToken';
EOF
)

# The same cases for both ways into the tenant.
for who in backend user; do
	if [ "$who" = backend ]; then
		enter="SELECT mandant.set_tenant('$acme');"
	else
		enter="SELECT mandant.authenticate('$token');"
	fi
	is "$who: router read sees the tenant's rows" "3 distributed" coordinator citus_app <<-EOF
		BEGIN;
		$enter
		SELECT count(*) || ' ' || $notes FROM app.notes WHERE tenant_id = '$acme';
		COMMIT;
	EOF
	is "$who: multi-shard read sees the tenant's rows only" "3 0 distributed" coordinator citus_app <<-EOF
		BEGIN;
		$enter
		SELECT count(*) AS own FROM app.notes \gset
		SELECT :own || ' ' || count(*) || ' ' || $notes FROM app.notes WHERE tenant_id = '$globex';
		COMMIT;
	EOF
	is "$who: insert through the default lands in the tenant" "$acme distributed" coordinator citus_app <<-EOF
		BEGIN;
		$enter
		INSERT INTO app.notes (body) VALUES ('by $who');
		SELECT tenant_id || ' ' || $notes FROM app.notes WHERE body = 'by $who';
		ROLLBACK;
	EOF
	fails "$who: insert for another tenant is refused" 42501 coordinator citus_app <<-EOF
		BEGIN;
		$enter
		INSERT INTO app.notes (tenant_id, body) VALUES ('$globex', 'planted by $who');
	EOF
	is "$who: update and delete reach the tenant's rows, not another's" "3 0 0 distributed" coordinator citus_app <<-EOF
		BEGIN;
		$enter
		UPDATE app.notes SET body = body || '.';
		\set own :ROW_COUNT
		UPDATE app.notes SET body = 'changed by $who' WHERE tenant_id = '$globex';
		\set changed :ROW_COUNT
		DELETE FROM app.notes WHERE tenant_id = '$globex';
		SELECT :own || ' ' || :changed || ' ' || :ROW_COUNT || ' ' || $notes;
		ROLLBACK;
	EOF
	is "$who: the next transaction has no tenant" "3 0 none distributed" coordinator citus_app <<-EOF
		BEGIN;
		$enter
		SELECT count(*) AS first FROM app.notes \gset
		COMMIT;
		BEGIN;
		SELECT :first || ' ' || count(*) || ' ' || coalesce(mandant.current_tenant()::text, 'none') || ' ' ||
		       $notes
		FROM app.notes;
		COMMIT;
	EOF
done

# One session enters tenants in turn: the envelope it hands the workers
# is reused only for the same context and role (envelope.c).
is "one session, tenants in turn: each transaction sees its own tenant's rows" "3 2 3" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) AS a1 FROM app.notes \gset
	COMMIT;
	BEGIN;
	SELECT mandant.set_tenant('$globex');
	SELECT count(*) AS g FROM app.notes \gset
	COMMIT;
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT :a1 || ' ' || :g || ' ' || count(*) FROM app.notes;
	COMMIT;
EOF
is "one backend, two roles in turn: the workers take each role's own envelope" "3 3" coordinator postgres <<-EOF
	SET ROLE citus_app;
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) AS first FROM app.notes \gset
	COMMIT;
	RESET ROLE;
	SET ROLE citus_app2;
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT :first || ' ' || count(*) FROM app.notes;
	COMMIT;
EOF

is "a savepoint rollback restores the context on the shards" "2 3 true distributed" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) FROM app.notes;
	SAVEPOINT s;
	SELECT mandant.set_tenant('$globex');
	SELECT count(*) AS inner FROM app.notes \gset
	ROLLBACK TO SAVEPOINT s;
	SELECT :inner || ' ' || count(*) || ' ' || (mandant.current_tenant() = '$acme') || ' ' || $notes
	FROM app.notes;
	COMMIT;
EOF

# A committed subtransaction (RELEASE SAVEPOINT, a PL/pgSQL block with an
# EXCEPTION clause) keeps the context, on connections Citus opens later too.
is "RELEASE SAVEPOINT keeps the context on the shards" "3 distributed" coordinator citus_app <<-EOF
	BEGIN;
	SAVEPOINT s;
	SELECT mandant.set_tenant('$acme');
	RELEASE SAVEPOINT s;
	SELECT count(*) || ' ' || $notes FROM app.notes;
	COMMIT;
EOF
is "set_tenant in a PL/pgSQL block with an EXCEPTION clause reaches the shards" "3 distributed" coordinator citus_app <<-EOF
	BEGIN;
	DO \$\$ BEGIN PERFORM mandant.set_tenant('$acme'); EXCEPTION WHEN others THEN RAISE; END \$\$;
	SELECT count(*) || ' ' || $notes FROM app.notes;
	COMMIT;
EOF

initech=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('initech', 'Initech', 'it@initech.example');
EOF
)
is "a tenant created after distribution can be entered" "1 distributed" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$initech');
	INSERT INTO app.notes (body) VALUES ('i1');
	SELECT count(*) || ' ' || $notes FROM app.notes;
	ROLLBACK;
EOF
setup coordinator citus_admin <<-EOF
	SELECT mandant.suspend_tenant('$globex', 'citus test');
EOF
fails "a tenant suspended after distribution is refused" MD003 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$globex');
EOF
fails "a suspended tenant's token is refused" MD003 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.authenticate('$token_globex');
EOF
setup coordinator citus_admin <<-EOF
	SELECT mandant.resume_tenant('$globex');
EOF

# The envelope that carries the context to the workers: forged, or taken
# from a session of another role, it is refused on every node.  A
# superuser reads the envelope of citus_app's transaction.
envelope=$(run coordinator postgres <<-EOF && last_row || true
	SET ROLE citus_app;
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) FROM app.notes;
	RESET ROLE;
	SELECT current_setting('mandant.context');
EOF
)
is "the coordinator hands the workers an envelope (mandant.context)" "yes" coordinator postgres <<-EOF
	SELECT CASE WHEN length('$envelope') > 0 THEN 'yes' ELSE 'no envelope' END;
EOF
for n in $nodes; do
	fails "$n: a forged envelope is refused" 42501 "$n" citus_app <<-'EOF'
		BEGIN;
		SET LOCAL mandant.context = 'tenant=a0000000-0000-4000-8000-00000000000a;mac=00';
		SELECT count(*) FROM app.notes;
	EOF
	fails "$n: citus_app's envelope replayed by citus_app2 is refused" 42501 "$n" citus_app2 <<-EOF
		BEGIN;
		SET LOCAL mandant.context = '$envelope';
		SELECT count(*) FROM app.notes;
	EOF
	if [ "$n" = coordinator ]; then
		# the coordinator takes no envelope (mandant.accept_context_envelopes
		# is off there), not even of its own role: no replay where clients connect
		fails "$n: the envelope is refused, even for its own role" 42501 "$n" citus_app <<-EOF
			BEGIN;
			SET LOCAL mandant.context = '$envelope';
			SELECT mandant.current_tenant();
		EOF
	else
		is "$n: the envelope is good for its own role until it expires (the replay README names)" "$acme" "$n" citus_app <<-EOF
			BEGIN;
			SET LOCAL mandant.context = '$envelope';
			SELECT mandant.current_tenant();
		EOF
	fi
	fails "$n: SET LOCAL app.current_tenant is refused" 42501 "$n" citus_app <<-EOF
		BEGIN;
		SET LOCAL app.current_tenant = '$acme';
	EOF
done
fails "coordinator: a forwarded SET LOCAL app.current_tenant is refused" 42501 coordinator citus_app <<-EOF
	BEGIN;
	SELECT set_config('citus.propagate_set_commands', 'local', true);
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) FROM app.notes;
	SET LOCAL app.current_tenant = '$globex';
EOF

# A session opened on a worker directly, by the application's role: the
# shell table and the shards placed there read empty without a tenant,
# while the workers hold rows (which worker holds a tenant depends on the
# hash of its id).
seen="" held=0
for n in $workers; do
	eval "p=\$port_$n"
	shards="SELECT string_agg(format('SELECT count(*) AS c FROM app.%I', 'notes_' || shardid), ' UNION ALL ')
	        FROM pg_dist_shard JOIN pg_dist_placement USING (shardid) JOIN pg_dist_node USING (groupid)
	        WHERE logicalrelid = to_regclass('app.notes') AND nodeport = $p"
	n_held=$(count "$n" postgres <<-EOF
		SELECT coalesce(($shards), 'SELECT 0') AS q \gset
		SELECT sum(c) FROM (:q) s;
	EOF
	)
	[ "$n_held" = error ] || held=$((held + n_held))
	run "$n" citus_app <<-EOF || true
		SELECT coalesce(($shards), 'SELECT 0') AS q \gset
		SELECT (SELECT count(*) FROM app.notes) || '+' || coalesce(sum(c), 0) FROM (:q) s;
	EOF
	if grep -q 'ERROR: ' "$lib_work/err"; then
		seen="$seen $n=$(got | sed 's/^# got: //' | head -1)"
	else
		seen="$seen $n=$(last_row)"
	fi
done
if [ "$seen" = " worker1=0+0 worker2=0+0" ] && [ "$held" -gt 0 ]; then
	ok 0 "a direct session on a worker sees nothing (shell table + shards)"
else
	ok 1 "a direct session on a worker sees nothing (shell table + shards)"
	echo "# expected: worker1=0+0 worker2=0+0, of rows the workers hold"
	echo "# got:$seen, of $held rows"
fi

# A status machine on app.tasks: its trigger runs on the shards.
setup coordinator citus_owner <<-'EOF'
	SELECT mandant.create_state_machine('citus_task', initial_states => '{open}',
	       frozen_states => '{done}', states => '{open,doing,done}');
	SELECT mandant.add_transition('citus_task', 'open', 'doing', 'write');
	SELECT mandant.add_transition('citus_task', 'doing', 'done', 'write');
EOF
fails "state machine: a table not colocated with the transition log cannot log its transitions" \
	0A000 coordinator citus_owner <<-'EOF'
	CREATE TABLE app.solo (tenant_id uuid NOT NULL, id int, status text, PRIMARY KEY (tenant_id, id));
	SELECT create_distributed_table('app.solo', 'tenant_id', colocate_with => 'none');
	SELECT mandant.enable_state_machine('app.solo', 'citus_task');
EOF
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.by_id (tenant_id uuid NOT NULL, id uuid NOT NULL, status text, PRIMARY KEY (id, tenant_id));
	SELECT create_distributed_table('app.by_id', 'id');
	SELECT mandant.enable_tenancy('app.by_id');
EOF
fails "state machine: a table distributed by another uuid column than its tenant's cannot log" \
	0A000 coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_state_machine('app.by_id', 'citus_task');
EOF
setup coordinator citus_owner <<-'EOF'
	DROP TABLE app.by_id;
EOF
is "state machine: bound to a distributed table, with its log beside the shards" "1 zz_mandant_state_machine" \
	coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_state_machine('app.tasks', 'citus_task');
	SELECT count(*) || ' ' || min(tgname) FROM pg_trigger
	WHERE tgrelid = 'app.tasks'::regclass AND tgfoid = 'mandant.state_machine_trigger_on_shards'::regproc;
EOF
is "state machine: a transition is logged beside the shard, named by the logical table, with actor and request id" \
	"1 app.tasks true doing" coordinator citus_app <<-EOF
	BEGIN;
	SET LOCAL app.request_id = 'citus-log';
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_user('$ada');
	SELECT mandant.set_scopes('{read,write}');
	INSERT INTO app.tasks (title) VALUES ('logged');
	UPDATE app.tasks SET status = 'doing' WHERE title = 'logged';
	SELECT count(*) || ' ' || min(entity_type) || ' ' || bool_and(actor_user_id = '$ada') || ' ' || min(to_state)
	FROM mandant.state_transition_log WHERE request_id = 'citus-log';
	COMMIT;
EOF
fails "state machine: the log stays append-only on the shards for the tables' owner" 42501 coordinator citus_owner <<-'EOF'
	DELETE FROM mandant.state_transition_log;
EOF
is "state machine: another tenant sees none of the tenant's transitions" "0" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$globex');
	SELECT count(*) FROM mandant.state_transition_log WHERE request_id = 'citus-log';
	COMMIT;
EOF
is "state machine: bound to a distributed table without its log" "1 zz_mandant_state_machine" coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_state_machine('app.tasks', 'citus_task', log_transitions => false);
	SELECT count(*) || ' ' || min(tgname) FROM pg_trigger
	WHERE tgrelid = 'app.tasks'::regclass AND tgfoid = 'mandant.state_machine_trigger_on_shards'::regproc;
EOF
is "state machine: a declared transition on a distributed table" "doing" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_scopes('{read,write}');
	INSERT INTO app.tasks (title) VALUES ('sm1');
	UPDATE app.tasks SET status = 'doing' WHERE title = 'sm1';
	SELECT status FROM app.tasks WHERE title = 'sm1';
	ROLLBACK;
EOF
fails "state machine: an undeclared transition is refused on the shard" MD010 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_scopes('{read,write}');
	INSERT INTO app.tasks (title, status) VALUES ('sm2', 'open');
	UPDATE app.tasks SET status = 'done' WHERE title = 'sm2';
EOF
fails "state machine: a transition without its scope is refused on the shard" 42501 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_scopes('{read}');
	INSERT INTO app.tasks (title, status) VALUES ('sm3', 'open');
	UPDATE app.tasks SET status = 'doing' WHERE title = 'sm3';
EOF
fails "state machine: the public trigger function, attached by the owner, is refused on the shards" \
	55000 coordinator citus_owner <<-EOF
	SET citus.enable_unsafe_triggers = on;
	CREATE TABLE app.forged (tenant_id uuid NOT NULL, id int, status text, PRIMARY KEY (tenant_id, id));
	SELECT create_distributed_table('app.forged', 'tenant_id');
	CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON app.forged
	    FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger('citus_task', 'status', 'nolog');
	INSERT INTO app.forged VALUES ('$acme', 1, 'open');
EOF
fails "state machine: the twin trigger function cannot be attached by the owner" 42501 coordinator citus_owner <<-EOF
	SET citus.enable_unsafe_triggers = on;
	CREATE TABLE app.forged2 (tenant_id uuid NOT NULL, id int, status text, PRIMARY KEY (tenant_id, id));
	SELECT create_distributed_table('app.forged2', 'tenant_id');
	CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON app.forged2
	    FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger_on_shards('citus_task', 'status', 'nolog');
EOF

fails "the audit twin trigger function cannot be attached by the owner" 42501 coordinator citus_owner <<-EOF
	SET citus.enable_unsafe_triggers = on;
	CREATE TRIGGER zz_mandant_audit AFTER INSERT ON app.forged2
	    FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger_on_shards('');
EOF
# A context setter inside a query that Citus pushes down to the shards.
for f in "mandant.set_tenant(tenant_id)" "mandant.set_scopes('{read}')"; do
	fails "${f%%(*} in a query pushed down to the workers is refused" 0A000 coordinator citus_app <<-EOF
		BEGIN;
		SELECT mandant.set_tenant('$acme');
		SELECT $f FROM app.notes;
	EOF
done

# The owner's code that runs on the shards during an export sees the
# tenant's rows, not its context: a policy function of the owner reports
# what mandant.current_tenant() says there (a NOTICE that Citus relays).
setup coordinator citus_owner <<-'EOF'
	CREATE FUNCTION app.spy() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
	BEGIN
	    RAISE NOTICE 'spy: tenant=%', coalesce(mandant.current_tenant()::text, 'none');
	    RETURN false;
	END $$;
	CREATE POLICY z_spy ON app.notes FOR SELECT USING (app.spy());
EOF
run coordinator citus_admin <<-EOF || true
	BEGIN;
	SELECT count(*) FROM mandant.export_tenant_stream('$acme');
	COMMIT;
EOF
spied=$(grep -o 'spy: tenant=[^ ]*' "$lib_work/err" | sort -u | tr '\n' ' ')
if [ "$spied" = "spy: tenant=none " ]; then
	ok 0 "the owner's code on the shards sees no tenant context during an export"
else
	ok 1 "the owner's code on the shards sees no tenant context during an export"
	echo "# expected: spy: tenant=none"
	echo "# got: $spied"
fi
setup coordinator citus_owner <<-'EOF'
	DROP POLICY z_spy ON app.notes;
EOF
fails "a restrictive policy on a distributed table is refused (Citus makes it permissive on the shards)" \
	0A000 coordinator citus_owner <<-'EOF'
	CREATE POLICY narrow ON app.notes AS RESTRICTIVE FOR SELECT USING (body <> 'hidden');
EOF
is "tenancy_lint reports a restrictive policy made before create_distributed_table" \
	"error policy_restrictive_on_citus" coordinator citus_owner <<-'EOF'
	CREATE TABLE app.soft (tenant_id uuid NOT NULL, id int, gone boolean, PRIMARY KEY (tenant_id, id));
	SELECT mandant.enable_tenancy('app.soft');
	CREATE POLICY live ON app.soft AS RESTRICTIVE FOR SELECT USING (NOT gone);
	SELECT create_distributed_table('app.soft', 'tenant_id');
	SELECT severity || ' ' || code FROM mandant.tenancy_lint() WHERE object LIKE 'app.soft%' AND code LIKE 'policy_restrictive%';
EOF
setup coordinator citus_owner <<-'EOF'
	DROP TABLE app.soft;
EOF
fails "citus_setup() on a worker is refused" 55000 worker1 postgres <<-'EOF'
	SELECT mandant.citus_setup();
EOF
fails "run_command_on_workers is a superuser's after citus_setup" 42501 coordinator citus_app <<-'EOF'
	SELECT * FROM run_command_on_workers('SELECT current_user');
EOF

# The tenant's rows come out of every node, read as the tables' owner.
is "export_tenant_stream carries the tenant's rows of the distributed tables" "3 app.notes" coordinator citus_admin <<-EOF
	BEGIN;
	SELECT count(*) || ' ' || min(line::jsonb ->> 'table')
	FROM mandant.export_tenant_stream('$acme') c, regexp_split_to_table(c, E'\\n') line
	WHERE line::jsonb ->> 'table' = 'app.notes';
	COMMIT;
EOF
is "export_tenant carries them too" "3" coordinator citus_admin <<-EOF
	BEGIN;
	SELECT jsonb_array_length(mandant.export_tenant('$acme') -> 'tables' -> 'app.notes');
	COMMIT;
EOF
for f in export_tenant_stream export_tenant; do
	fails "$f outside a transaction block is refused, not answered without rows" 25P01 coordinator citus_admin <<-EOF
		SELECT mandant.$f('$acme');
	EOF
done

# Tenant tables of two owners: one operation would touch colocated shards
# as two roles, which Citus refuses; mandant says so first.
setup coordinator postgres <<-'EOF'
	CREATE ROLE citus_owner2 LOGIN;
	CREATE SCHEMA app2 AUTHORIZATION citus_owner2;
EOF
setup coordinator citus_owner2 <<-'EOF'
	CREATE TABLE app2.extra (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
	SELECT mandant.enable_tenancy('app2.extra');
	SELECT create_distributed_table('app2.extra', 'tenant_id');
EOF
fails "an export over tables of two owners is refused with a clear error" 0A000 coordinator citus_admin <<-EOF
	BEGIN;
	SELECT count(*) FROM mandant.export_tenant_stream('$acme');
EOF
setup coordinator postgres <<-'EOF'
	DROP TABLE app2.extra;
	DROP SCHEMA app2;
	DROP ROLE citus_owner2;
EOF

# delete_tenant: nothing of globex stays on any node (the tombstone aside),
# having been there before.  globex writes through every trigger first.
setup coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_state_machine('app.tasks', 'citus_task');
EOF
run coordinator citus_app <<-EOF || true
	BEGIN;
	SELECT mandant.set_tenant('$globex');
	SELECT mandant.set_scopes('{read,write}');
	INSERT INTO app.tasks (title) VALUES ('g-task');
	UPDATE app.tasks SET status = 'doing' WHERE title = 'g-task';
	SELECT mandant.config_set('citus', 'colour', '"blue"', 'test');
	COMMIT;
EOF
before=""
for n in $workers; do
	before="$before $n=$(rows_of "$globex" | count "$n" postgres)"
done
if run coordinator citus_admin <<-EOF
	SELECT mandant.delete_tenant('$globex', 'globex');
EOF
then
	after=""
	for n in $nodes; do
		after="$after $n=$(rows_of "$globex" | count "$n" postgres)"
	done
	expected=" coordinator=0 worker1=0 worker2=0"
	case "$before" in
	*=error* | " worker1=0 worker2=0") held_before=no ;;
	*) held_before=yes ;;
	esac
	if [ "$after" = "$expected" ] && [ "$held_before" = yes ]; then
		ok 0 "delete_tenant leaves nothing of the tenant on any node"
	else
		ok 1 "delete_tenant leaves nothing of the tenant on any node"
		echo "# expected: rows on the workers before, none after:$expected"
		echo "# got: before:$before, after:$after"
	fi
else
	ok 1 "delete_tenant leaves nothing of the tenant on any node"
	got
fi

done_testing
