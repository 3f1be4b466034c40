#!/bin/sh
# migrate.sh: an installation that adds Citus later (README, "Scale out").
# Its tenant table was registered, with mandant's key to mandant.tenant,
# and holds rows before Citus is installed; then citus_setup() and
# create_distributed_table().  The registry must follow the table, so that
# delete_tenant reaches its rows on every node; a table that Citus
# re-creates (alter_distributed_table) is refused by delete_tenant until
# enable_tenancy registers it again.  Works in a database of its own.
. "$(dirname "$0")/lib.sh"

main_db=$db
db="${main_db}_migrate"
for n in $nodes; do
	db=$main_db
	setup "$n" postgres <<-EOF
		SET client_min_messages = warning;
		DROP DATABASE IF EXISTS ${main_db}_migrate WITH (FORCE);
		CREATE DATABASE ${main_db}_migrate;
		DO \$\$
		BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mig_owner') THEN CREATE ROLE mig_owner LOGIN; END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mig_app') THEN CREATE ROLE mig_app LOGIN; END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mig_admin') THEN CREATE ROLE mig_admin LOGIN; END IF;
		END
		\$\$;
	EOF
	db="${main_db}_migrate"
done
for n in $workers; do
	setup "$n" postgres <<-'EOF'
		SET client_min_messages = warning;
		CREATE EXTENSION citus;
		CREATE EXTENSION mandant CASCADE;
		GRANT mandant_service TO mig_app;
		GRANT mandant_admin TO mig_admin;
	EOF
done

# Before Citus: one tenant table with mandant's key, rows of two tenants.
setup coordinator postgres <<-'EOF'
	SET client_min_messages = warning;
	CREATE EXTENSION mandant CASCADE;
	GRANT mandant_service TO mig_app;
	GRANT mandant_admin TO mig_admin;
	CREATE SCHEMA app AUTHORIZATION mig_owner;
	GRANT USAGE ON SCHEMA app TO mig_app;
EOF
acme=$(value coordinator mig_admin <<-'EOF'
	SELECT mandant.create_tenant('acme', 'Acme', 'it@acme.example');
EOF
)
globex=$(value coordinator mig_admin <<-'EOF'
	SELECT mandant.create_tenant('globex', 'Globex', 'it@globex.example');
EOF
)
is "before Citus: enable_tenancy adds mandant's key to mandant.tenant" "1" coordinator mig_owner <<-'EOF'
	CREATE TABLE app.legacy (tenant_id uuid NOT NULL, id int NOT NULL, body text,
	                         PRIMARY KEY (tenant_id, id));
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.legacy TO mig_app;
	SELECT mandant.enable_tenancy('app.legacy');
	SELECT count(*) FROM pg_constraint
	WHERE conrelid = 'app.legacy'::regclass AND confrelid = 'mandant.tenant'::regclass;
EOF
# A second table, bound to a state machine before Citus.
setup coordinator mig_owner <<-'EOF'
	CREATE TABLE app.jobs (tenant_id uuid NOT NULL, id int NOT NULL, status text, PRIMARY KEY (tenant_id, id));
	GRANT SELECT, INSERT, UPDATE ON app.jobs TO mig_app;
	SELECT mandant.enable_tenancy('app.jobs');
	SELECT mandant.create_state_machine('mig_job', initial_states => '{open}', states => '{open,done}');
	SELECT mandant.add_transition('mig_job', 'open', 'done');
	SELECT mandant.enable_state_machine('app.jobs', 'mig_job');
EOF
setup coordinator postgres <<-EOF
	INSERT INTO app.legacy VALUES ('$acme', 1, 'a1'), ('$acme', 2, 'a2'), ('$globex', 1, 'g1');
	INSERT INTO mandant.state_transition_log (tenant_id, occurred_at, machine, entity_type, from_state, to_state)
	VALUES ('$globex', now(), 'm', 'app.legacy', 'open', 'done');
EOF

# Citus arrives: the nodes, citus_setup, then the table is distributed by a
# superuser (create_distributed_table copies its rows with COPY, which
# Citus refuses under the table's forced row level security).
set -- $MANDANT_CITUS_WORKERS
setup coordinator postgres <<-EOF
	SET client_min_messages = warning;
	CREATE EXTENSION citus;
	SELECT citus_set_coordinator_host('$sock', $port_coordinator);
	SELECT citus_add_node('$sock', $1);
	SELECT citus_add_node('$sock', $2);
EOF
set --
is "citus_setup drops mandant's key; distributed, the table stays registered" "0 distributed 1" \
	coordinator postgres <<-'EOF'
	SET client_min_messages = warning;
	SELECT mandant.citus_setup();
	SELECT create_distributed_table('app.legacy', 'tenant_id');
	SELECT truncate_local_data_after_distributing_table('app.legacy');
	SELECT (SELECT count(*) FROM pg_constraint
	        WHERE conrelid = 'app.legacy'::regclass AND confrelid = 'mandant.tenant'::regclass) || ' ' ||
	       (SELECT CASE partmethod WHEN 'h' THEN 'distributed' ELSE partmethod::text END
	        FROM pg_dist_partition WHERE logicalrelid = 'app.legacy'::regclass) || ' ' ||
	       (SELECT count(*) FROM mandant.tenant_table WHERE relid = 'app.legacy'::regclass);
EOF
is "the transition logged before Citus is in the shards, and no longer in the coordinator's own relation" "1 0" \
	coordinator postgres <<-EOF
	SELECT (SELECT count(*) FROM mandant.state_transition_log WHERE tenant_id = '$globex') || ' ' ||
	       pg_relation_size('mandant.state_transition_log');
EOF
# README: Citus distributes no table with triggers; unbind, distribute, bind again.
fails "a table bound to a state machine is not distributed as it is" XX000 coordinator postgres <<-'EOF'
	SELECT create_distributed_table('app.jobs', 'tenant_id');
EOF
setup coordinator mig_owner <<-'EOF'
	SELECT mandant.disable_state_machine('app.jobs');
	SELECT create_distributed_table('app.jobs', 'tenant_id');
	SELECT mandant.enable_state_machine('app.jobs', 'mig_job');
EOF
is "unbound, distributed and bound again, its transitions are checked and logged on the shards" "1 app.jobs" \
	coordinator mig_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	INSERT INTO app.jobs VALUES ('$acme', 1, 'open');
	UPDATE app.jobs SET status = 'done' WHERE id = 1;
	SELECT count(*) || ' ' || min(entity_type) FROM mandant.state_transition_log WHERE to_state = 'done';
	COMMIT;
EOF
is "the tenant sees its rows on the shards" "2" coordinator mig_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) FROM app.legacy;
	COMMIT;
EOF
is "tenancy_lint finds nothing wrong" "0" coordinator mig_owner <<-'EOF'
	SELECT count(*) FROM mandant.tenancy_lint() WHERE severity = 'error';
EOF

# Citus re-creates the table when it changes its colocation: the policy
# goes with it, the registry row does not.
is "alter_distributed_table: tenancy_lint reports the table the registry lost" "policy_unregistered app.legacy" \
	coordinator postgres <<-'EOF'
	SET client_min_messages = warning;
	SELECT alter_distributed_table('app.legacy', colocate_with => 'none');
	SELECT code || ' ' || object FROM mandant.tenancy_lint() WHERE severity = 'error';
EOF
is "the re-created table still holds the tenant to its rows" "2" coordinator mig_app <<-EOF
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT count(*) FROM app.legacy;
	COMMIT;
EOF
fails "delete_tenant refuses while a tenant table is not registered" 55000 coordinator mig_admin <<-EOF
	SELECT mandant.delete_tenant('$globex', 'globex');
EOF
fails "export_tenant refuses too" 55000 coordinator mig_admin <<-EOF
	BEGIN;
	SELECT mandant.export_tenant('$globex');
EOF
setup coordinator mig_owner <<-'EOF'
	SELECT mandant.enable_tenancy('app.legacy');
EOF
# The erasure runs as the tables' owner, held to the log's policy: an owner
# that bypasses row level security is refused, and nothing is deleted.
setup coordinator postgres <<-'EOF'
	ALTER ROLE mig_owner BYPASSRLS;
EOF
fails "delete_tenant refuses to erase history as an owner with BYPASSRLS" 0A000 coordinator mig_admin <<-EOF
	SELECT mandant.delete_tenant('$globex', 'globex');
EOF
is "and left the tenant's rows in place" "1" coordinator postgres <<-EOF
	ALTER ROLE mig_owner NOBYPASSRLS;
	SELECT count(*) FROM app.legacy WHERE tenant_id = '$globex';
EOF
is "enable_tenancy registers it again, and delete_tenant goes through" "app.legacy" coordinator mig_admin <<-EOF
	SELECT k FROM jsonb_object_keys(mandant.delete_tenant('$globex', 'globex')) k WHERE k LIKE 'app.%';
EOF
is "delete_tenant left the other tenant's rows and none of its own, its transitions included" "0 2 0" \
	coordinator postgres <<-EOF
	SELECT (SELECT count(*) FROM app.legacy WHERE tenant_id = '$globex') || ' ' ||
	       (SELECT count(*) FROM app.legacy WHERE tenant_id = '$acme') || ' ' ||
	       (SELECT count(*) FROM mandant.state_transition_log WHERE tenant_id = '$globex');
EOF

# With no tenant table left, delete_tenant touches no shard as an owner and
# erases the tenant's transitions as mandant, under an erase envelope of
# mandant's own role (the workers' guard takes nothing less).
is "disable_tenancy on distributed tables (the default was on the coordinator alone)" "none 0" \
	coordinator mig_owner <<-'EOF'
	SELECT mandant.disable_tenancy('app.legacy');
	SELECT mandant.disable_tenancy('app.jobs');
	SELECT coalesce(mandant.tenant_column_default('app.legacy', 'tenant_id'), 'none') || ' ' ||
	       (SELECT count(*) FROM mandant.tenant_table);
EOF
is "delete_tenant without tenant tables erases the tenant's transition as mandant" "1" coordinator mig_admin <<-EOF
	SELECT mandant.delete_tenant('$acme', 'acme') ->> 'mandant.state_transition_log';
EOF
is "and none of them is left on any node" "0" coordinator postgres <<-EOF
	SELECT count(*) FROM mandant.state_transition_log WHERE tenant_id = '$acme';
EOF

db=$main_db
setup coordinator postgres <<-EOF
	DROP DATABASE ${main_db}_migrate WITH (FORCE);
EOF
for n in $workers; do
	setup "$n" postgres <<-EOF
		DROP DATABASE ${main_db}_migrate WITH (FORCE);
	EOF
done

done_testing
