#!/bin/sh
# quota.sh: quotas on a distributed table (issue 16, item 5): a plan's
# limit holds.  (The outbox: outbox.sh; logged transitions:
# distributed.sh; the audit trail: triggers.sh.)  Runs after
# distributed.sh, on its roles and tenants.
#
# pending: issue 16 item 5 (usage counters kept beside the tenant tables, limits computed on the workers)
. "$(dirname "$0")/lib.sh"

acme=$(value coordinator postgres <<-'EOF'
	SELECT id FROM mandant.tenant WHERE slug = 'acme';
EOF
)
setup coordinator citus_owner <<-'EOF'
	CREATE TABLE app.quota_work (
	    tenant_id uuid NOT NULL,
	    id        uuid NOT NULL DEFAULT gen_random_uuid(),
	    title     text NOT NULL,
	    status    text,
	    PRIMARY KEY (tenant_id, id)
	);
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.quota_work TO citus_app;
	SELECT create_distributed_table('app.quota_work', 'tenant_id');
	SELECT mandant.enable_tenancy('app.quota_work');
EOF

is "mandant.enable_quota on a distributed table" "ok" coordinator citus_owner <<-EOF
	SELECT mandant.enable_quota('app.quota_work', 'records');
	SELECT 'ok';
EOF
fails "quota: an insert past the plan's 5 records is refused" MD030 coordinator citus_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO app.quota_work (title) VALUES ('q1'), ('q2'), ('q3'), ('q4'), ('q5');
EOF
done_testing
