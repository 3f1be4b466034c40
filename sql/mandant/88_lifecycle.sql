
/* ---------------------------------------------------------------------------
 * Tenant lifecycle: status machine, provisioning saga, suspension, hard
 * deletion with a tombstone, export and import.
 *
 * The status of mandant.tenant follows mandant's own state machine
 * "mandant_tenant": pending -> active | failed, active <-> suspended, any
 * -> deleted.  Every state may start a row, so that a dump restores
 * suspended and failed tenants; transitions are what the machine guards.
 * Every step is announced in the outbox (platform.tenant.*) and recorded
 * in the audit trail.  Deletion, export and import touch the application's
 * tables as their owners, outside any tenant and inside a
 * security-restricted operation (mandant.run_as_table_owner): the owner's
 * triggers, casts and checks never run with the extension owner's rights
 * nor in the tenant's name.
 * ------------------------------------------------------------------------- */

INSERT INTO mandant.state_machine (name, transition_columns) VALUES ('mandant_tenant', '{status_reason,updated_at}');
INSERT INTO mandant.state_machine_state (machine, state, initial, frozen) VALUES
	('mandant_tenant', 'pending', true, false),
	('mandant_tenant', 'active', true, false),
	('mandant_tenant', 'suspended', true, false),
	('mandant_tenant', 'failed', true, false),
	('mandant_tenant', 'deleted', false, true);
INSERT INTO mandant.state_transition (machine, from_state, to_state) VALUES
	('mandant_tenant', 'pending', 'active'),
	('mandant_tenant', 'pending', 'failed'),
	('mandant_tenant', 'active', 'suspended'),
	('mandant_tenant', 'suspended', 'active'),
	('mandant_tenant', 'pending', 'deleted'),
	('mandant_tenant', 'active', 'deleted'),
	('mandant_tenant', 'suspended', 'deleted'),
	('mandant_tenant', 'failed', 'deleted');
CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON mandant.tenant
	FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger('mandant_tenant', 'status', 'nolog');
INSERT INTO mandant.state_machine_table (relid, machine, state_column) VALUES ('mandant.tenant', 'mandant_tenant', 'status');

-- The tenant machine comes with the extension; dumps keep only the user's.
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine', 'WHERE name <> ''mandant_tenant''');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine_state', 'WHERE machine <> ''mandant_tenant''');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition', 'WHERE machine <> ''mandant_tenant''');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine_table', 'WHERE machine <> ''mandant_tenant''');

CREATE TABLE mandant.tenant_tombstone (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id	uuid NOT NULL,
	slug_sha256	bytea NOT NULL,
	counts		jsonb NOT NULL,
	deleted_by	text NOT NULL,
	deleted_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX tenant_tombstone_tenant_idx ON mandant.tenant_tombstone (tenant_id);
CREATE INDEX tenant_tombstone_slug_idx ON mandant.tenant_tombstone (slug_sha256, deleted_at);

COMMENT ON TABLE mandant.tenant_tombstone IS
'What remains of a deleted tenant: its id, the SHA-256 of its slug, how many rows were removed per table, who and when. Append-only.';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.tenant_tombstone
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.tenant_tombstone ENABLE ALWAYS TRIGGER append_only;
REVOKE ALL ON mandant.tenant_tombstone FROM PUBLIC;
GRANT SELECT ON mandant.tenant_tombstone TO mandant_admin;
SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_tombstone', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_tombstone_id_seq', '');

/*
 * check_slug_quarantine (called by create_tenant) refuses the slug of a
 * tenant deleted less than mandant.slug_quarantine_days ago: links, bookmarks
 * and e-mails that named the old tenant's subdomain must not lead to a new
 * owner.  The deleted tenant itself may come back (import_tenant passes
 * its id as returning_tenant).
 */
CREATE FUNCTION mandant.check_slug_quarantine(slug text, returning_tenant uuid DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	deleted_at	timestamptz;
	days		integer := current_setting('mandant.slug_quarantine_days')::integer;
BEGIN
	SELECT max(b.deleted_at) INTO deleted_at FROM mandant.tenant_tombstone b
	WHERE b.slug_sha256 = sha256(convert_to(slug, 'UTF8')) AND b.tenant_id IS DISTINCT FROM returning_tenant;
	IF deleted_at > now() - make_interval(days => days) THEN
		RAISE EXCEPTION 'tenant slug "%" belonged to a deleted tenant', slug
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('A tenant with this slug was deleted %s day(s) ago; the slug is free again in %s day(s).',
								  floor(extract(epoch FROM now() - deleted_at) / 86400),
								  ceil(extract(epoch FROM deleted_at + make_interval(days => days) - now()) / 86400)),
				  HINT = 'Pick another slug (mandant.slug_quarantine_days sets the waiting time).';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_slug_quarantine(text, uuid) IS
'Internal: raise 23505 when the slug belonged to a tenant (other than returning_tenant) deleted less than mandant.slug_quarantine_days ago.';

CREATE FUNCTION mandant.erase_tenant_history(tenant uuid)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_erase_tenant_history'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.erase_tenant_history(uuid) IS
'Internal: delete a tenant''s rows from mandant''s append-only tables and its outbox events (for delete_tenant).';

REVOKE ALL ON FUNCTION mandant.erase_tenant_history(uuid) FROM PUBLIC;

/* ---- creation and the provisioning saga ------------------------------------ */

CREATE FUNCTION mandant.tenant_payload(t mandant.tenant)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object('tenantId', t.id, 'slug', t.slug, 'name', t.name,
												'status', t.status, 'planKey', t.plan_key,
												'ownerEmail', t.owner_email, 'operationId', t.operation_id,
												'reason', t.status_reason))
$$;

COMMENT ON FUNCTION mandant.tenant_payload(mandant.tenant) IS
'Internal: the payload of platform.tenant.* events.';

/*
 * announce: an outbox event and an audit record of a tenant's step.  The
 * event carries what consumers need (slug, name, owner e-mail) and goes
 * with outbox_purge; the platform's audit trail is permanent, so its
 * record names the tenant by id only, and nothing personal outlives
 * delete_tenant there.
 */
CREATE FUNCTION mandant.announce(tenant uuid, topic text, action text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t mandant.tenant;
BEGIN
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
	PERFORM mandant.emit_for(NULL, topic, tenant::text, mandant.tenant_payload(t));
	PERFORM mandant.audit_log_for(NULL, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', action, 'tenant', tenant::text,
								  mandant.tenant_payload(t) - 'slug' - 'name' - 'ownerEmail');
END
$$;

COMMENT ON FUNCTION mandant.announce(uuid, text, text) IS
'Internal: emit a platform.tenant.* event and write the platform audit event of a lifecycle step.';

/*
 * after_tenant_created: the owner (if already a user whose e-mail the
 * platform vouched for) becomes a member, and the tenant is announced.
 * Called by mandant.create_tenant.
 */
CREATE FUNCTION mandant.after_tenant_created(tenant uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t		mandant.tenant;
	owner	uuid;
BEGIN
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
	FOR owner IN SELECT u.id FROM mandant.users u
				 WHERE lower(u.email) = lower(t.owner_email) AND u.email_confirmed_at IS NOT NULL LOOP
		PERFORM mandant.consume(tenant, 'users', 1);
		INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
		VALUES (tenant, owner, 'owner', 'create_tenant');
		PERFORM mandant.record_event(tenant, 'identity', 'member.added', 'user', owner::text,
									 jsonb_build_object('role', 'owner', 'by', 'owner_email'));
	END LOOP;
	IF t.status = 'pending' THEN
		PERFORM mandant.announce(tenant, 'platform.tenant.provisioning_requested', 'tenant.provisioning_requested');
	ELSE
		PERFORM mandant.announce(tenant, 'platform.tenant.created', 'tenant.created');
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.after_tenant_created(uuid) IS
'Internal: make the owner a member when the user exists, and announce the new tenant.';

CREATE FUNCTION mandant.tenant_by_operation(operation_id uuid)
RETURNS mandant.tenant
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t mandant.tenant;
BEGIN
	SELECT * INTO t FROM mandant.tenant x WHERE x.operation_id = tenant_by_operation.operation_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no tenant was created by operation %', COALESCE(operation_id::text, 'NULL')
			USING ERRCODE = 'no_data_found',
				  DETAIL = 'No row of mandant.tenant carries that operation id.',
				  HINT = 'Pass the operation id given to mandant.create_tenant().';
	END IF;
	RETURN t;
END
$$;

COMMENT ON FUNCTION mandant.tenant_by_operation(uuid) IS
'Internal: the tenant an operation created, locked; P0002 when there is none.';

CREATE FUNCTION mandant.op_complete_tenant_provisioning(operation_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t mandant.tenant := mandant.tenant_by_operation(operation_id);
BEGIN
	IF t.status = 'failed' THEN
		RAISE EXCEPTION 'provisioning of tenant "%" has failed', t.slug
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Operation %s failed: %s.', operation_id, COALESCE(t.status_reason, 'no reason given')),
				  HINT = 'Create the tenant again with a new operation id.';
	END IF;
	IF t.status = 'pending' THEN
		UPDATE mandant.tenant x SET status = 'active', status_reason = NULL, updated_at = now() WHERE x.id = t.id;
		PERFORM mandant.announce(t.id, 'platform.tenant.created', 'tenant.created');
	END IF;
	RETURN t.id;
END
$$;

COMMENT ON FUNCTION mandant.op_complete_tenant_provisioning(uuid) IS
'Internal: the body of mandant.complete_tenant_provisioning(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.complete_tenant_provisioning(operation_id uuid)
RETURNS uuid
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('complete_tenant_provisioning');
	RETURN mandant.op_complete_tenant_provisioning(operation_id);
END
$$;

COMMENT ON FUNCTION mandant.complete_tenant_provisioning(uuid) IS
'End the provisioning saga of a pending tenant: it becomes active and platform.tenant.created is emitted. Repeating it changes nothing and returns the same id. For mandant_admin and trusted backends.';

CREATE FUNCTION mandant.op_fail_tenant_provisioning(operation_id uuid, reason text)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t mandant.tenant := mandant.tenant_by_operation(operation_id);
BEGIN
	PERFORM mandant.require_reason(reason, 'fail provisioning', 'The reason goes into the compensation event.',
								   'Say what failed, e.g. ''DNS zone could not be created''.');
	IF t.status NOT IN ('pending', 'failed') THEN
		RAISE EXCEPTION 'provisioning of tenant "%" is complete', t.slug
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('The tenant is %s.', t.status),
				  HINT = 'Suspend or delete the tenant instead.';
	END IF;
	IF t.status = 'pending' THEN
		UPDATE mandant.tenant x SET status = 'failed', status_reason = reason, updated_at = now() WHERE x.id = t.id;
		PERFORM mandant.announce(t.id, 'platform.tenant.provisioning_failed', 'tenant.provisioning_failed');
	END IF;
	RETURN t.id;
END
$$;

COMMENT ON FUNCTION mandant.op_fail_tenant_provisioning(uuid, text) IS
'Internal: the body of mandant.fail_tenant_provisioning(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.fail_tenant_provisioning(operation_id uuid, reason text)
RETURNS uuid
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('fail_tenant_provisioning');
	RETURN mandant.op_fail_tenant_provisioning(operation_id, reason);
END
$$;

COMMENT ON FUNCTION mandant.fail_tenant_provisioning(uuid, text) IS
'End the provisioning saga of a pending tenant as failed and emit the compensation event platform.tenant.provisioning_failed. Repeating it changes nothing. For mandant_admin and trusted backends.';

/* ---- suspension ------------------------------------------------------------ */

CREATE FUNCTION mandant.op_suspend_tenant(tenant uuid, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status text := (mandant.lock_tenant(tenant)).status;
BEGIN
	PERFORM mandant.require_reason(reason, 'suspend a tenant', 'The reason is kept with the tenant and in the audit trail.',
								   'Say why, e.g. ''invoice 2026-11 unpaid''.');
	IF status = 'suspended' THEN
		RETURN;
	END IF;
	UPDATE mandant.tenant t SET status = 'suspended', status_reason = reason, updated_at = now() WHERE t.id = tenant;
	PERFORM mandant.announce(tenant, 'platform.tenant.suspended', 'tenant.suspended');
END
$$;

COMMENT ON FUNCTION mandant.op_suspend_tenant(uuid, text) IS
'Internal: the body of mandant.suspend_tenant(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.suspend_tenant(tenant uuid, reason text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('suspend_tenant');
	PERFORM mandant.op_suspend_tenant(tenant, reason);
END
$$;

COMMENT ON FUNCTION mandant.suspend_tenant(uuid, text) IS
'Suspend an active tenant: nobody can enter it (set_tenant and authenticate answer MD003), its data stays. mandant_admin only.';

CREATE FUNCTION mandant.op_resume_tenant(tenant uuid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	locked mandant.tenant := mandant.lock_tenant(tenant);
BEGIN
	IF locked.status = 'active' THEN
		RETURN;
	END IF;
	IF locked.status <> 'suspended' THEN
		RAISE EXCEPTION 'tenant "%" is not suspended', locked.slug
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('The tenant is %s; only a suspended tenant can be resumed.', locked.status),
				  HINT = CASE locked.status WHEN 'pending' THEN 'Finish provisioning with mandant.complete_tenant_provisioning(operation_id).'
									 ELSE 'Create the tenant again with a new operation id.' END;
	END IF;
	UPDATE mandant.tenant t SET status = 'active', status_reason = NULL, updated_at = now() WHERE t.id = tenant;
	PERFORM mandant.announce(tenant, 'platform.tenant.resumed', 'tenant.resumed');
END
$$;

COMMENT ON FUNCTION mandant.op_resume_tenant(uuid) IS
'Internal: the body of mandant.resume_tenant(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.resume_tenant(tenant uuid)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('resume_tenant');
	PERFORM mandant.op_resume_tenant(tenant);
END
$$;

COMMENT ON FUNCTION mandant.resume_tenant(uuid) IS
'Resume a suspended tenant (55000 for pending and failed ones: provisioning decides those). Repeating it changes nothing. mandant_admin only.';

/* ---- the tenant's tables, in foreign key order --------------------------- */

/*
 * tenant_tables_unregistered lists the tables that lost their registration
 * but not their protection: a permanent table with forced row level
 * security and a policy that calls mandant.tenant_filter(), not in the
 * registry, with the schema, name and owner of a table that was registered
 * (mandant.tenant_table_name).  That is what Citus leaves when it converts
 * a table (alter_distributed_table, undistribute_table): it drops the
 * registered relation and gives its name, owner, policies and forced row
 * level security to a new one.  Tying the check to a registered name and
 * its owner keeps any other role that creates a table with such a policy
 * from blocking everyone's deletions.
 * Partitions of a registered table and the shards of Citus tables placed
 * on this node are left out.
 */
CREATE FUNCTION mandant.tenant_tables_unregistered()
RETURNS SETOF regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found	text := $q$
		SELECT DISTINCT c.oid::regclass
		FROM mandant.tenant_table_name l
		JOIN pg_catalog.pg_namespace n ON n.nspname = l.nspname
		JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = l.relname
			AND pg_catalog.pg_get_userbyid(c.relowner) = l.owner
		JOIN pg_catalog.pg_policy p ON p.polrelid = c.oid
		JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
			AND d.objid = p.oid AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
			AND d.refobjid = 'mandant.tenant_filter()'::pg_catalog.regprocedure
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
		  AND c.relrowsecurity AND c.relforcerowsecurity
		  AND NOT EXISTS (SELECT FROM mandant.tenant_table r WHERE r.relid = c.oid)
		  AND NOT EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(c.oid) a
						  JOIN mandant.tenant_table r ON r.relid = a.relid)$q$;
BEGIN
	IF to_regclass('pg_catalog.pg_dist_shard') IS NOT NULL THEN
		/* a shard is named <table>_<shard id> */
		found := found || $q$
		  AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_shard s
						  WHERE s.shardid = (substring(c.relname FROM '_([0-9]{1,18})$'))::bigint
							AND pg_catalog.to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid)) = c.oid)$q$;
	END IF;
	RETURN QUERY EXECUTE found;
END
$$;

COMMENT ON FUNCTION mandant.tenant_tables_unregistered() IS
'Tables that lost their registration but not mandant''s tenant policy: a new table with the name and owner of a registered one, and its policy (Citus re-creates a table when it converts it); mandant.enable_tenancy() registers one again.';

/*
 * check_tenant_tables_registered refuses to go on (55000) while a table
 * carries mandant's tenant policy but is not registered: deleting,
 * exporting or moving a tenant would leave that table's rows behind.
 */
CREATE FUNCTION mandant.check_tenant_tables_registered()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl		regclass;
BEGIN
	SELECT u INTO tbl FROM mandant.tenant_tables_unregistered() u ORDER BY u::text LIMIT 1;
	IF tbl IS NOT NULL THEN
		RAISE EXCEPTION 'table % has mandant''s tenant policy but is not registered', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'A tenant''s rows in it would be left out of deleting, exporting or moving the tenant. Citus re-creates a table when it converts it (alter_distributed_table, undistribute_table), and mandant''s registry keeps the table it registered.',
				  HINT = format('Call mandant.enable_tenancy(%L) again as the table''s owner.', tbl::text);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_tenant_tables_registered() IS
'Internal to mandant.tenant_tables(): raise 55000 while a table carries mandant''s tenant policy but is not registered.';

REVOKE ALL ON FUNCTION mandant.check_tenant_tables_registered() FROM PUBLIC;

/*
 * tenant_tables lists the registered tenant tables that hold rows of their
 * own (partitions of a registered table are reached through it), with the
 * length of the longest chain of registered tables referencing each: 0 for
 * tables nothing references.  Deleting in ascending order and inserting in
 * descending order respects the foreign keys between them.
 */
CREATE FUNCTION mandant.tenant_tables()
RETURNS TABLE (relid regclass, tenant_column name, depth integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_tenant_tables_registered();
	RETURN QUERY
	WITH RECURSIVE own AS (
		SELECT r.relid, r.tenant_column FROM mandant.tenant_table r
		WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = r.relid)
		  AND NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(r.relid) a
						  JOIN mandant.tenant_table p ON p.relid = a.relid
						  WHERE a.relid <> r.relid)
	), edges AS (
		SELECT DISTINCT c.conrelid AS child, c.confrelid AS parent
		FROM pg_constraint c
		JOIN own a ON a.relid = c.conrelid
		JOIN own b ON b.relid = c.confrelid
		WHERE c.contype = 'f' AND c.conrelid <> c.confrelid
	), chain (relid, depth, path) AS (
		SELECT o.relid::oid, 0, ARRAY[o.relid::oid] FROM own o
		UNION ALL
		SELECT e.parent, ch.depth + 1, ch.path || e.parent
		FROM chain ch JOIN edges e ON e.child = ch.relid
		WHERE NOT e.parent = ANY (ch.path)
	)
	SELECT o.relid, o.tenant_column, max(ch.depth)
	FROM own o JOIN chain ch ON ch.relid = o.relid::oid
	GROUP BY o.relid, o.tenant_column
	ORDER BY 3, 1::text;
END
$$;

COMMENT ON FUNCTION mandant.tenant_tables() IS
'The registered tenant tables (partitions left out) with their depth in the foreign keys between them: delete by ascending depth, insert by descending. Raises 55000 while a table carries mandant''s tenant policy but is not registered (mandant.check_tenant_tables_registered).';

/* ---- deletion -------------------------------------------------------------- */

/*
 * check_tenant_references refuses to delete a tenant while a foreign key
 * that mandant did not add references mandant.tenant: one from a table
 * that is not a tenant table (its rows would block the deletion at the
 * very end), from another column than a tenant table's tenant column, or
 * with an ON DELETE action (the action would run as the table's owner
 * outside any security-restricted operation, so its triggers could queue
 * deferred work that runs as the administrator at commit).  mandant adds
 * NO ACTION keys only; nobody else holds REFERENCES on mandant.tenant, but
 * keys from 0.1.0 or from a superuser's migration may remain.  A
 * deferrable key is refused too (its check would run at commit, outside
 * delete_tenant_row's restricted operation).
 */
CREATE FUNCTION mandant.check_tenant_references()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fk		record;
BEGIN
	FOR fk IN
		SELECT k.conname, k.conrelid::regclass AS tbl, k.confdeltype, k.condeferrable, r.tenant_column,
			   (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
				WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)) AS columns
		FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid
		LEFT JOIN mandant.tenant_table r ON r.relid = k.conrelid
		WHERE k.contype = 'f' AND k.confrelid = 'mandant.tenant'::regclass AND k.conparentid = 0
		  AND c.relnamespace <> 'mandant'::regnamespace
		ORDER BY k.conrelid::regclass::text, k.conname
	LOOP
		IF fk.tenant_column IS NULL OR fk.columns IS DISTINCT FROM ARRAY[fk.tenant_column]
			OR fk.confdeltype NOT IN ('a', 'r') OR fk.condeferrable THEN
			RAISE EXCEPTION 'foreign key % of % references mandant.tenant', fk.conname, fk.tbl
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = CASE
						  WHEN fk.tenant_column IS NULL THEN format('%s is not a tenant table, so its rows would not be deleted with the tenant.', fk.tbl)
						  WHEN fk.columns IS DISTINCT FROM ARRAY[fk.tenant_column] THEN format('The key is on %s, not on the tenant column %I.', array_to_string(fk.columns, ', '), fk.tenant_column)
						  WHEN fk.condeferrable THEN 'The key is deferrable: its check could run at commit, after the deletion returned.'
						  ELSE 'The key has an ON DELETE action; deleting a tenant would run it as the table''s owner.' END,
					  HINT = format('Drop the constraint (ALTER TABLE %s DROP CONSTRAINT %I); mandant.enable_tenancy() adds the key a tenant table needs.', fk.tbl, fk.conname);
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.check_tenant_references() IS
'Internal to delete_tenant: raise 2BP01 while a foreign key to mandant.tenant exists that is not a tenant table''s NO ACTION, not deferrable key on its tenant column.';

REVOKE ALL ON FUNCTION mandant.check_tenant_references() FROM PUBLIC;

CREATE FUNCTION mandant.op_delete_tenant(tenant uuid, confirm_slug text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t		mandant.tenant;
	tbl		record;
	n		bigint;
	counts	jsonb := '{}';
	head	jsonb;
BEGIN
	/* FOR UPDATE, not lock_tenant's NO KEY UPDATE: inserts into the tenant's
	   tables (key share through their foreign key) wait until it is gone. */
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	IF confirm_slug IS DISTINCT FROM t.slug THEN
		RAISE EXCEPTION 'confirmation does not match tenant "%"', tenant
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The slug given to confirm the deletion is not the tenant''s slug.',
				  HINT = 'Pass the tenant''s slug as confirm_slug; deletion cannot be undone.';
	END IF;
	IF tenant = mandant.current_tenant() THEN
		RAISE EXCEPTION 'cannot delete tenant "%" from inside it', t.slug
			USING ERRCODE = 'object_in_use',
				  DETAIL = 'The transaction has entered the tenant it is deleting.',
				  HINT = 'Delete it from a transaction without a tenant, as a platform administrator.';
	END IF;
	PERFORM mandant.check_tenant_references();
	/* read before any write: on Citus the tenant's shards are then written by their owner alone */
	SELECT jsonb_build_object('seq', a.seq, 'chain', encode(a.chain, 'hex')) INTO head
	FROM mandant.audit_seal a WHERE a.tenant_id = tenant ORDER BY a.seq DESC LIMIT 1;
	UPDATE mandant.tenant x SET status = 'deleted', updated_at = now() WHERE x.id = tenant;

	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth, relid::text LOOP
		n := mandant.delete_tenant_rows(tbl.relid, tenant);
		counts := counts || jsonb_build_object(tbl.relid::text, n);
	END LOOP;

	DELETE FROM mandant.config_entry c WHERE c.tenant_id = tenant;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('mandant.config_entry', n);
	DELETE FROM mandant.membership m WHERE m.tenant_id = tenant;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('mandant.membership', n);
	DELETE FROM mandant.login_attempt l WHERE l.tenant_id = tenant;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('mandant.login_attempt', n);
	DELETE FROM mandant.tenant_usage u WHERE u.tenant_id = tenant;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('mandant.tenant_usage', n);
	counts := counts || mandant.erase_tenant_history(tenant);
	PERFORM mandant.delete_tenant_row(tenant);		-- roles, service accounts, sessions cascade

	INSERT INTO mandant.tenant_tombstone (tenant_id, slug_sha256, counts, deleted_by)
	VALUES (tenant, sha256(convert_to(t.slug, 'UTF8')), counts, COALESCE(mandant.current_user_id()::text, session_user));
	PERFORM mandant.emit_erasure(tenant, jsonb_build_object('tenantId', tenant, 'counts', counts));
	PERFORM mandant.audit_log_erasure(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
									  jsonb_build_object('slugSha256', encode(sha256(convert_to(t.slug, 'UTF8')), 'hex'),
														 'counts', counts, 'chainHead', head));
	RETURN counts;
END
$$;

COMMENT ON FUNCTION mandant.op_delete_tenant(uuid, text) IS
'Internal: the body of mandant.delete_tenant(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.delete_tenant(tenant uuid, confirm_slug text)
RETURNS jsonb
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('delete_tenant');
	RETURN mandant.op_delete_tenant(tenant, confirm_slug);
END
$$;

COMMENT ON FUNCTION mandant.delete_tenant(uuid, text) IS
'Delete a tenant for good: every row of every tenant table (children first), its outbox events, configuration, members, usage, audit trail and history; leaves a tombstone (id, slug SHA-256, counts) and returns the counts. confirm_slug must be the tenant''s slug. mandant_admin only.';

/* ---- export and import ------------------------------------------------------ */

CREATE FUNCTION mandant.op_export_tenant(tenant uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t		mandant.tenant;
	tbl		record;
	rows	jsonb;
	tables	jsonb := '{}';
BEGIN
	PERFORM mandant.citus_require_transaction_block('mandant.export_tenant()');
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth DESC, relid::text LOOP
		rows := mandant.run_as_table_owner(tbl.relid, tenant,
			format('SELECT COALESCE(jsonb_agg(to_jsonb(r) ORDER BY r::text), ''[]'') FROM %s r WHERE %I = $1',
				   tbl.relid, tbl.tenant_column));
		tables := tables || jsonb_build_object(tbl.relid::text, rows);
	END LOOP;

	RETURN jsonb_build_object(
		'format', 'mandant.tenant-export',
		'version', 1,
		'exportedAt', now(),
		'tenant', to_jsonb(t),
		'tables', tables,
		'roles', (SELECT COALESCE(jsonb_agg(jsonb_build_object('name', r.name, 'scopes', r.scopes,
															   'description', r.description) ORDER BY r.name), '[]')
				  FROM mandant.role r WHERE r.tenant_id = tenant),
		'memberships', (SELECT COALESCE(jsonb_agg(jsonb_build_object('email', u.email, 'displayName', u.display_name,
																	 'role', m.role, 'createdAt', m.created_at,
																	 'createdBy', m.created_by)
												  ORDER BY lower(u.email)), '[]')
						FROM mandant.membership m JOIN mandant.users u ON u.id = m.user_id WHERE m.tenant_id = tenant),
		'config', (SELECT COALESCE(jsonb_agg(to_jsonb(c) - 'tenant_id' ORDER BY c.service, c.key), '[]')
				   FROM mandant.config_entry c WHERE c.tenant_id = tenant),
		'configHistory', (SELECT COALESCE(jsonb_agg(to_jsonb(h) - 'tenant_id' ORDER BY h.revision), '[]')
						  FROM mandant.config_history h WHERE h.tenant_id = tenant),
		'quotaChanges', (SELECT COALESCE(jsonb_agg(to_jsonb(q) - 'tenant_id' - 'id' ORDER BY q.id), '[]')
						 FROM mandant.quota_change q WHERE q.tenant_id = tenant),
		'charged', (SELECT COALESCE(jsonb_object_agg(u.resource, u.used), '{}') FROM mandant.tenant_usage u
					WHERE u.tenant_id = tenant
					  AND NOT EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = u.resource)),
		'audit', jsonb_build_object(
			'events', (SELECT COALESCE(jsonb_agg(to_jsonb(e) - 'tenant_id' ORDER BY e.id), '[]')
					   FROM mandant.audit_event e WHERE e.tenant_id = tenant),
			'seals', (SELECT COALESCE(jsonb_agg(to_jsonb(s) - 'tenant_id' ORDER BY s.seq), '[]')
					  FROM mandant.audit_seal s WHERE s.tenant_id = tenant)));
END
$$;

COMMENT ON FUNCTION mandant.op_export_tenant(uuid) IS
'Internal: the body of mandant.export_tenant(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.export_tenant(tenant uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM mandant.gate_check('export_tenant');
	RETURN mandant.op_export_tenant(tenant);
END
$$;

COMMENT ON FUNCTION mandant.export_tenant(uuid) IS
'Everything of a tenant as one JSON document (format mandant.tenant-export, version 1): the tenant, the rows of every tenant table, its roles, members (e-mail, name, role: never password hashes or secrets), configuration and its history, quota changes, charged usage and the audit trail with its seals. mandant_admin only.';

/*
 * import_rows inserts exported rows into one tenant table, for tenant (the
 * rows' own tenant column is ignored), as the table's owner and in replica
 * mode: the table's triggers do not audit, emit or re-check restored rows
 * (op_import_tenant_finish checks their foreign keys).
 */
CREATE FUNCTION mandant.import_rows(tbl regclass, tenant_column name, tenant uuid, rows jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	columns	text;
	fields	text;
BEGIN
	SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
		   string_agg(CASE WHEN a.attname = tenant_column THEN '$1' ELSE 'r.' || quote_ident(a.attname) END,
					  ', ' ORDER BY a.attnum)
	INTO columns, fields
	FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
	RETURN mandant.run_as_table_owner(tbl, tenant,
		format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_recordset(NULL::%s, $2) r',
			   tbl, columns, fields, tbl),
		rows)::text::bigint;
END
$$;

COMMENT ON FUNCTION mandant.import_rows(regclass, name, uuid, jsonb) IS
'Internal: insert exported rows (a JSON array) into a tenant table for a tenant, as the table''s owner in replica mode.';

/*
 * import_sequences moves the sequences behind a table's columns past the
 * imported ids.
 */
CREATE FUNCTION mandant.import_sequences(tbl regclass, tenant uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	seq		text;
	col		name;
BEGIN
	FOR col, seq IN
		SELECT a.attname, pg_get_serial_sequence(tbl::text, a.attname)
		FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
	LOOP
		IF seq IS NOT NULL THEN
			PERFORM mandant.run_as_table_owner(tbl, tenant,
				format('SELECT to_jsonb(setval(%L, GREATEST((SELECT max(%I) FROM %s), (SELECT last_value FROM %s))))',
					   seq, col, tbl, seq::regclass));
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.import_sequences(regclass, uuid) IS
'Internal: move the sequences behind a tenant table''s columns past the largest imported values.';

/*
 * check_imported_references: import_tenant runs in replica mode (so that
 * the tables' own triggers do not audit, emit or re-check the restored
 * rows), which also skips foreign key checks; this does them for the
 * tenant's rows of one table (MATCH SIMPLE: rows with a NULL key column
 * reference nothing).  Queries are built from the catalog only.
 */
CREATE FUNCTION mandant.check_imported_references(tbl regclass, tenant_column name, tenant uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fk		record;
	missing	bigint;
BEGIN
	FOR fk IN
		SELECT c.conname, c.confrelid::regclass AS parent,
			   string_agg(format('c.%I IS NOT NULL', ca.attname), ' AND ' ORDER BY k.n) AS present,
			   string_agg(format('p.%I = c.%I', pa.attname, ca.attname), ' AND ' ORDER BY k.n) AS matches
		FROM pg_constraint c
		CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k (child, parent, n)
		JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.child
		JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.parent
		WHERE c.conrelid = tbl AND c.contype = 'f' AND c.conparentid = 0
		  AND c.confrelid <> 'mandant.tenant'::regclass		-- the rows are the imported tenant's
		GROUP BY c.oid, c.conname, c.confrelid
		ORDER BY c.conname
	LOOP
		missing := mandant.run_as_table_owner(tbl, tenant,
			format('SELECT to_jsonb(count(*)) FROM %s c WHERE c.%I = $1 AND %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)',
				   tbl, tenant_column, fk.present, fk.parent, fk.matches));
		IF missing > 0 THEN
			RAISE EXCEPTION 'imported rows of % reference rows that do not exist', tbl
				USING ERRCODE = 'foreign_key_violation',
					  DETAIL = format('%s row(s) break foreign key %s to %s.', missing, fk.conname, fk.parent),
					  HINT = format('Import or create the referenced rows of %s first, or fix the export.', fk.parent);
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.check_imported_references(regclass, name, uuid) IS
'Internal: raise 23503 when a tenant''s imported rows of a table reference rows that do not exist (import runs in replica mode, which skips foreign key triggers).';

/*
 * op_import_tenant_begin checks what an import brings against this
 * database (the tenant's slug, id, operation id and plan, the tables) and
 * inserts the tenant's row.  tables: a JSON array of the tenant tables
 * that bring rows.  The first step of import_tenant and of
 * COPY mandant.tenant_import.
 */
CREATE FUNCTION mandant.op_import_tenant_begin(tenant jsonb, tables jsonb)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	t		mandant.tenant;
	name	text;
BEGIN
	IF jsonb_typeof(tenant) IS DISTINCT FROM 'object' OR jsonb_typeof(COALESCE(tables, '[]')) <> 'array' THEN
		RAISE EXCEPTION 'export names no tenant'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The "tenant" object or the list of tables is missing.',
				  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned.';
	END IF;
	t := jsonb_populate_record(NULL::mandant.tenant, tenant);
	IF t.id IS NULL OR t.slug IS NULL THEN
		RAISE EXCEPTION 'export names no tenant'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The "tenant" object lacks id or slug.',
				  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned.';
	END IF;
	IF t.id = '00000000-0000-0000-0000-000000000000' THEN
		RAISE EXCEPTION 'export names the platform, not a tenant'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Tenant id 00000000-0000-0000-0000-000000000000 is the platform''s: its audit chain holds the platform''s own records.',
				  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned for a tenant.';
	END IF;
	PERFORM mandant.check_tenant_slug(t.slug);
	IF EXISTS (SELECT 1 FROM mandant.tenant x WHERE x.slug = t.slug OR x.id = t.id) THEN
		RAISE EXCEPTION 'tenant "%" already exists', t.slug
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'A tenant with this slug or id is in this database.',
				  HINT = 'Delete it first, or import into another database.';
	END IF;
	SELECT x.slug INTO name FROM mandant.tenant x WHERE x.operation_id = t.operation_id;
	IF FOUND THEN
		RAISE EXCEPTION 'operation % of tenant "%" created tenant "%" here', t.operation_id, t.slug, name
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'Operation ids make tenant creation idempotent, so one operation creates one tenant.',
				  HINT = 'Import into another database, or set "operation_id" of the export''s tenant to null.';
	END IF;
	PERFORM mandant.check_slug_quarantine(t.slug, t.id);
	IF NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.key = t.plan_key) THEN
		RAISE EXCEPTION 'plan "%" of the export does not exist here', t.plan_key
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'mandant.plan has no such key.',
				  HINT = 'Create the plan first.';
	END IF;
	FOR name IN SELECT jsonb_array_elements_text(COALESCE(tables, '[]')) LOOP
		IF NOT EXISTS (SELECT 1 FROM mandant.tenant_tables() x WHERE x.relid::text = name) THEN
			RAISE EXCEPTION 'table % of the export is not a tenant table here', name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Every table of the export must exist and be registered with mandant.enable_tenancy.',
					  HINT = 'Create the schema (migrations) first.';
		END IF;
	END LOOP;
	INSERT INTO mandant.tenant SELECT (t).*;
	RETURN t.id;
END
$$;

COMMENT ON FUNCTION mandant.op_import_tenant_begin(jsonb, jsonb) IS
'Internal: check an imported tenant and its tables against this database and insert the tenant''s row (first step of import_tenant and of COPY mandant.tenant_import).';

/*
 * op_import_tenant_items imports a JSON array of one kind of a tenant's
 * records: role, membership (returns the e-mails that have no account
 * here), configHistory, config (history first: revisions are this
 * database's, taken anew in order), quotaChange, charged, auditEvent,
 * auditSeal.
 */
CREATE FUNCTION mandant.op_import_tenant_items(tenant uuid, kind text, items jsonb)
RETURNS text[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	h		record;
	rev		bigint;
	skipped	text[];
BEGIN
	IF jsonb_typeof(items) IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'imported % records are not a JSON array', kind
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('They were %s.', COALESCE(jsonb_typeof(items), 'missing')),
				  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned.';
	END IF;
	IF kind IN ('auditEvent', 'auditSeal') AND jsonb_array_length(items) > 0
	   AND mandant.citus_distribution_column('mandant.audit_event') IS NOT NULL THEN
		RAISE EXCEPTION 'importing an audit trail is not supported on Citus yet'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Each node seals the events of its shards by its own transaction ids; imported events carry those of the server they come from.',
				  HINT = 'Import the tenant into a server without Citus, or leave out its auditEvent and auditSeal records (README, "Scale out").';
	END IF;
	CASE kind
	WHEN 'role' THEN
		PERFORM mandant.check_role_definition(r.name, r.scopes)
		FROM jsonb_to_recordset(items) AS r (name text, scopes text[]);
		INSERT INTO mandant.role (tenant_id, name, scopes, description)
		SELECT tenant, r.name, r.scopes, r.description
		FROM jsonb_to_recordset(items) AS r (name text, scopes text[], description text);
	WHEN 'membership' THEN
		INSERT INTO mandant.membership (tenant_id, user_id, role, created_at, created_by)
		SELECT tenant, u.id, m.role, m."createdAt", m."createdBy"
		FROM jsonb_to_recordset(items) AS m (email text, role text, "createdAt" timestamptz, "createdBy" text)
		JOIN mandant.users u ON lower(u.email) = lower(m.email);
		SELECT COALESCE(array_agg(m.email ORDER BY m.email), '{}') INTO skipped
		FROM jsonb_to_recordset(items) AS m (email text)
		WHERE NOT EXISTS (SELECT 1 FROM mandant.users u WHERE lower(u.email) = lower(m.email));
	WHEN 'configHistory' THEN
		FOR h IN SELECT * FROM jsonb_populate_recordset(NULL::mandant.config_history, items) ORDER BY revision LOOP
			INSERT INTO mandant.config_clock AS c (id, revision) VALUES (1, 1)
			ON CONFLICT (id) DO UPDATE SET revision = c.revision + 1 RETURNING c.revision INTO rev;
			INSERT INTO mandant.config_history (revision, tenant_id, service, key, version, old_value, new_value,
												reason, changed_by, actor_user_id, request_id, changed_at)
			VALUES (rev, tenant, h.service, h.key, h.version, h.old_value, h.new_value, h.reason, h.changed_by,
					h.actor_user_id, h.request_id, h.changed_at);
		END LOOP;
	WHEN 'config' THEN
		FOR h IN SELECT * FROM jsonb_populate_recordset(NULL::mandant.config_entry, items) LOOP
			INSERT INTO mandant.config_clock AS c (id, revision) VALUES (1, 1)
			ON CONFLICT (id) DO UPDATE SET revision = c.revision + 1 RETURNING c.revision INTO rev;
			INSERT INTO mandant.config_entry (tenant_id, service, key, value, version, revision, updated_at, updated_by, deleted_at)
			VALUES (tenant, h.service, h.key, h.value, h.version, rev, h.updated_at, h.updated_by, h.deleted_at);
		END LOOP;
	WHEN 'quotaChange' THEN
		INSERT INTO mandant.quota_change (tenant_id, resource, "limit", effective_at, reason, actor, created_at)
		SELECT tenant, q.resource, q."limit", q.effective_at, q.reason, q.actor, q.created_at
		FROM jsonb_populate_recordset(NULL::mandant.quota_change, items) q;
	WHEN 'charged' THEN
		IF EXISTS (SELECT 1 FROM jsonb_to_recordset(items) AS c (used bigint) WHERE c.used IS NULL OR c.used < 0) THEN
			RAISE EXCEPTION 'imported usage is negative or missing'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Charged usage counts what a tenant used: 0 or more.',
					  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned.';
		END IF;
		INSERT INTO mandant.tenant_usage (tenant_id, resource, used)
		SELECT tenant, c.resource, c.used FROM jsonb_to_recordset(items) AS c (resource text, used bigint);
	WHEN 'auditEvent' THEN
		/* the shared id sequence moves past imported ids: no id may exhaust it */
		IF EXISTS (SELECT 1 FROM jsonb_array_elements(items) e
				   WHERE jsonb_typeof(e -> 'id') IS DISTINCT FROM 'number' OR (e ->> 'id')::numeric NOT BETWEEN 1 AND 4611686018427387904) THEN
			RAISE EXCEPTION 'imported audit event id out of range'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Audit event ids are numbers from 1 to 2^62; the sequence that all tenants share moves past them.',
					  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned.';
		END IF;
		INSERT INTO mandant.audit_event
		SELECT r.* FROM jsonb_array_elements(items) e,
			 LATERAL jsonb_populate_record(NULL::mandant.audit_event, e || jsonb_build_object('tenant_id', tenant)) r;
	WHEN 'auditSeal' THEN
		INSERT INTO mandant.audit_seal
		SELECT r.* FROM jsonb_array_elements(items) s,
			 LATERAL jsonb_populate_record(NULL::mandant.audit_seal, s || jsonb_build_object('tenant_id', tenant)) r;
	ELSE
		RAISE EXCEPTION 'unknown kind of imported records "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Known kinds: role, membership, configHistory, config, quotaChange, charged, auditEvent, auditSeal.',
				  HINT = 'Pass what mandant.export_tenant() or mandant.export_tenant_stream() returned.';
	END CASE;
	RETURN skipped;
END
$$;

COMMENT ON FUNCTION mandant.op_import_tenant_items(uuid, text, jsonb) IS
'Internal: import a JSON array of one kind of a tenant''s records (roles, members, configuration, quota changes, usage, audit events and seals); returns the members'' e-mails that have no account here.';

/*
 * op_import_tenant_finish ends an import: the imported rows' foreign keys
 * are checked (replica mode skipped them), sequences move past the
 * imported ids, the audit chain must verify as it arrived, and the import
 * is announced and recorded in the platform's trail.
 */
CREATE FUNCTION mandant.op_import_tenant_finish(tenant uuid, tables regclass[], skipped text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	t		mandant.tenant;
	tbl		record;
	verdict	jsonb;
BEGIN
	SELECT * INTO STRICT t FROM mandant.tenant x WHERE x.id = tenant;
	skipped := COALESCE(skipped, '{}');
	FOR tbl IN SELECT * FROM mandant.tenant_tables() x WHERE x.relid = ANY (tables) ORDER BY x.depth DESC, x.relid::text LOOP
		PERFORM mandant.check_imported_references(tbl.relid, tbl.tenant_column, tenant);
		PERFORM mandant.import_sequences(tbl.relid, tenant);
	END LOOP;
	verdict := mandant.audit_verify_chain(tenant, '{}', 'import');
	IF NOT (verdict ->> 'ok')::boolean THEN
		RAISE EXCEPTION 'imported audit trail of tenant "%" does not verify', t.slug
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Audit event %s does not match its hash or its place in the chain (%s events checked).',
								  verdict ->> 'firstBadId', verdict ->> 'checked'),
				  HINT = 'The export was changed after it was made, or its source''s trail was; mandant.audit_verify() on the source tells which.';
	END IF;
	/* setval is not undone by a rollback: only a verified import moves the sequence */
	PERFORM setval('mandant.audit_event_id_seq', GREATEST(
		(SELECT max(e.id) FROM mandant.audit_event e WHERE e.tenant_id = tenant),
		(SELECT last_value FROM mandant.audit_event_id_seq)));

	PERFORM mandant.emit_for(NULL, 'platform.tenant.imported', t.id::text,
							 mandant.tenant_payload(t) || jsonb_build_object('membersSkipped', skipped));
	PERFORM mandant.audit_log_for(NULL, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'tenant.imported', 'tenant', t.id::text,
								  jsonb_build_object('slugSha256', encode(sha256(convert_to(t.slug, 'UTF8')), 'hex'),
													 'membersSkipped', cardinality(skipped),
													 'auditEvents', (SELECT count(*) FROM mandant.audit_event e WHERE e.tenant_id = t.id),
													 'chainHead', (SELECT jsonb_build_object('seq', a.seq, 'chain', encode(a.chain, 'hex'))
																   FROM mandant.audit_seal a WHERE a.tenant_id = t.id
																   ORDER BY a.seq DESC LIMIT 1)));
	IF cardinality(skipped) > 0 THEN
		RAISE WARNING 'members without an account here were not imported: %', array_to_string(skipped, ', ')
			USING HINT = 'Create the users, then add them with mandant.add_member().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_import_tenant_finish(uuid, regclass[], text[]) IS
'Internal: end an import: check the imported rows'' foreign keys, move sequences, verify the audit chain, announce and record the import.';

CREATE FUNCTION mandant.op_import_tenant(export jsonb)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	tenant	uuid;
	tbl		record;
	rows	jsonb;
	tables	regclass[] := '{}';
	skipped	text[];
BEGIN
	IF export IS NULL OR jsonb_typeof(export) <> 'object' OR export ->> 'format' IS DISTINCT FROM 'mandant.tenant-export' THEN
		RAISE EXCEPTION 'not a mandant tenant export'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The document has no "format": "mandant.tenant-export".',
				  HINT = 'Pass what mandant.export_tenant() returned.';
	END IF;
	IF export -> 'version' IS DISTINCT FROM '1'::jsonb THEN
		RAISE EXCEPTION 'unsupported export version %', COALESCE(export ->> 'version', 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'This mandant reads exports of version 1.',
				  HINT = 'Export again with this version of mandant.';
	END IF;
	tenant := mandant.op_import_tenant_begin(export -> 'tenant',
		(SELECT COALESCE(jsonb_agg(k), '[]') FROM jsonb_object_keys(COALESCE(export -> 'tables', '{}')) k));
	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth DESC, relid::text LOOP
		rows := export -> 'tables' -> tbl.relid::text;
		IF rows IS NOT NULL THEN
			PERFORM mandant.import_rows(tbl.relid, tbl.tenant_column, tenant, rows);
			tables := tables || tbl.relid;
		END IF;
	END LOOP;
	PERFORM mandant.op_import_tenant_items(tenant, 'role', COALESCE(export -> 'roles', '[]'));
	skipped := mandant.op_import_tenant_items(tenant, 'membership', COALESCE(export -> 'memberships', '[]'));
	PERFORM mandant.op_import_tenant_items(tenant, 'configHistory', COALESCE(export -> 'configHistory', '[]'));
	PERFORM mandant.op_import_tenant_items(tenant, 'config', COALESCE(export -> 'config', '[]'));
	PERFORM mandant.op_import_tenant_items(tenant, 'quotaChange', COALESCE(export -> 'quotaChanges', '[]'));
	PERFORM mandant.op_import_tenant_items(tenant, 'charged',
		(SELECT COALESCE(jsonb_agg(jsonb_build_object('resource', c.key, 'used', c.value)), '[]')
		 FROM jsonb_each(COALESCE(export -> 'charged', '{}')) c));
	PERFORM mandant.op_import_tenant_items(tenant, 'auditEvent', COALESCE(export #> '{audit,events}', '[]'));
	PERFORM mandant.op_import_tenant_items(tenant, 'auditSeal', COALESCE(export #> '{audit,seals}', '[]'));
	PERFORM mandant.op_import_tenant_finish(tenant, tables, skipped);
	RETURN tenant;
END
$$;

COMMENT ON FUNCTION mandant.op_import_tenant(jsonb) IS
'Internal: the body of mandant.import_tenant(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.import_tenant(export jsonb)
RETURNS uuid
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('import_tenant');
	RETURN mandant.op_import_tenant(export);
END
$$;

COMMENT ON FUNCTION mandant.import_tenant(jsonb) IS
'Restore a tenant from mandant.export_tenant() (version 1) into this database: rows with their ids, members whose e-mail has an account here, configuration (new revisions), quota changes, audit trail and seals (audit_verify still passes; the platform''s tenant.imported record keeps the imported chain head). Refuses other versions and existing slugs; all or nothing. mandant_admin only.';

REVOKE ALL ON FUNCTION mandant.op_delete_tenant(uuid, text), mandant.op_export_tenant(uuid), mandant.op_import_tenant(jsonb),
	mandant.op_suspend_tenant(uuid, text), mandant.op_resume_tenant(uuid),
	mandant.op_complete_tenant_provisioning(uuid), mandant.op_fail_tenant_provisioning(uuid, text),
	mandant.import_rows(regclass, name, uuid, jsonb), mandant.import_sequences(regclass, uuid),
	mandant.check_imported_references(regclass, name, uuid),
	mandant.op_import_tenant_begin(jsonb, jsonb), mandant.op_import_tenant_items(uuid, text, jsonb),
	mandant.op_import_tenant_finish(uuid, regclass[], text[]),
	mandant.announce(uuid, text, text), mandant.check_slug_quarantine(text, uuid),
	mandant.after_tenant_created(uuid), mandant.tenant_by_operation(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_delete_tenant(uuid, text), mandant.op_export_tenant(uuid), mandant.op_import_tenant(jsonb),
	mandant.op_suspend_tenant(uuid, text), mandant.op_resume_tenant(uuid),
	mandant.op_complete_tenant_provisioning(uuid), mandant.op_fail_tenant_provisioning(uuid, text) TO mandant_admin;
GRANT EXECUTE ON FUNCTION mandant.op_complete_tenant_provisioning(uuid), mandant.op_fail_tenant_provisioning(uuid, text)
	TO mandant_service;
GRANT SET ON PARAMETER mandant.slug_quarantine_days TO mandant_admin;
