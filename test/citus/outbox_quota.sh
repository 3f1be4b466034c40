#!/bin/sh
# outbox_quota.sh: the outbox and quotas on a distributed table (issue 16,
# item 5): one outbox event per change, stored beside the tenant's shards,
# with its request id; a plan's limit holds.  (Logged transitions:
# distributed.sh; the audit trail: triggers.sh.)  Runs after
# distributed.sh, on its roles and tenants.
#
# pending: issue 16 item 5 (outbox and usage counters distributed beside the tenant tables, like the audit trail)
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
	CREATE TABLE app.work (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    title     text NOT NULL,
	    status    text,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.work TO citus_app;
	SELECT create_distributed_table('app.work', 'tenant_id');
	SELECT mandant.enable_tenancy('app.work');
EOF

for call in "mandant.enable_outbox('app.work', 'app')" \
	"mandant.enable_quota('app.work', 'records')"; do
	is "${call%%(*} on a distributed table" "ok" coordinator citus_owner <<-EOF
		SELECT $call;
		SELECT 'ok';
	EOF
done

is "outbox: one event per change, with the request id" "1 app.work.created" coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SET LOCAL app.request_id = 'citus-outbox';
	INSERT INTO app.work (title) VALUES ('j2');
	SELECT count(*) || ' ' || min(topic) FROM mandant.outbox WHERE headers ->> 'requestId' = 'citus-outbox';
	COMMIT;
EOF
fails "quota: an insert past the plan's 5 records is refused" MD030 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO app.work (title) VALUES ('q1'), ('q2'), ('q3'), ('q4'), ('q5');
EOF
done_testing
