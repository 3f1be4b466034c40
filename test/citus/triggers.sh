#!/bin/sh
# triggers.sh: the audit trail of a distributed table (issue 16, item 5).
# One event per change, stored in the shard of mandant.audit_event beside
# the tenant's shard, named by the logical table, with actor and request
# id; application events reach the same shard, held to the writer's
# context; each node seals its shards, and the tenant's chain verifies
# (and a changed event is found); delete_tenant erases the trail on every
# node.  (Logged transitions: distributed.sh; the outbox: outbox.sh;
# quotas: quota.sh.)  Runs after distributed.sh, on its roles and tenants.
. "$(dirname "$0")/lib.sh"

acme=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.tenant WHERE slug = 'acme';
EOF
)
ada=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.users WHERE email = 'ada@acme.example';
EOF
)
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.jobs (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    title     text NOT NULL,
	    secret    text,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.jobs TO citus_app, citus_app2;
	SELECT create_distributed_table('app.jobs', 'tenant_id');
	SELECT mandant.enable_tenancy('app.jobs');
EOF

fails "citus_setup refuses a shard replication factor above 1 (each placement would stamp its own)" 55000 \
	coordinator postgres <<-'EOF'
	SET citus.shard_replication_factor = 2;
	SELECT mandant.citus_setup();
EOF

is "enable_audit on a distributed table" "mandant.audit_trigger_on_shards" coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_audit('app.jobs', 'jobs', '{secret}');
	SELECT t.tgfoid::regproc FROM pg_trigger t WHERE t.tgrelid = 'app.jobs'::regclass AND t.tgname = 'mandant_audit';
EOF

is "one event per change, named by the logical table, with actor and request id, without the excluded column" \
	"2 app.jobs true true false" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_user('$ada');
	SET LOCAL app.request_id = 'citus-audit';
	INSERT INTO app.jobs (title, secret) VALUES ('j1', 's3cr3t');
	UPDATE app.jobs SET title = 'j1b', secret = 'other' WHERE title = 'j1';
	SELECT count(*) || ' ' || string_agg(DISTINCT entity_type, ',') || ' ' ||
	       bool_and(actor_user_id = '$ada') || ' ' || bool_and(request_id = 'citus-audit') || ' ' ||
	       bool_or(changes::text LIKE '%s3cr3t%')
	FROM mandant.audit_event WHERE request_id = 'citus-audit';
	COMMIT;
EOF

# on_placement TABLE SQL: the result of SQL (%s: the shard) on the
# placement of the shard of TABLE that holds acme.
on_placement() {
	cat <<-EOF
		SELECT r.result FROM run_command_on_placements('$1', \$q\$$2\$q\$) r
		WHERE r.shardid = get_shard_id_for_distribution_column('$1', '$acme');
	EOF
}
is "a request id set in the statement that sets the tenant travels with it" "1" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT set_config('app.request_id', 'citus-reentry', true), mandant.set_tenant('$acme');
	INSERT INTO app.jobs (title) VALUES ('re');
	SELECT count(*) FROM mandant.audit_event WHERE request_id = 'citus-reentry';
	ROLLBACK;
EOF
is "a request id survives the rollback of the savepoint whose statement first took it to the workers" "citus-savepoint" \
	coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-savepoint';
	SAVEPOINT s;
	INSERT INTO app.jobs (title) VALUES ('sp-gone');
	ROLLBACK TO s;
	INSERT INTO app.jobs (title) VALUES ('sp-kept');
	SELECT coalesce(max(request_id), 'none') FROM mandant.audit_event WHERE changes ->> 'title' = 'sp-kept';
	ROLLBACK;
EOF
is "the events are in the shard of mandant.audit_event on the node of the tenant's shard" "true 2" \
	coordinator postgres <<-EOF
	SELECT ((SELECT nodeport FROM pg_dist_shard_placement
	         WHERE shardid = get_shard_id_for_distribution_column('mandant.audit_event', '$acme')) =
	        (SELECT nodeport FROM pg_dist_shard_placement
	         WHERE shardid = get_shard_id_for_distribution_column('app.jobs', '$acme'))) || ' ' ||
	       ($(on_placement mandant.audit_event "SELECT count(*) FROM %s WHERE request_id = 'citus-audit'" | tr -d ';'));
EOF

is "audit_log in the transaction of a write reaches the tenant's shard as its writer" "1 true citus-applog" \
	coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_user('$ada');
	SET LOCAL app.request_id = 'citus-applog';
	INSERT INTO app.jobs (title) VALUES ('j2');
	SELECT mandant.audit_log('jobs', 'approve', 'app.jobs', 'j2', '{"by": "ada"}') > 0;
	SELECT count(*) || ' ' || bool_and(actor_user_id = '$ada') || ' ' || min(request_id)
	FROM mandant.audit_event WHERE request_id = 'citus-applog' AND action = 'approve';
	COMMIT;
EOF

# It goes as its writer, numbered where it is stored; no policy lets that
# role read it back, so audit_log() cannot tell its id.
is "a trusted backend writes a platform event" "true" coordinator citus_app <<-'EOF'
	SELECT (mandant.audit_log('ops', 'deploy', 'service', 'citus-gw', NULL) IS NULL)::text;
EOF
is "which is in the platform's trail" "1" coordinator citus_admin <<-'EOF'
	SELECT count(*) FROM mandant.audit_events(NULL, entity_id => 'citus-gw');
EOF

# citus_setup grants INSERT on mandant.audit_event for that: a direct
# INSERT is held to what audit_log would write.
is "a direct INSERT gets the context's actor, request id and time, the node's transaction id and an id of its own" \
	"true citus-direct true true true" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_user('$ada');
	SET LOCAL app.request_id = 'citus-direct';
	INSERT INTO mandant.audit_event (id, tenant_id, occurred_at, txid, category, action, entity_type,
	                                 actor_user_id, request_id, hash)
	VALUES (424242, '$acme', '2000-01-01', 1, 'jobs', 'note', 'app.jobs', gen_random_uuid(), 'forged', '\x00');
	SELECT (actor_user_id = '$ada') || ' ' || request_id || ' ' || (occurred_at > '2020-01-01') || ' ' ||
	       (txid <> 1) || ' ' || (id <> 424242)
	FROM mandant.audit_event e WHERE request_id = 'citus-direct';
	COMMIT;
EOF
initech=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.tenant WHERE slug = 'initech';
EOF
)
fails "a direct INSERT for another tenant is refused" 42501 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO mandant.audit_event (id, tenant_id, occurred_at, txid, category, action, entity_type, hash)
	VALUES (424243, '$initech', now(), 1, 'jobs', 'note', 'app.jobs', '\x00');
EOF
fails "a direct INSERT of a data change (a reserved action) is refused" 22023 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO mandant.audit_event (id, tenant_id, occurred_at, txid, category, action, entity_type, hash)
	VALUES (424244, '$acme', now(), 1, 'jobs', 'delete', 'app.jobs', '\x00');
EOF
fails "a trusted backend without a tenant writes platform events only" 42501 coordinator citus_app <<-EOF
	INSERT INTO mandant.audit_event (id, tenant_id, occurred_at, txid, category, action, entity_type, hash)
	VALUES (424245, '$acme', now(), 1, 'jobs', 'note', 'app.jobs', '\x00');
EOF
fails "any other role without a tenant writes none" MD001 coordinator citus_owner <<-EOF
	INSERT INTO mandant.audit_event (id, tenant_id, occurred_at, txid, category, action, entity_type, hash)
	VALUES (424245, '$acme', now(), 1, 'jobs', 'note', 'app.jobs', '\x00');
EOF
for n in $workers; do
	fails "nor in a session on $n (no envelope)" MD001 "$n" citus_owner <<-EOF
		INSERT INTO mandant.audit_event (id, tenant_id, occurred_at, txid, category, action, entity_type, hash)
		VALUES (424246, '$acme', now(), 1, 'jobs', 'note', 'app.jobs', '\x00');
	EOF
done

fails "enable_audit refuses a table that stays on the coordinator" 0A000 coordinator citus_owner <<-'EOF'
	CREATE TABLE app.local_jobs (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
	SELECT mandant.enable_tenancy('app.local_jobs');
	SELECT mandant.enable_audit('app.local_jobs');
EOF
fails "and a table distributed by another column than its tenant's" 0A000 coordinator citus_owner <<-'EOF'
	CREATE TABLE app.by_id (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (id, tenant_id));
	SELECT create_distributed_table('app.by_id', 'id');
	SELECT mandant.enable_tenancy('app.by_id');
	SELECT mandant.enable_audit('app.by_id');
EOF

# Citus hands a propagated SET's whole query string to every worker
# connection of the transaction, also other roles' (mandant's own
# superuser operations, SECURITY DEFINER owners).
fails "turning SET propagation on is refused" 42501 coordinator citus_app <<-'EOF'
	BEGIN;
	SET LOCAL citus.propagate_set_commands = 'local';
EOF
fails "and with it turned on by set_config, a SET (and the SQL beside it) is not handed over" 42501 \
	coordinator citus_app <<-'EOF'
	BEGIN;
	SELECT set_config('citus.propagate_set_commands', 'local', true);
	SET LOCAL "SEARCH_PATH" = app, pg_catalog \; SELECT 1;
EOF
# Nor beside a SET of mandant's envelope, which any session may empty: a
# role with nothing but LOGIN would otherwise run its SQL on the workers as
# whoever opens a connection there later in the transaction (here the
# extension's owner, a superuser, for api_sign_up).
setup coordinator postgres <<-'EOF'
	DROP ROLE IF EXISTS citus_login_only;
	CREATE ROLE citus_login_only LOGIN;
EOF
fails "nor beside a SET of mandant.context, for a role with nothing but LOGIN" 42501 \
	coordinator citus_login_only <<-'EOF'
	BEGIN;
	SELECT set_config('citus.propagate_set_commands', 'local', true);
	SET LOCAL mandant.context = '' \; DO $$BEGIN IF current_setting('is_superuser') = 'on' THEN RAISE EXCEPTION 'ran as a superuser on a worker'; END IF; END$$;
	SELECT mandant.api_sign_up('login-only-probe', 'Probe', 'probe@login-only.example', 'correct horse battery staple 6', 'probe');
EOF
is "without propagation it is the session's own business" "app" coordinator citus_app <<-'EOF'
	BEGIN;
	SET LOCAL search_path = app, pg_catalog;
	SELECT (current_schemas(false))[1];
	COMMIT;
EOF
fails "and a table whose tenant column has another name (the workers would not know it)" 0A000 \
	coordinator citus_owner <<-'EOF'
	CREATE TABLE app.by_org (org_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (org_id, id));
	SELECT mandant.enable_tenancy('app.by_org', 'org_id');
	SELECT create_distributed_table('app.by_org', 'org_id');
	SELECT mandant.enable_audit('app.by_org');
EOF

# A request id set after set_tenant travels in a new envelope, signed for
# the role that set the context only: a SECURITY DEFINER function of the
# tables' owner that sets one gets no envelope of its caller's context.
setup coordinator citus_owner <<-'EOF'
	CREATE FUNCTION app.peek() RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
	AS $$
	DECLARE n bigint;
	BEGIN
		PERFORM set_config('app.request_id', 'peek', true);
		SELECT count(*) INTO n FROM app.jobs;
		RETURN n;
	END
	$$;
	GRANT EXECUTE ON FUNCTION app.peek() TO citus_app;
EOF
got_peek=$(count coordinator citus_app <<-EOF
	SET client_min_messages = error;
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) FROM app.jobs;
	SELECT app.peek();
	COMMIT;
EOF
)
if [ "$got_peek" = error ] || [ "$got_peek" = 0 ]; then
	ok 0 "the owner's SECURITY DEFINER function that changes the request id sees none of the caller's tenant's rows"
else
	ok 1 "the owner's SECURITY DEFINER function that changes the request id sees none of the caller's tenant's rows"
	echo "# expected: an error, or 0 rows"
	echo "# got: $got_peek"
fi

is "audit_seal seals on every node, and the tenant's chain verifies" "true true true" coordinator citus_admin <<-EOF
	SELECT mandant.audit_seal() >= 4;
	SELECT ok || ' ' || EXISTS (SELECT FROM mandant.audit_events('$acme', entity_type => 'app.jobs')) || ' ' ||
	       (checked >= 4)
	FROM mandant.audit_verify('$acme');
EOF
is "audit_verify_since_checkpoint records a checkpoint" "true true" coordinator citus_admin <<-EOF
	SELECT ok || ' ' || (to_seq >= 4) FROM mandant.audit_verify_since_checkpoint('$acme');
EOF

# A superuser of the worker that holds acme's events changes one of them
# in its shard: the chain no longer verifies, until it is put back.
node=worker1
port=$(value coordinator postgres <<-EOF
	SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = get_shard_id_for_distribution_column('mandant.audit_event', '$acme');
EOF
)
[ "$port" = "$port_worker2" ] && node=worker2
setup "$node" postgres <<-EOF
	SET citus.enable_manual_changes_to_shards = on;
	SELECT get_shard_id_for_distribution_column('mandant.audit_event', '$acme') AS id \gset
	ALTER TABLE mandant.audit_event_:id DISABLE TRIGGER append_only_:id;
	UPDATE mandant.audit_event_:id SET changes = jsonb_set(changes, '{title}', '"forged"')
	WHERE request_id = 'citus-audit' AND action = 'insert';
EOF
is "an event changed in its shard on a worker is found" "false" coordinator citus_admin <<-EOF
	SELECT ok::text FROM mandant.audit_verify('$acme');
EOF
setup "$node" postgres <<-EOF
	SET citus.enable_manual_changes_to_shards = on;
	SELECT get_shard_id_for_distribution_column('mandant.audit_event', '$acme') AS id \gset
	UPDATE mandant.audit_event_:id SET changes = jsonb_set(changes, '{title}', '"j1"')
	WHERE request_id = 'citus-audit' AND action = 'insert';
	ALTER TABLE mandant.audit_event_:id ENABLE ALWAYS TRIGGER append_only_:id;
EOF
is "and put back, the chain verifies again" "true" coordinator citus_admin <<-EOF
	SELECT ok::text FROM mandant.audit_verify('$acme');
EOF

# delete_tenant erases a tenant's events, seals and checkpoints on every
# node, and records the deletion as a platform event.
hooli=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('hooli', 'Hooli', 'it@hooli.example');
EOF
)
setup coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$hooli');
	INSERT INTO app.jobs (title) VALUES ('h1'), ('h2');
	SELECT mandant.audit_log('jobs', 'approve', 'app.jobs', 'h1', NULL);
	COMMIT;
EOF
setup coordinator citus_admin <<-EOF
	SELECT mandant.audit_seal();
	SELECT mandant.audit_verify_since_checkpoint('$hooli');
EOF
trail_of() {
	cat <<-EOF
		SELECT sum(r.result::bigint) FROM run_command_on_placements('$1',
		    'SELECT count(*) FROM %s WHERE tenant_id = ''$2''') r;
	EOF
}
held() {
	echo "SELECT ($(trail_of mandant.audit_event "$1" | tr -d ';')) || ' ' ||
	             ($(trail_of mandant.audit_seal "$1" | tr -d ';')) || ' ' ||
	             ($(trail_of mandant.audit_checkpoint "$1" | tr -d ';'));"
}
is "before delete_tenant, the nodes hold the tenant's events, seals and a checkpoint" "3 3 1" coordinator postgres <<-EOF
	$(held "$hooli")
EOF
# The tables' owner points its search_path at a type of its own named
# uuid, whose check would run inside the statements that Citus deparses
# for the erasure ('...'::uuid), with the erase envelope's rights, and
# turns standard_conforming_strings off, under which a backslash in the
# request id would end the literal Citus writes for it: while that
# envelope is in force the workers resolve names in pg_catalog and read
# literals as standard (before, the check ran there, and could read and
# forge the tenant's history).
setup coordinator citus_owner <<-'EOF'
	CREATE FUNCTION app.no_owner_code_under_erase() RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		IF mandant.erasing_history_of() IS NOT NULL THEN
			RAISE EXCEPTION 'the owner''s code ran under the erase envelope';
		END IF;
		RETURN true;
	END
	$$;
	CREATE DOMAIN app.uuid AS pg_catalog.uuid CHECK (app.no_owner_code_under_erase());
EOF
setup coordinator postgres <<-EOF
	ALTER ROLE citus_owner IN DATABASE $db SET search_path = app, pg_catalog;
	ALTER ROLE citus_owner IN DATABASE $db SET standard_conforming_strings = off;
EOF
# The owner's deletion of the two rows is recorded on the shards, then
# erased with the rest.
is "delete_tenant counts what it erased" "5 3 1" coordinator citus_admin <<-EOF
	BEGIN;
	SET LOCAL app.request_id = 'erase\\'' || ''x';
	SELECT c ->> 'mandant.audit_event' || ' ' || (c ->> 'mandant.audit_seal') || ' ' || (c ->> 'mandant.audit_checkpoint')
	FROM mandant.delete_tenant('$hooli', 'hooli') c;
	COMMIT;
EOF
is "and no node holds any of them" "0 0 0" coordinator postgres <<-EOF
	$(held "$hooli")
EOF
setup coordinator postgres <<-EOF
	ALTER ROLE citus_owner IN DATABASE $db RESET search_path;
	ALTER ROLE citus_owner IN DATABASE $db RESET standard_conforming_strings;
	DROP DOMAIN app.uuid;
	DROP FUNCTION app.no_owner_code_under_erase();
EOF
# Outside a transaction block mandant hands Citus those settings through a
# DO block, which runs them on the coordinator too: inside delete_tenant's
# definer there, they are put back as they were, not to the session's
# defaults, where a function of another role (here one that a superuser
# must never run) could be found first.
pied=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('pied', 'Pied', 'it@pied.example');
EOF
)
setup coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$pied');
	INSERT INTO app.jobs (title) VALUES ('p1');
	COMMIT;
EOF
setup coordinator postgres <<-EOF
	CREATE SCHEMA shadow AUTHORIZATION citus_owner;
	GRANT USAGE ON SCHEMA shadow TO PUBLIC;
	ALTER ROLE citus_admin IN DATABASE $db SET search_path = shadow, public;
EOF
setup coordinator citus_owner <<-'EOF'
	CREATE FUNCTION shadow.jsonb_build_object(a text, b uuid, c text, d jsonb) RETURNS jsonb
	LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
			RAISE EXCEPTION 'a function of citus_owner ran as a superuser';
		END IF;
		RETURN pg_catalog.jsonb_build_object(a, b, c, d);
	END
	$$;
EOF
is "delete_tenant outside a transaction block runs none of it as a superuser" "t" coordinator citus_admin <<-EOF
	SELECT mandant.delete_tenant('$pied', 'pied') IS NOT NULL;
EOF
setup coordinator postgres <<-EOF
	ALTER ROLE citus_admin IN DATABASE $db RESET search_path;
	DROP SCHEMA shadow CASCADE;
EOF
# Importing events would seal them by another server's transaction ids.
if ! run coordinator postgres <<-EOF && grep -q 'ERROR:  0A000: importing an audit trail is not supported on Citus' "$lib_work/err"
	BEGIN;
	SELECT mandant.op_import_tenant_items('$hooli', 'auditEvent', '[{"id": 1}]');
EOF
then
	ok 0 "importing a tenant's audit events is refused on Citus"
else
	ok 1 "importing a tenant's audit events is refused on Citus"
	got
fi
is "the deletion is a platform event, with the request id as it was set" "1 erase\\' || 'x" \
	coordinator citus_admin <<-EOF
	SELECT count(*) || ' ' || min(request_id)
	FROM mandant.audit_events(NULL, entity_type => 'tenant', entity_id => '$hooli')
	WHERE action = 'tenant.deleted';
EOF
is "the platform's chain verifies" "true" coordinator citus_admin <<-EOF
	SELECT mandant.audit_seal() >= 0;
	SELECT ok::text FROM mandant.audit_verify(NULL);
EOF
# Moving a shard group with mandant's triggers, as README says: the twins
# executable by the tables' owner for the length of the move (the lint
# reports the grant), then the trail goes on on the new node.
twins="mandant.audit_trigger_on_shards(), mandant.outbox_trigger_on_shards(), mandant.state_machine_trigger_on_shards()"
# move_acme: SQL that moves acme's shard group (:src its old port) to the other worker.
move_acme() {
	cat <<-EOF
		SELECT get_shard_id_for_distribution_column('mandant.audit_event', '$acme') AS sid \gset
		SELECT nodeport AS src FROM pg_dist_shard_placement WHERE shardid = :sid \gset
		SELECT citus_move_shard_placement(:sid, '$sock', :src, '$sock',
		       CASE WHEN :src = $port_worker1 THEN $port_worker2 ELSE $port_worker1 END,
		       shard_transfer_mode => 'block_writes');
	EOF
}
fails "a shard move without the grant fails, on the twin's permission" 42501 coordinator postgres <<-EOF
	$(move_acme)
EOF
is "tenancy_lint reports the twins granted to the owner" "3" coordinator postgres <<-EOF
	SELECT run_command_on_all_nodes('GRANT EXECUTE ON FUNCTION $twins TO citus_owner');
	GRANT EXECUTE ON FUNCTION $twins TO citus_owner;
	SELECT count(*) FROM mandant.tenancy_lint() WHERE code = 'citus_twin_executable';
EOF
is "with the grant, the tenant's shards move to the other worker" "true" coordinator postgres <<-EOF
	SELECT mandant.audit_seal();
	$(move_acme)
	SELECT (nodeport <> :src)::text FROM pg_dist_shard_placement WHERE shardid = :sid;
EOF
is "revoked again, the lint is quiet" "0" coordinator postgres <<-EOF
	SELECT run_command_on_all_nodes('REVOKE EXECUTE ON FUNCTION $twins FROM citus_owner');
	REVOKE EXECUTE ON FUNCTION $twins FROM citus_owner;
	SELECT count(*) FROM mandant.tenancy_lint() WHERE code = 'citus_twin_executable';
EOF
is "after the move, a change is recorded on the new node" "1" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-moved';
	INSERT INTO app.jobs (title) VALUES ('moved');
	SELECT count(*) FROM mandant.audit_event WHERE request_id = 'citus-moved';
	COMMIT;
EOF
is "and, sealed there, the tenant's chain verifies" "true" coordinator citus_admin <<-EOF
	SELECT mandant.audit_seal() > 0;
	SELECT ok::text FROM mandant.audit_verify('$acme');
EOF
done_testing
