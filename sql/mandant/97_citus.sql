
/* ---------------------------------------------------------------------------
 * Citus (extension/citus.c)
 *
 * mandant.citus_setup() turns an installed mandant into its distributed
 * form on a Citus coordinator.  Tenant tables are then distributed by
 * their tenant column (create_distributed_table(tbl, 'tenant_id')), before
 * or after mandant.enable_tenancy().
 *
 * Reference tables, a copy on every node: what tenant tables reference
 * (mandant.tenant, and the plans it references), and the tables that
 * reference mandant.tenant and are written through SQL only (users,
 * roles, memberships, service accounts, refresh tokens, configuration):
 * Citus wants every table that a foreign key links to a reference table in
 * its metadata.  They are small and read far more often than written.
 *
 * The state machines are reference tables too: their trigger checks rows
 * on the shards, on the workers.
 *
 * The registries stay tables of every node: they name tables by oid
 * (regclass), another number on every node, and each node keeps its own
 * (each has the built-in machine of mandant.tenant, whose trigger fires on
 * every placement).  On a distributed table mandant attaches the
 * *_on_shards twins of its trigger functions, which nobody else may
 * attach, so that the shards' triggers need no registry on the workers
 * (mandant.attach_trigger, extension/citus.c).
 *
 * The transition log and the audit trail (events, seals, checkpoints) are
 * distributed by tenant and colocated with the tenant tables: the
 * triggers on a tenant table's shards append to the shards beside them,
 * and events written elsewhere (audit_log(), platform events) reach their
 * tenant's shard through Citus as their writer, held to the writer's
 * context by mandant.audit_event_guard().  Citus refuses a transaction in
 * which two roles touch colocated shards when one of them wrote, so every
 * write of a tenant's shards in a transaction is made by one role:
 * mandant.delete_tenant() erases the tenant's rows, history and all, as
 * the tenant tables' owner under an erase envelope, and records the
 * deletion as that owner too.  Each node seals the audit events of its
 * shards by its own transaction ids (mandant.audit_seal_node()).
 *
 * The outbox is distributed the same way: the trigger on a shard appends
 * the events of its rows beside it, emit() reaches the tenant's shard
 * through Citus held by mandant.outbox_guard(), consumers claim across
 * shards (op_outbox_claim), and delete_tenant() erases a tenant's events
 * as the owner with its history.
 *
 * The usage counters stay tables of the coordinator, which counts each
 * statement that writes a distributed table under quota when it ends
 * (extension/quota.c); their foreign keys to mandant.tenant are dropped
 * here (they are written by mandant alone, and mandant.delete_tenant()
 * erases them explicitly).
 *
 * Triggers on these tables fire on every placement of a reference table,
 * so they are written to act on the relation they fire on (TG_TABLE), and
 * Citus must be allowed to create them (citus.enable_unsafe_triggers, for
 * the duration of the setup).
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.citus_setup()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	reference	text[] := ARRAY[
		'mandant.plan', 'mandant.tenant', 'mandant.users', 'mandant.role', 'mandant.membership',
		'mandant.service_account', 'mandant.refresh_family', 'mandant.refresh_token',
		'mandant.config_entry', 'mandant.state_machine', 'mandant.state_machine_state',
		'mandant.state_transition'];
	local_fks	text[] := ARRAY['mandant.quota_change', 'mandant.tenant_usage', 'mandant.state_machine_table'];
	readd		text[] := '{}';
	tbl			text;
	fk			record;
	fn			record;
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'mandant.citus_setup() must be run by a superuser'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('It changes mandant''s tables on every node; %I is not a superuser.', current_user),
				  HINT = 'Connect to the coordinator as a superuser.';
	END IF;
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'mandant.citus_setup() prepares mandant for a Citus cluster.',
				  HINT = 'Run CREATE EXTENSION citus first (with citus in shared_preload_libraries).';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_local_group g WHERE g.groupid = 0) THEN
		RAISE EXCEPTION 'mandant.citus_setup() must run on the coordinator'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'This node is a Citus worker.',
				  HINT = 'Connect to the coordinator; it sets up every node.';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node n WHERE n.groupid = 0) THEN
		RAISE EXCEPTION 'the coordinator is not in the Citus metadata'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'mandant reads its reference tables on the node where it runs, and Citus places them on the coordinator only once it is in the metadata.',
				  HINT = 'Run SELECT citus_set_coordinator_host(''<host>'', <port>) on the coordinator first.';
	END IF;

	/*
	 * Citus converts a table into a reference table only when the tables
	 * it references are reference tables already, and pulls every local
	 * table that references it into its metadata: the foreign keys among
	 * these tables are dropped, the tables converted, and the keys between
	 * reference tables added again.  History and counters stay here, and
	 * lose theirs.
	 */
	FOR fk IN SELECT k.conrelid::regclass AS tbl, k.conname, pg_get_constraintdef(k.oid) AS def,
					 k.conrelid::regclass::text = ANY (reference) AS keep
			  FROM pg_constraint k
			  WHERE k.contype = 'f' AND k.confrelid::regclass::text = ANY (reference)
				AND (k.conrelid::regclass::text = ANY (reference) OR k.conrelid::regclass::text = ANY (local_fks))
				AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = k.conrelid)
	LOOP
		EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
		/* the workers' own copies of the tables become the shells: same keys */
		PERFORM run_command_on_workers(format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', fk.tbl, fk.conname));
		IF fk.keep THEN
			readd := readd || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tbl, fk.conname, fk.def);
		END IF;
	END LOOP;

	/*
	 * A tenant table registered before Citus was installed has mandant's
	 * key to mandant.tenant, which enable_tenancy adds no more on Citus:
	 * once mandant.tenant is a reference table, Citus would pull the table
	 * into its metadata as a local table, re-creating it under a new oid
	 * that mandant's registries do not follow.  The policy holds a row to
	 * the transaction's tenant, which set_tenant checked.
	 */
	FOR fk IN SELECT k.conrelid::regclass AS tbl, k.conname
			  FROM pg_constraint k
			  JOIN mandant.tenant_table r ON r.relid = k.conrelid
			  WHERE k.contype = 'f' AND k.confrelid = 'mandant.tenant'::regclass AND k.conparentid = 0
				AND k.conname = left(r.tenant_column, 40) || '_mandant_tenant_fkey'
				AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = k.conrelid)
	LOOP
		EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
	END LOOP;

	PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
	FOREACH tbl IN ARRAY reference LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = tbl::regclass) THEN
			PERFORM create_reference_table(tbl::regclass);
		END IF;
	END LOOP;
	FOREACH tbl IN ARRAY readd LOOP
		EXECUTE tbl;
	END LOOP;

	/*
	 * The transition log and the audit trail, distributed by tenant and
	 * colocated with the tenant tables (the default colocation of a uuid
	 * column): the triggers on their shards append to the shards beside
	 * them.  delete_tenant erases a tenant's rows as the tenant tables'
	 * owner (history.c), whom these policies admit to that tenant's rows
	 * only while an erase envelope names it.
	 */
	IF current_setting('citus.shard_replication_factor')::int <> 1 THEN
		RAISE EXCEPTION 'mandant''s history tables need citus.shard_replication_factor = 1'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('It is %s: each placement of a shard of audit events would stamp its own transaction ids and hashes.',
								  current_setting('citus.shard_replication_factor')),
				  HINT = 'SET citus.shard_replication_factor = 1, then run mandant.citus_setup() again.';
	END IF;
	FOREACH tbl IN ARRAY ARRAY['mandant.state_transition_log', 'mandant.audit_event', 'mandant.audit_seal',
							   'mandant.audit_checkpoint', 'mandant.outbox'] LOOP
		CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = tbl::regclass);
		IF tbl = 'mandant.outbox' THEN
			/*
			 * Citus keys a distributed table by its distribution column
			 * too; consumers still find events by id alone.
			 */
			ALTER TABLE mandant.outbox DROP CONSTRAINT outbox_pkey,
				ADD CONSTRAINT outbox_pkey PRIMARY KEY (tenant_id, id);
			CREATE INDEX IF NOT EXISTS outbox_id_idx ON mandant.outbox (id);
		END IF;
		IF NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl::regclass
						 AND p.polname = 'erase_tenant_history') THEN
			EXECUTE format('CREATE POLICY erase_tenant_history ON %s
								FOR DELETE USING (tenant_id = mandant.erasing_history_of())', tbl);
			EXECUTE format('CREATE POLICY erase_tenant_history_read ON %s
								FOR SELECT USING (tenant_id = mandant.erasing_history_of())', tbl);
		END IF;
		EXECUTE format('GRANT DELETE ON %s TO PUBLIC', tbl);
		/* one colocation group: the log's, which the tenant tables join by default */
		PERFORM create_distributed_table(tbl, 'tenant_id',
			colocate_with => CASE WHEN tbl = 'mandant.state_transition_log' THEN 'default'
								  ELSE 'mandant.state_transition_log' END);
		/* the rows written before are in the shards now; none may stay here */
		PERFORM mandant.citus_truncate_local_history(tbl::regclass);
	END LOOP;

	/*
	 * Events that are not written beside a shard (audit_log(), emit(), the
	 * lifecycle's platform events) reach their tenant's shard through
	 * Citus, as their writer (RouteAuditEvent in extension/audit.c,
	 * RouteOutboxEvent in extension/outbox.c), held to the writer's
	 * context by a trigger on the shards.  It is created once the rows
	 * written before are in the shards, so that they keep their ids and
	 * hashes; a shard that Citus moves gets it after its rows, and logical
	 * replication does not fire it.  The policy holds a row to the tenant
	 * of the transaction (or the platform's) even where the guard is not
	 * there yet: a placement that Citus moves gets its policies before its
	 * triggers.  The outbox's holds a new event to one never delivered, and
	 * platform topics to the platform's events.
	 */
	FOREACH tbl IN ARRAY ARRAY['audit_event', 'outbox'] LOOP
		IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = ('mandant.' || tbl)::regclass
						 AND t.tgname = tbl || '_guard') THEN
			EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON mandant.%I FOR EACH ROW EXECUTE FUNCTION mandant.%I()',
						   tbl || '_guard', tbl, tbl || '_guard');
		END IF;
		IF NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = ('mandant.' || tbl)::regclass
						 AND p.polname = tbl || '_append') THEN
			EXECUTE format('CREATE POLICY %I ON mandant.%I FOR INSERT
								WITH CHECK (tenant_id = COALESCE(mandant.current_tenant(), ''00000000-0000-0000-0000-000000000000'')%s)',
						   tbl || '_append', tbl,
						   CASE tbl WHEN 'outbox' THEN '
									AND attempts = 0 AND published_at IS NULL AND dead_at IS NULL
									AND locked_until IS NULL AND locked_by IS NULL AND last_error IS NULL
									AND (tenant_id = ''00000000-0000-0000-0000-000000000000'' OR topic !~ ''^platform[.]'')'
						   ELSE '' END);
		END IF;
		EXECUTE format('GRANT INSERT ON mandant.%I TO PUBLIC', tbl);
	END LOOP;

	/* a table that stays here can no longer record its changes */
	FOR fk IN SELECT a.relid, 'audited' AS what, 'audit' AS feature FROM mandant.audit_table a
			  UNION ALL
			  SELECT o.relid, 'published to the outbox', 'outbox' FROM mandant.outbox_table o
	LOOP
		CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = fk.relid);
		RAISE WARNING 'table % is % and not distributed', fk.relid, fk.what
			USING DETAIL = format('Its %s records are kept beside its shards on Citus; until it is distributed by tenant_id, its writes fail (0A000).', fk.feature),
				  HINT = format('SELECT mandant.disable_%s(%L); SELECT create_distributed_table(%L, ''tenant_id''); SELECT mandant.enable_%s(%L, ...) again.',
								fk.feature, fk.relid::text, fk.relid::text, fk.feature, fk.relid::text);
	END LOOP;

	/*
	 * Citus lets every role run SQL on every node (run_command_on_*), and
	 * the workers take envelopes: a session there may replay one of its
	 * role for as long as it lives.  Only superusers keep those functions.
	 */
	FOR fn IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
			  WHERE p.pronamespace = 'pg_catalog'::regnamespace
				AND p.proname IN ('run_command_on_workers', 'run_command_on_all_nodes',
								  'run_command_on_coordinator', 'run_command_on_shards',
								  'run_command_on_placements', 'run_command_on_colocated_placements')
	LOOP
		EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn.sig);
		PERFORM run_command_on_workers(format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn.sig));
	END LOOP;
	PERFORM set_config('citus.enable_unsafe_triggers', 'off', true);
END
$$;

REVOKE ALL ON FUNCTION mandant.citus_setup() FROM PUBLIC;

COMMENT ON FUNCTION mandant.citus_setup() IS
'On a Citus coordinator (in the metadata), as a superuser: makes mandant''s shared tables reference tables, so that tenant tables can be distributed by tenant_id. Idempotent.';

/*
 * citus_distribution_column: the column by which Citus distributes a
 * hash-distributed table, NULL for any other table and where Citus is not
 * installed.
 */
CREATE FUNCTION mandant.citus_distribution_column(tbl regclass)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	col			name;
BEGIN
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN NULL;
	END IF;
	EXECUTE 'SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
			 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1 AND p.partmethod = ''h'''
		INTO col USING tbl;
	RETURN col;
END
$$;

COMMENT ON FUNCTION mandant.citus_distribution_column(regclass) IS
'The column by which Citus distributes a hash-distributed table; NULL for other tables and without Citus.';

/*
 * check_kept_beside raises 0A000 unless what mandant records about the
 * rows of tbl (what: "transitions", "changes") can be kept in a shard of
 * target beside the row's shard: both are local tables, or both are
 * distributed, tbl by the tenant column it is registered with, in one
 * colocation group, so that a row's record lands in its tenant's shard;
 * and that column is tenant_id, which the triggers on the shards take for
 * the tenant without a registry.
 * otherwise completes the hint.
 */
CREATE FUNCTION mandant.check_kept_beside(tbl regclass, target regclass, what text, otherwise text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl_distributed		boolean := mandant.citus_distribution_column(tbl) IS NOT NULL;
	target_distributed	boolean := mandant.citus_distribution_column(target) IS NOT NULL;
	colocated			boolean;
BEGIN
	IF NOT tbl_distributed AND NOT target_distributed THEN
		RETURN;
	END IF;
	/*
	 * The workers' registries do not list the table: its triggers on the
	 * shards take the column named tenant_id for the row's tenant.
	 */
	IF tbl_distributed AND target_distributed AND mandant.citus_distribution_column(tbl) = 'tenant_id' AND
			(SELECT r.tenant_column FROM mandant.tenant_table r WHERE r.relid = tbl) = 'tenant_id' THEN
		EXECUTE 'SELECT a.colocationid = b.colocationid FROM pg_catalog.pg_dist_partition a, pg_catalog.pg_dist_partition b
				 WHERE a.logicalrelid = $1 AND b.logicalrelid = $2'
			INTO colocated USING tbl, target;
	END IF;
	IF NOT COALESCE(colocated, false) THEN
		RAISE EXCEPTION '% of table % cannot be recorded on this Citus cluster', what, tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = CASE
					  WHEN NOT target_distributed THEN format('The table is distributed and %s is not: mandant.citus_setup() has not run.', target)
					  WHEN NOT tbl_distributed THEN format('%s is distributed and the table is not: the %s of a table are kept in the shard of %s beside the table''s own.', target, what, target)
					  ELSE format('The table is not a tenant table distributed by its tenant column tenant_id and colocated with %s, so no shard of it is beside its shards for each of its rows, or the workers would not know its tenant column.', target) END,
				  HINT = format('Register it with mandant.enable_tenancy(), distribute it by its tenant column colocated with %s (after mandant.citus_setup()), %s.', target, otherwise);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_kept_beside(regclass, regclass, text, text) IS
'Internal: 0A000 unless what mandant records about a table''s rows can be kept beside the rows'' shards (both local, or both distributed by tenant and colocated). Reads the catalogs only; enable_state_machine calls it as its caller.';

/*
 * citus_truncate_local_history: for citus_setup(), the coordinator's own
 * copy of a history table's rows, left on disk once Citus distributed it.
 */
CREATE FUNCTION mandant.citus_truncate_local_history(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_citus_truncate_local_history'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.citus_truncate_local_history(regclass) IS
'Internal: remove the rows that stay in the coordinator''s own relation of one of mandant''s distributed history tables (for citus_setup()).';

REVOKE ALL ON FUNCTION mandant.citus_truncate_local_history(regclass) FROM PUBLIC;

/*
 * erasing_history_of: the tenant whose history delete_tenant is erasing
 * in this backend (as the tenant tables' owner, or on a worker under an
 * erase envelope for the current user), for the row level policies of
 * the distributed history tables; NULL at every other time.
 */
CREATE FUNCTION mandant.erasing_history_of()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_erasing_history_of'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.erasing_history_of() IS
'The tenant whose history mandant.delete_tenant() is erasing right now in this backend, else NULL (the row level policy of the distributed transition log).';

/*
 * The twins of the trigger functions that mandant attaches to distributed
 * tables.  Nobody but their owner may execute them, so nobody else can
 * attach them; on a shard, the C code takes that for the registration
 * that the workers' registries lack (MandantCitusTrustedShardTrigger).
 */
CREATE FUNCTION mandant.state_machine_trigger_on_shards()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_state_machine_trigger'
LANGUAGE C;

REVOKE ALL ON FUNCTION mandant.state_machine_trigger_on_shards() FROM PUBLIC;

CREATE FUNCTION mandant.audit_trigger_on_shards()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_trigger'
LANGUAGE C;

REVOKE ALL ON FUNCTION mandant.audit_trigger_on_shards() FROM PUBLIC;

CREATE FUNCTION mandant.outbox_trigger_on_shards()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_outbox_trigger'
LANGUAGE C;

REVOKE ALL ON FUNCTION mandant.outbox_trigger_on_shards() FROM PUBLIC;

COMMENT ON FUNCTION mandant.outbox_trigger_on_shards() IS
'Internal: mandant.outbox_trigger() as mandant.enable_outbox() attaches it to a table that Citus distributes.';

COMMENT ON FUNCTION mandant.audit_trigger_on_shards() IS
'Internal: mandant.audit_trigger() as mandant.enable_audit() attaches it to a table that Citus distributes.';

COMMENT ON FUNCTION mandant.state_machine_trigger_on_shards() IS
'Internal: mandant.state_machine_trigger() as mandant.enable_state_machine() attaches it to a table that Citus distributes.';

CREATE FUNCTION mandant.citus_require_transaction_block(function text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_citus_require_transaction_block'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION mandant.citus_require_transaction_block(text) FROM PUBLIC;

COMMENT ON FUNCTION mandant.citus_require_transaction_block(text) IS
'Internal: on Citus, refuses (25P01) an export outside a transaction block, where the shards would be read without the owner''s tenant context.';
