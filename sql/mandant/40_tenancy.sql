
/* ---------------------------------------------------------------------------
 * Tenancy: row-level security per tenant
 *
 * enable_tenancy() turns a table into a tenant table: a uuid tenant column
 * (NOT NULL, DEFAULT mandant.current_tenant(), FK to mandant.tenant), ENABLE
 * and FORCE row level security, one policy tenant_isolation (USING
 * tenant_id = mandant.tenant_filter(): the transaction's tenant, or MD001
 * with mandant.strict_context on and no tenant; WITH CHECK
 * mandant.row_in_tenant(tenant_id, tbl), which is the same test but raises
 * MD001 when no tenant is set and a 42501 naming the table and both tenants
 * rather than a bare policy violation), an index led by the
 * tenant column, and a row in the registry mandant.tenant_table.
 * It runs with the caller's rights: only the table's owner can do it, as
 * with ALTER TABLE itself.  The registry is written only through the gate
 * (mandant.gate_call, extension/gate.c), which checks again that the
 * caller owns the table, and by the event trigger that forgets dropped
 * tables.
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.tenant_table (
	relid			regclass PRIMARY KEY,
	tenant_column	name NOT NULL,
	enabled_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by		name NOT NULL DEFAULT CURRENT_USER
);

COMMENT ON TABLE mandant.tenant_table IS
'Registry of tenant tables (written by mandant.enable_tenancy through the gate; rows of dropped tables are removed by an event trigger).';

/* Everyone reads the registry; nobody writes it but mandant. */
ALTER TABLE mandant.tenant_table ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_table_read ON mandant.tenant_table
	FOR SELECT USING (true);

GRANT SELECT ON mandant.tenant_table TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_table', '');

/* ---- touching the application's tables (extension/usertable.c) */

CREATE FUNCTION mandant.run_as_table_owner(tbl regclass, tenant uuid, query text, rows jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_run_as_table_owner'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.run_as_table_owner(regclass, uuid, text, jsonb) IS
'Internal: run query ($1 tenant, $2 rows) as the owner of tbl inside a security-restricted operation, outside any tenant, with the owner''s forced row level security lifted; returns its first jsonb value or the number of rows it processed.';

CREATE FUNCTION mandant.delete_tenant_rows(tbl regclass, tenant uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_delete_tenant_rows'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.delete_tenant_rows(regclass, uuid) IS
'Internal to delete_tenant: delete tenant''s rows of the tenant table tbl as run_as_table_owner does, in batches of 10,000; mandant''s triggers write no audit, outbox or quota work for them.';

CREATE FUNCTION mandant.tenant_row_count(tbl regclass, tenant_column name, tenant uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_tenant_row_count'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.tenant_row_count(regclass, name, uuid) IS
'Internal: how many rows of tbl belong to tenant, counted without running any code of the table''s owner.';

CREATE FUNCTION mandant.delete_tenant_row(tenant uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_delete_tenant_row'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.delete_tenant_row(uuid) IS
'Internal to delete_tenant: delete the row of mandant.tenant inside a security-restricted operation, so that the tenant tables'' foreign key checks run their owners'' code restricted.';

REVOKE ALL ON FUNCTION mandant.run_as_table_owner(regclass, uuid, text, jsonb),
	mandant.delete_tenant_rows(regclass, uuid), mandant.delete_tenant_row(uuid), mandant.tenant_row_count(regclass, name, uuid) FROM PUBLIC;

/*
 * alter_tenant_column_default sets or drops (action: 'SET DEFAULT
 * mandant.current_tenant()' or 'DROP DEFAULT') the default of a tenant
 * table's tenant column.  Citus refuses DDL on the column a table is
 * distributed by, and evaluates defaults where it plans the INSERT: the
 * coordinator's table alone carries it then.
 */
CREATE FUNCTION mandant.alter_tenant_column_default(tbl regclass, tenant_column name, action text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	distributed	boolean := mandant.citus_distribution_column(tbl) IS NOT DISTINCT FROM tenant_column;
	propagate	text;
BEGIN
	IF action NOT IN ('SET DEFAULT mandant.current_tenant()', 'DROP DEFAULT') THEN
		RAISE EXCEPTION 'unknown action on the default of a tenant column'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Action %L is neither SET DEFAULT mandant.current_tenant() nor DROP DEFAULT.', action),
				  HINT = 'Internal: called by enable_tenancy and disable_tenancy.';
	END IF;
	IF distributed THEN
		propagate := current_setting('citus.enable_ddl_propagation');
		PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
	END IF;
	EXECUTE format('ALTER TABLE %s ALTER COLUMN %I %s', tbl, tenant_column, action);
	IF distributed THEN
		PERFORM set_config('citus.enable_ddl_propagation', propagate, true);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.alter_tenant_column_default(regclass, name, text) IS
'Internal to enable_tenancy and disable_tenancy, which run as their caller: set or drop the default of a tenant column (on the coordinator alone for the column Citus distributes by). It runs as its caller and needs the caller to own the table.';

/*
 * check_table_target raises unless tbl is a permanent table of the
 * application (not a catalog, not mandant's own, not temporary) whose
 * owner the current user is (has the privileges of).  The same C check
 * guards the gate's table operations (extension/usertable.c).
 */
CREATE FUNCTION mandant.check_table_target(tbl regclass, function_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_table_target'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_table_target(regclass, text) IS
'Raise unless tbl is a permanent application table the current user owns (22004, 42809, 0A000 or 42501, naming function_name).';


CREATE FUNCTION mandant.tenant_policy_is_current(tbl regclass, tenant_column name)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (
		SELECT 1 FROM pg_policy p
		WHERE p.polrelid = tbl AND p.polname = 'tenant_isolation'
		  AND p.polcmd = '*' AND p.polpermissive AND p.polroles = '{0}'
		  AND pg_get_expr(p.polqual, p.polrelid)
			  = format('(%I = mandant.tenant_filter())', tenant_column)
		  AND pg_get_expr(p.polwithcheck, p.polrelid)
			  ~ ('^mandant\.row_in_tenant\(' || regexp_replace(quote_ident(tenant_column), '([^a-z0-9_])', '\\\1', 'g')
				 || ', ''([^'']|'''''')*''::text\)$'))
$$;

COMMENT ON FUNCTION mandant.tenant_policy_is_current(regclass, name) IS
'True when tbl has the tenant_isolation policy that mandant.enable_tenancy() creates for tenant_column.';

CREATE FUNCTION mandant.enable_tenancy(tbl regclass, tenant_column name DEFAULT 'tenant_id',
									   add_column boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	col				record;
	has_column		boolean;
	has_rows		boolean;
	attnum			smallint;
	other			name;
	dist_column		name;
	distributed		boolean;
	shard_mode		text;
BEGIN
	/* Validate everything before changing anything. */
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_tenancy');
	IF tenant_column IS NULL THEN
		RAISE EXCEPTION 'tenant column must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = format('mandant.enable_tenancy(%L) was called with a NULL column name.', tbl),
				  HINT = 'Omit the argument to use tenant_id.';
	END IF;

	SELECT a.atttypid::regtype AS type, a.attnotnull, a.attgenerated INTO col
	FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
	has_column := FOUND;

	IF has_column THEN
		IF col.type <> 'uuid'::regtype THEN
			RAISE EXCEPTION 'column "%" of table % must be of type uuid', tenant_column, tbl
				USING ERRCODE = 'datatype_mismatch',
					  DETAIL = format('Column %I is of type %s.', tenant_column, col.type),
					  HINT = 'Change its type to uuid, or name the right column in the second argument.';
		END IF;
		IF col.attgenerated <> '' THEN
			RAISE EXCEPTION 'column "%" of table % is a generated column', tenant_column, tbl
				USING ERRCODE = 'wrong_object_type',
					  DETAIL = 'A generated column cannot take mandant.current_tenant() as its default.',
					  HINT = 'Use a plain uuid column for the tenant.';
		END IF;
		IF NOT col.attnotnull THEN
			EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I IS NULL)', tbl, tenant_column)
				INTO has_rows;
			IF has_rows THEN
				RAISE EXCEPTION 'column "%" of table % contains nulls', tenant_column, tbl
					USING ERRCODE = 'not_null_violation',
						  DETAIL = 'Every row of a tenant table must belong to a tenant.',
						  HINT = format('Assign the rows first: UPDATE %s SET %I = ... WHERE %I IS NULL.', tbl, tenant_column, tenant_column);
			END IF;
		END IF;
	ELSE
		/* Never invent a column the table may already have under another name. */
		SELECT a.attname INTO other
		FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
		WHERE k.conrelid = tbl AND k.contype = 'f' AND k.confrelid = 'mandant.tenant'::regclass
		  AND cardinality(k.conkey) = 1
		ORDER BY a.attnum LIMIT 1;
		IF other IS NOT NULL AND NOT add_column THEN
			RAISE EXCEPTION 'table % has no column "%", but its column "%" references mandant.tenant', tbl, tenant_column, other
				USING ERRCODE = 'undefined_column',
					  DETAIL = format('Column %I already holds the tenant of each row.', other),
					  HINT = format('Name it: SELECT mandant.enable_tenancy(%L, %L).', tbl::text, other);
		END IF;
		IF NOT add_column THEN
			RAISE EXCEPTION 'table % has no column "%"', tbl, tenant_column
				USING ERRCODE = 'undefined_column',
					  DETAIL = 'A tenant table keeps the tenant of each row in a uuid column; mandant does not add one unasked.',
					  HINT = format('Add it (ALTER TABLE %s ADD COLUMN %I uuid NOT NULL), name another uuid column in the second argument, or pass add_column => true.',
									tbl, tenant_column);
		END IF;
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', tbl) INTO has_rows;
		IF has_rows THEN
			RAISE EXCEPTION 'table % has rows but no column "%"', tbl, tenant_column
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'mandant cannot guess which tenant the existing rows belong to.',
					  HINT = format('Add the column (ALTER TABLE %s ADD COLUMN %I uuid), fill it, then call mandant.enable_tenancy() again.', tbl, tenant_column);
		END IF;
	END IF;

	/*
	 * On Citus, a distributed table's DDL and the foreign key to the
	 * reference table mandant.tenant must share one connection per node.
	 */
	dist_column := mandant.citus_distribution_column(tbl);
	distributed := dist_column IS NOT DISTINCT FROM tenant_column;
	IF dist_column IS NOT NULL THEN
		shard_mode := current_setting('citus.multi_shard_modify_mode');
		PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
	END IF;

	/* The tenant column: uuid, NOT NULL, defaulting to the context. */
	IF NOT has_column THEN
		EXECUTE format('ALTER TABLE %s ADD COLUMN %I uuid NOT NULL DEFAULT mandant.current_tenant()',
					   tbl, tenant_column);
	ELSE
		/*
		 * Citus refuses DDL on the column a table is distributed by, which
		 * holds no NULL anyway; it evaluates defaults where it plans the
		 * INSERT, so the coordinator's table is the one that needs it.
		 */
		IF NOT col.attnotnull AND NOT distributed THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, tenant_column);
		END IF;
		IF mandant.tenant_column_default(tbl, tenant_column) IS DISTINCT FROM 'mandant.current_tenant()' THEN
			PERFORM mandant.alter_tenant_column_default(tbl, tenant_column, 'SET DEFAULT mandant.current_tenant()');
		END IF;
	END IF;

	SELECT a.attnum INTO attnum FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = tenant_column AND NOT a.attisdropped;

	/* Row level security, forced so that the owner obeys it too. */
	IF NOT (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = tbl) THEN
		EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
	END IF;
	IF NOT (SELECT c.relforcerowsecurity FROM pg_class c WHERE c.oid = tbl) THEN
		EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
	END IF;

	/*
	 * One policy for every command and role; replaced if it drifted.  Reads
	 * without a tenant see nothing; writes without one fail with MD001.
	 */
	IF NOT mandant.tenant_policy_is_current(tbl, tenant_column) THEN
		IF EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = 'tenant_isolation') THEN
			EXECUTE format('DROP POLICY tenant_isolation ON %s', tbl);
		END IF;
		EXECUTE format('CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
					   'USING (%I = mandant.tenant_filter()) '
					   'WITH CHECK (mandant.row_in_tenant(%I, %L::text))',
					   tbl, tenant_column, tenant_column, tbl::text);
	END IF;

	/* An index led by the tenant column (a primary key on it counts). */
	IF NOT EXISTS (SELECT 1 FROM pg_index i
				   WHERE i.indrelid = tbl AND i.indkey[0] = attnum AND i.indpred IS NULL) THEN
		EXECUTE format('CREATE INDEX ON %s (%I)', tbl, tenant_column);
	END IF;

	/* The registration adds the foreign key to mandant.tenant. */
	PERFORM mandant.gate_call('register_tenant_table', NULL,
							  jsonb_build_object('table', tbl::oid, 'tenantColumn', tenant_column));
	IF shard_mode IS NOT NULL THEN
		PERFORM set_config('citus.multi_shard_modify_mode', shard_mode, true);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.enable_tenancy(regclass, name, boolean) IS
'Make tbl a tenant table: its uuid tenant column (NOT NULL, DEFAULT mandant.current_tenant(), FK to mandant.tenant; added only with add_column => true), ENABLE + FORCE row level security, policy tenant_isolation, index led by the tenant column, registry row. Idempotent; the table owner only.';

/*
 * tenant_column_default returns the deparsed default of a column, or NULL.
 */
CREATE FUNCTION mandant.tenant_column_default(tbl regclass, column_name name)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_get_expr(d.adbin, d.adrelid)
	FROM pg_attrdef d
	JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
	WHERE d.adrelid = tbl AND a.attname = column_name
$$;

COMMENT ON FUNCTION mandant.tenant_column_default(regclass, name) IS
'Internal to enable_tenancy/disable_tenancy: the deparsed default of a column, or NULL.';

CREATE FUNCTION mandant.disable_tenancy(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant_column	name;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_tenancy');

	SELECT r.tenant_column INTO tenant_column FROM mandant.tenant_table r WHERE r.relid = tbl;
	IF NOT FOUND THEN
		RAISE NOTICE 'table % is not a tenant table, nothing to do', tbl;
		RETURN;
	END IF;

	IF EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = 'tenant_isolation') THEN
		EXECUTE format('DROP POLICY tenant_isolation ON %s', tbl);
	END IF;

	/* Other policies are the owner's; keep row level security for them. */
	IF NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = tbl) THEN
		EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', tbl);
		EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
	END IF;

	IF mandant.tenant_column_default(tbl, tenant_column) = 'mandant.current_tenant()' THEN
		PERFORM mandant.alter_tenant_column_default(tbl, tenant_column, 'DROP DEFAULT');
	END IF;

	PERFORM mandant.gate_call('unregister_tenant_table', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_tenancy(regclass) IS
'Undo enable_tenancy: drop policy tenant_isolation, disable row level security (unless other policies remain) and the column default, unregister. Keeps the column, its data, FK and index.';

/*
 * registry_tenant_table registers args.table as a tenant table through
 * args.tenantColumn, once enable_tenancy has set it up: the column is a
 * uuid, row level security is enabled and forced, the policy is
 * mandant's.  It adds the foreign key from the column to mandant.tenant
 * (NO ACTION: deleting a tenant deletes the rows first): nobody holds
 * REFERENCES on mandant.tenant, so the table's owner is granted it for the
 * ALTER TABLE alone, which runs as the owner in a security-restricted
 * operation (checking the existing rows plans queries on the table, which
 * runs the owner's functions in index predicates).  Run by the gate for
 * the table's owner.
 */
CREATE FUNCTION mandant.registry_tenant_table(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl			regclass := (args ->> 'table')::oid::regclass;
	col			name := args ->> 'tenantColumn';
	owner		regrole;
BEGIN
	IF col IS NULL OR NOT EXISTS (
		SELECT 1 FROM pg_attribute a
		WHERE a.attrelid = tbl AND a.attname = col AND a.atttypid = 'uuid'::regtype
		  AND a.attnotnull AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'table % has no tenant column "%"', tbl, col
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'A tenant table has a uuid column NOT NULL that names the tenant.',
				  HINT = 'Call mandant.enable_tenancy() on the table.';
	END IF;
	IF NOT (SELECT c.relrowsecurity AND c.relforcerowsecurity FROM pg_class c WHERE c.oid = tbl)
		OR NOT mandant.tenant_policy_is_current(tbl, col) THEN
		RAISE EXCEPTION 'table % is not isolated by tenant', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Row level security must be enabled and forced, with mandant''s policy tenant_isolation.',
				  HINT = 'Call mandant.enable_tenancy() on the table.';
	END IF;
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.tenant_table AS r (relid, tenant_column, enabled_by)
	VALUES (tbl, col, caller)
	ON CONFLICT (relid) DO UPDATE SET tenant_column = EXCLUDED.tenant_column,
		enabled_at = EXCLUDED.enabled_at, enabled_by = EXCLUDED.enabled_by
	WHERE r.tenant_column IS DISTINCT FROM EXCLUDED.tenant_column;
	/* its name and owner outlive its relation (mandant.tenant_tables_unregistered) */
	INSERT INTO mandant.tenant_table_name AS n (nspname, relname, owner)
	SELECT s.nspname, c.relname, pg_get_userbyid(c.relowner)
	FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.oid = tbl
	ON CONFLICT (nspname, relname) DO UPDATE SET owner = EXCLUDED.owner
	WHERE n.owner IS DISTINCT FROM EXCLUDED.owner;
	/*
	 * Not on Citus: there the key would be added over the owner's worker
	 * connections, which do not see the grant made over the superuser's
	 * in the same transaction; the policy admits rows of the transaction's
	 * tenant alone, which set_tenant checked.
	 */
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL AND NOT EXISTS (
				   SELECT 1 FROM pg_constraint k
				   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
				   WHERE k.conrelid = tbl AND k.contype = 'f'
					 AND k.confrelid = 'mandant.tenant'::regclass
					 AND cardinality(k.conkey) = 1 AND a.attname = col) THEN
		SELECT c.relowner::regrole INTO owner FROM pg_class c WHERE c.oid = tbl;
		EXECUTE format('GRANT REFERENCES (id) ON mandant.tenant TO %s', owner);
		/* $1, the tenant, is not used: the statement concerns the whole table */
		PERFORM mandant.run_as_table_owner(tbl, '00000000-0000-0000-0000-000000000000',
			format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES mandant.tenant (id)',
				   tbl, left(col, 40) || '_mandant_tenant_fkey', col));
		EXECUTE format('REVOKE REFERENCES (id) ON mandant.tenant FROM %s', owner);
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.registry_forget_tenant_table(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	DELETE FROM mandant.tenant_table r WHERE r.relid = (args ->> 'table')::oid;
	SELECT NULL::jsonb;
$$;
