#!/bin/sh
# outbox.sh: the transactional outbox on a distributed table (issue 16,
# item 5): one event per change, stored in the tenant's shard beside the
# row's and numbered on its node, with actor, request and trace ids; emit()
# reaching the tenant's shard through Citus, held to the writer's context;
# consumers claiming, acknowledging and rejecting across shards in order
# per aggregate; wake-ups from the coordinator; delete_tenant erasing a
# tenant's events on every node.  Runs after distributed.sh, on its roles
# and tenants.
. "$(dirname "$0")/lib.sh"

acme=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.tenant WHERE slug = 'acme';
EOF
)
umbrella=$(value coordinator citus_admin <<-'EOF'
	SELECT mandant.create_tenant('umbrella', 'Umbrella', 'it@umbrella.example');
EOF
)
token=$(value coordinator citus_app <<-'EOF'
	SELECT mandant.login('ada@acme.example', 'correct horse battery staple',
	                     tenant_slug => 'acme') ->> 'accessToken';
EOF
)
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.work (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    title     text NOT NULL,
	    secret    text,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.work TO citus_app;
	SELECT create_distributed_table('app.work', 'tenant_id');
	SELECT mandant.enable_tenancy('app.work');
EOF

is "enable_outbox on a distributed table" "mandant.outbox_trigger_on_shards" coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_outbox('app.work', 'app', exclude_columns => '{secret}');
	SELECT tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'app.work'::regclass AND tgname = 'mandant_outbox';
EOF
fails "enable_outbox on a table kept on the coordinator is refused" 0A000 coordinator citus_owner <<-'EOF'
	CREATE TABLE app.work_local (tenant_id uuid NOT NULL, id int PRIMARY KEY);
	SELECT mandant.enable_tenancy('app.work_local');
	SELECT mandant.enable_outbox('app.work_local', 'app');
EOF

# A twin left executable (a shard move's grant) lets its grantee attach it
# to a table of its own, with arguments no registry vouches for: the
# platform's domain stays out of reach (a superuser plays that owner here).
fails "a twin trigger that names the platform's domain is refused on the shards" 22023 coordinator citus_app <<-EOF
	\! psql -X -q -h "$sock" -p "$port_coordinator" -U postgres -d "$db" -c "SET citus.enable_unsafe_triggers = on" -c "CREATE TABLE app.forged_outbox (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id))" -c "GRANT INSERT ON app.forged_outbox TO citus_app" -c "SELECT create_distributed_table('app.forged_outbox', 'tenant_id')" -c "CREATE TRIGGER zz AFTER INSERT ON app.forged_outbox FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger_on_shards('platform', 'tenant')" >/dev/null
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO app.forged_outbox VALUES ('$acme', 1);
EOF

is "a write publishes one event per row, with the request and trace ids, the excluded column left out" \
	"app.work.created 1 true" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-outbox-1';
	SET LOCAL app.trace_id = 'citus-trace-1';
	INSERT INTO app.work (title, secret) VALUES ('w1', 'hunter2');
	SELECT min(topic) || ' ' || count(*) || ' ' || bool_and(NOT payload ? 'secret' AND payload ->> 'title' = 'w1'
	                                                        AND headers ->> 'traceId' = 'citus-trace-1')
	FROM mandant.outbox WHERE headers ->> 'requestId' = 'citus-outbox-1';
	COMMIT;
EOF

# The node that holds acme's shard of app.work, and the ids of its events.
group=$(value coordinator postgres <<-EOF
	SELECT p.groupid FROM pg_dist_placement p
	WHERE p.shardid = get_shard_id_for_distribution_column('app.work', '$acme');
EOF
)
is "the event is stored beside the row's shard and numbered on its node" "$group" coordinator postgres <<-'EOF'
	SELECT DISTINCT id >> 48 FROM mandant.outbox WHERE headers ->> 'requestId' = 'citus-outbox-1';
EOF

is "an end user's update publishes with its actor; an update of an excluded column publishes nothing" \
	"1 true" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.authenticate('$token');
	SET LOCAL app.request_id = 'citus-outbox-2';
	UPDATE app.work SET title = 'w1 renamed' WHERE title = 'w1';
	UPDATE app.work SET secret = 'hunter3' WHERE title = 'w1 renamed';
	SELECT count(*) || ' ' || bool_and(headers ->> 'actor' = mandant.current_user_id()::text)
	FROM mandant.outbox WHERE headers ->> 'requestId' = 'citus-outbox-2';
	COMMIT;
EOF

is "emit() stores the event in the tenant's shard and returns its id" "billing.invoice.sent citus-outbox-3" \
	coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-outbox-3';
	SELECT mandant.emit('billing.invoice.sent', 'inv-1', '{"total": 12}') AS event \gset
	SELECT topic || ' ' || (headers ->> 'requestId') FROM mandant.outbox WHERE event_id = :'event';
	COMMIT;
EOF
is "an end user's emit() in the tenant works the same" "1" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.authenticate('$token');
	SELECT mandant.emit('billing.invoice.paid', 'inv-1', '{}') AS event \gset
	SELECT count(*) FROM mandant.outbox WHERE event_id = :'event' AND headers ->> 'actor' IS NOT NULL;
	COMMIT;
EOF

# What the guard on the outbox's shards holds a direct INSERT to.
fails "an INSERT into mandant.outbox for another tenant is refused" 42501 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO mandant.outbox (id, event_id, tenant_id, topic, aggregate_type, payload, headers, created_at, available_at)
	VALUES (1, gen_random_uuid(), '$umbrella', 'app.work.created', 'app.work', '{}', '{}', now(), now());
EOF
# An end user whose session is no trusted backend's (citus_owner).
fails "an end user's INSERT of a platform event is refused" 42501 coordinator citus_owner <<-EOF
	BEGIN;
	SELECT mandant.authenticate('$token');
	INSERT INTO mandant.outbox (id, event_id, tenant_id, topic, aggregate_type, payload, headers, created_at, available_at)
	VALUES (1, gen_random_uuid(), '00000000-0000-0000-0000-000000000000', 'platform.tenant.deleted', 'platform.tenant',
	        '{}', '{}', now(), now());
EOF
fails "an end user's INSERT of a reserved topic for its tenant is refused" 42501 coordinator citus_owner <<-EOF
	BEGIN;
	SELECT mandant.authenticate('$token');
	INSERT INTO mandant.outbox (id, event_id, tenant_id, topic, aggregate_type, payload, headers, created_at, available_at)
	VALUES (1, gen_random_uuid(), '$acme', 'platform.tenant.deleted', 'platform.tenant', '{}', '{}', now(), now());
EOF
fails "an INSERT with an invalid topic is refused" 22023 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO mandant.outbox (id, event_id, tenant_id, topic, aggregate_type, payload, headers, created_at, available_at)
	VALUES (1, gen_random_uuid(), '$acme', 'Not A Topic', 'x', '{}', '{}', now(), now());
EOF
is "a direct INSERT keeps the event and nothing else the writer chose" "false false 0 true true citus-outbox-4" \
	coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-outbox-4';
	INSERT INTO mandant.outbox (id, event_id, tenant_id, topic, aggregate_type, aggregate_id, payload, headers,
	                            created_at, available_at, attempts, published_at)
	VALUES (7, '00000000-0000-4000-8000-000000000007', '$acme', 'app.work.forged', 'something.else', 'f-1',
	        '{"x": 1}', '{"actor": "00000000-0000-4000-8000-000000000001", "requestId": "forged"}',
	        now() - interval '1 year', now() - interval '1 year', 99, now())
	RETURNING (id = 7)::text || ' ' || (event_id = '00000000-0000-4000-8000-000000000007')::text || ' ' ||
	          attempts::text || ' ' || (published_at IS NULL)::text || ' ' ||
	          (aggregate_type = 'app.work')::text || ' ' || (headers ->> 'requestId');
	COMMIT;
EOF

# Consumers (citus_app is a mandant_service role) claim across shards.
# The events written so far are published first, each aggregate's in turn.
setup coordinator citus_app <<-'EOF'
	DO $$
	DECLARE
		ids bigint[];
	BEGIN
		LOOP
			SELECT array_agg(id) INTO ids FROM mandant.outbox_claim('drain', 10000);
			EXIT WHEN ids IS NULL;
			PERFORM mandant.outbox_ack(ids);
		END LOOP;
	END
	$$;
EOF
setup coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO app.work (title) VALUES ('order-a');
	UPDATE app.work SET title = 'order-a2' WHERE title = 'order-a';
	COMMIT;
	BEGIN;
	SELECT mandant.set_tenant('$umbrella');
	INSERT INTO app.work (title) VALUES ('order-i');
	COMMIT;
EOF
is "a claim leases the events of both tenants, one per aggregate" "2 app.work.created,app.work.created" \
	coordinator citus_app <<-'EOF'
	SELECT count(DISTINCT tenant_id) || ' ' || string_agg(topic, ',' ORDER BY topic)
	FROM mandant.outbox_claim('c1', 100) WHERE topic LIKE 'app.work.%';
EOF
is "a second consumer gets no leased event, nor the next one of a leased aggregate" "0" \
	coordinator citus_app <<-'EOF'
	SELECT count(*) FROM mandant.outbox_claim('c2', 100);
EOF
# Consumers see events through their claims; the checks read the leases as
# a superuser.
c1=$(value coordinator postgres <<-'EOF'
	SELECT string_agg(id::text, ',') FROM mandant.outbox WHERE locked_by = 'c1' AND published_at IS NULL;
EOF
)
fails "rejecting another consumer's lease is refused" 55000 coordinator citus_app <<-EOF
	SELECT mandant.outbox_nack(${c1%%,*}, 'not mine', 'c2');
EOF
is "acknowledged, the aggregate's next event is claimable" "2 app.work.updated" coordinator citus_app <<-EOF
	SELECT mandant.outbox_ack('{$c1}') AS acked \gset
	SELECT :'acked' || ' ' || string_agg(topic, ',') FROM mandant.outbox_claim('c3', 100);
EOF
c3=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.outbox WHERE locked_by = 'c3' AND published_at IS NULL;
EOF
)
is "a consumer rejects its lease" "rejected" coordinator citus_app <<-EOF
	SELECT mandant.outbox_nack($c3, 'boom', 'c3');
	SELECT 'rejected';
EOF
is "a rejected event backs off, with its error" "boom true" coordinator postgres <<-EOF
	SELECT last_error || ' ' || (available_at > now() AND locked_until IS NULL) FROM mandant.outbox WHERE id = $c3;
EOF
is "replay, stats and purge run across shards" "true true" coordinator citus_app <<-EOF
	SELECT mandant.outbox_replay($c3);
	SELECT ((SELECT pending FROM mandant.outbox_stats()) >= 1) || ' ' || (mandant.outbox_purge('0 seconds') > 0);
EOF
is "a replayed event is pending again" "0 true" coordinator postgres <<-EOF
	SELECT attempts || ' ' || (available_at <= now() AND locked_by IS NULL) FROM mandant.outbox WHERE id = $c3;
EOF

is "a claim dead-letters an unleased event past its attempts instead of leasing it" "0 1" coordinator postgres <<-EOF
	UPDATE mandant.outbox SET attempts = 5, locked_until = NULL, available_at = now() - interval '1 minute'
	WHERE id = $c3;
	SET mandant.outbox_max_attempts = 3;
	SELECT count(*) AS leased FROM mandant.outbox_claim('c9', 10000) WHERE id = $c3 \gset
	SELECT :leased || ' ' || count(*) FROM mandant.outbox WHERE id = $c3 AND dead_at IS NOT NULL;
EOF

# Wake-ups: the events are written on the workers, whose part of a
# transaction Citus may prepare (NOTIFY cannot be prepared); the
# coordinator notifies, also for a write through a partitioned table into
# a partition that publishes (Citus plans it on the partitioned table).
partitioned_tenant_table app.work_parted
setup coordinator citus_owner <<-'EOF'
	SELECT mandant.enable_outbox('app.work_parted_1', 'app');
EOF
for write in "INSERT INTO app.work (title) VALUES ('wake')" \
	"INSERT INTO app.work_parted (tenant_id, id) VALUES ('$acme', 1)"; do
	what="a write on a distributed table ($(echo "$write" | cut -d' ' -f3)) wakes consumers listening on the coordinator"
	if run coordinator citus_app <<-EOF
		LISTEN mandant_outbox;
		SET mandant.outbox_notify = 'commit';
		BEGIN;
		SELECT mandant.set_tenant('$acme');
		$write;
		COMMIT;
		SELECT 1;
	EOF
	then
		# (a failing command of a then-branch would end the file: set -e)
		received=1
		grep -q 'notification "mandant_outbox" received' "$lib_work/out" "$lib_work/err" && received=0
		ok "$received" "$what"
	else
		ok 1 "$what"
		got
	fi
done

is "a tenant reads its own events only" "0" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.authenticate('$token');
	SELECT count(*) FROM mandant.outbox WHERE tenant_id <> '$acme';
	COMMIT;
EOF

# delete_tenant erases umbrella's events on every node and announces the
# deletion on the platform's shard.
setup coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$umbrella');
	INSERT INTO app.work (title) VALUES ('erase me');
	SELECT mandant.emit('billing.invoice.sent', 'inv-9', '{}');
	COMMIT;
EOF
before=0
for n in $workers; do
	before="$before + $(rows_of "$umbrella" | count "$n" postgres)"
done
is "umbrella's rows and events are on the workers before" "t" coordinator postgres <<-EOF
	SELECT ($before) > 0 AND count(*) > 0 FROM mandant.outbox WHERE tenant_id = '$umbrella';
EOF
setup coordinator citus_admin <<-EOF
	SELECT mandant.delete_tenant('$umbrella', 'umbrella');
EOF
after=""
for n in $nodes; do
	after="$after $n=$(rows_of "$umbrella" | count "$n" postgres)"
done
[ "$after" = " coordinator=0 worker1=0 worker2=0" ]
ok $? "delete_tenant leaves none of the tenant's events on any node"
[ "$after" = " coordinator=0 worker1=0 worker2=0" ] || echo "# got:$after"
is "the deletion is announced once, on the platform's shard" "1" coordinator postgres <<-EOF
	SELECT count(*) FROM mandant.outbox
	WHERE topic = 'platform.tenant.deleted' AND aggregate_id = '$umbrella'
	  AND tenant_id = '00000000-0000-0000-0000-000000000000';
EOF

done_testing
