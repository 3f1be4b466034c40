#!/bin/sh
# triggers.sh: audit, outbox and quotas on a distributed table (issue 16,
# item 5): one event per change, stored beside the tenant's shards, named
# by the logical table, with actor and request id; the tenant's audit
# chain verifies; delete_tenant erases them on every node.  (Logged
# transitions work: distributed.sh.)  Runs after distributed.sh, on its
# roles and tenants.
#
# pending: issue 16 item 5 (audit events, outbox and usage distributed beside the tenant tables, like the transition log)
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
	    status    text,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.jobs TO citus_app;
	SELECT create_distributed_table('app.jobs', 'tenant_id');
	SELECT mandant.enable_tenancy('app.jobs');
EOF

for call in "mandant.enable_audit('app.jobs', 'jobs')" "mandant.enable_outbox('app.jobs', 'app')" \
	"mandant.enable_quota('app.jobs', 'records')"; do
	is "${call%%(*} on a distributed table" "ok" coordinator citus_owner <<-EOF
		SELECT $call;
		SELECT 'ok';
	EOF
done

is "audit: one event per change, named by the logical table, with actor and request id" \
	"2 app.jobs true true" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.set_user('$ada');
	SET LOCAL app.request_id = 'citus-audit';
	INSERT INTO app.jobs (title) VALUES ('j1');
	UPDATE app.jobs SET title = 'j1b' WHERE title = 'j1';
	SELECT count(*) || ' ' || string_agg(DISTINCT entity_type, ',') || ' ' ||
	       bool_and(actor_user_id = '$ada') || ' ' || bool_and(request_id = 'citus-audit')
	FROM mandant.audit_event WHERE request_id = 'citus-audit';
	COMMIT;
EOF
is "audit: the tenant's chain of app.jobs events verifies after audit_seal" "true true" \
	coordinator citus_admin <<-EOF
	SELECT mandant.audit_seal();
	SELECT ok || ' ' || EXISTS (SELECT FROM mandant.audit_events('$acme', entity_type => 'app.jobs'))
	FROM mandant.audit_verify('$acme');
EOF
is "outbox: one event per change, with the request id" "1 app.job.created" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-outbox';
	INSERT INTO app.jobs (title) VALUES ('j2');
	SELECT count(*) || ' ' || min(topic) FROM mandant.outbox WHERE headers ->> 'requestId' = 'citus-outbox';
	COMMIT;
EOF
fails "quota: an insert past the plan's 5 records is refused" MD030 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO app.jobs (title) VALUES ('q1'), ('q2'), ('q3'), ('q4'), ('q5');
EOF
done_testing
