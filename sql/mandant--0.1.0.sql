/*
 * mandant install script.
 *
 * Built by concatenating the files of sql/mandant/ in name order; each
 * file is one topic.  Objects live in schema mandant (fixed by
 * mandant.control).  Every SECURITY DEFINER function sets search_path =
 * pg_catalog, pg_temp and qualifies every name.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION mandant CASCADE" to load this file. \quit

/* ---------------------------------------------------------------------------
 * Roles
 *
 * Three group roles, NOLOGIN, created only if missing (roles are cluster-wide
 * and outlive the extension).  Grant them to login roles:
 *   mandant_admin    platform operators: create tenants, manage across tenants
 *   mandant_service  trusted backends and jobs: may choose their tenant
 *   mandant_gateway  the HTTP gateway (its rights come with its issue)
 * ------------------------------------------------------------------------- */

DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['mandant_admin', 'mandant_service', 'mandant_gateway']
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

COMMENT ON ROLE mandant_admin IS 'mandant: platform administrators (create tenants, act across tenants)';
COMMENT ON ROLE mandant_service IS 'mandant: trusted backends that may call mandant.set_tenant()';
COMMENT ON ROLE mandant_gateway IS 'mandant: the HTTP gateway''s database role';

GRANT USAGE ON SCHEMA mandant TO PUBLIC;

/* ---------------------------------------------------------------------------
 * Tenant context (extension/context.c)
 *
 * app.current_tenant, app.current_user_id and app.current_scopes can only be
 * set through these functions; every other way (SET, set_config, ALTER ROLE
 * ... SET, PGOPTIONS) is refused with 42501.  All settings are
 * transaction-local.
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.set_tenant(tenant_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION mandant.set_tenant(uuid) IS
'Enter a tenant for the rest of the transaction (members of mandant_service or mandant_admin only). Clears user and scopes. MD002 if unknown, MD003 if suspended.';

CREATE FUNCTION mandant.set_scopes(scopes text[])
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_scopes'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION mandant.set_scopes(text[]) IS
'Set the scopes of a trusted backend acting as itself, for the rest of the transaction (read, write, delete, admin, internal). Members of mandant_service or mandant_admin only.';

CREATE FUNCTION mandant.current_tenant()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_current_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.current_tenant() IS
'The tenant of the current transaction, or NULL when none is set.';

CREATE FUNCTION mandant.current_user_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_current_user_id'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.current_user_id() IS
'The end user of the current transaction, or NULL when none is set.';

CREATE FUNCTION mandant.current_scopes()
RETURNS text[]
AS 'MODULE_PATHNAME', 'mandant_current_scopes'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.current_scopes() IS
'The scopes held in the current transaction; an empty array when none.';

CREATE FUNCTION mandant.has_scope(scope text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_has_scope'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION mandant.has_scope(text) IS
'True when the current transaction holds the scope; an unknown scope name is an error (22023).';

CREATE FUNCTION mandant.require_tenant()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_require_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.require_tenant() IS
'The tenant of the current transaction; raises MD001 (TENANT_REQUIRED) when none is set.';

/* ---------------------------------------------------------------------------
 * Plans, reserved slugs, tenants
 *
 * mandant.tenant is a platform table: a session sees its own tenant's row,
 * mandant_admin and mandant_service see all rows, and rows are written only
 * through SECURITY DEFINER functions.  Every tenant table references
 * mandant.tenant(id), so REFERENCES on that column is granted to PUBLIC.
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.plan (
	key			text PRIMARY KEY
				CONSTRAINT plan_key_format CHECK (key ~ '^[a-z][a-z0-9_]{1,39}$'),
	name		text NOT NULL,
	limits		jsonb NOT NULL DEFAULT '{}'
				CONSTRAINT plan_limits_object CHECK (pg_catalog.jsonb_typeof(limits) = 'object'),
	builtin		boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE mandant.plan IS
'Plans and their limits (users, records, storage_bytes; null = unlimited).';

INSERT INTO mandant.plan (key, name, limits, builtin) VALUES
	('free', 'Free', '{"users": 2, "records": 5, "storage_bytes": 1073741824}', true),
	('starter', 'Starter', '{"users": 5, "records": 25, "storage_bytes": 10737418240}', true),
	('pro', 'Pro', '{"users": 20, "records": 100, "storage_bytes": 53687091200}', true),
	('enterprise', 'Enterprise', '{"users": null, "records": null, "storage_bytes": 536870912000}', true);

GRANT SELECT ON mandant.plan TO PUBLIC;

/*
 * Operators may change the seeded plans' names and limits, and backups
 * must keep that: every plan is dumped, and since CREATE EXTENSION seeds
 * the built-in rows again before pg_restore copies the dumped ones, a
 * dumped built-in row (builtin = true, which only the seeds and dumps
 * carry) updates the seeded one instead of colliding with it.
 */
CREATE FUNCTION mandant.plan_restore_builtin()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.builtin THEN
		UPDATE mandant.plan p SET name = NEW.name, limits = NEW.limits, created_at = NEW.created_at
		WHERE p.key = NEW.key AND p.builtin;
		IF FOUND THEN
			RETURN NULL;
		END IF;
	END IF;
	RETURN NEW;
END
$$;

COMMENT ON FUNCTION mandant.plan_restore_builtin() IS
'Trigger: a built-in plan inserted again (pg_restore after CREATE EXTENSION seeded it) updates the seeded row.';

CREATE TRIGGER restore_builtin BEFORE INSERT ON mandant.plan
	FOR EACH ROW EXECUTE FUNCTION mandant.plan_restore_builtin();
ALTER TABLE mandant.plan ENABLE ALWAYS TRIGGER restore_builtin;

CREATE TABLE mandant.reserved_slug (
	slug		text PRIMARY KEY,
	builtin		boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE mandant.reserved_slug IS
'Slugs no tenant may take (subdomains of the platform itself). Operators may add rows.';

INSERT INTO mandant.reserved_slug (slug, builtin)
SELECT s, true
FROM pg_catalog.unnest(ARRAY[
	'www', 'api', 'admin', 'app', 'apps', 'auth', 'login', 'logout', 'signin',
	'signup', 'register', 'account', 'accounts', 'billing', 'status', 'help',
	'support', 'docs', 'blog', 'mail', 'email', 'smtp', 'imap', 'pop', 'ftp',
	'ns1', 'ns2', 'dns', 'cdn', 'static', 'assets', 'media', 'files', 'dev',
	'staging', 'test', 'demo', 'internal', 'root', 'system', 'mandant',
	'dashboard', 'console', 'portal', 'public', 'health', 'ready', 'metrics',
	'webhook', 'webhooks', 'graphql', 'localhost', 'security', 'tenant',
	'tenants', 'platform', 'null', 'undefined'
]) AS s;

GRANT SELECT ON mandant.reserved_slug TO PUBLIC;

CREATE TABLE mandant.tenant (
	id				uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	slug			text NOT NULL
					CONSTRAINT tenant_slug_key UNIQUE
					CONSTRAINT tenant_slug_format
						CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
	name			text NOT NULL
					CONSTRAINT tenant_name_length
						CHECK (pg_catalog.length(pg_catalog.btrim(name)) BETWEEN 1 AND 200),
	status			text NOT NULL DEFAULT 'active'
					CONSTRAINT tenant_status_value
						CHECK (status IN ('pending', 'active', 'suspended', 'failed', 'deleted')),
	status_reason	text,
	plan_key		text NOT NULL DEFAULT 'free' REFERENCES mandant.plan (key),
	operation_id	uuid CONSTRAINT tenant_operation_id_key UNIQUE,
	owner_email		text NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		text NOT NULL DEFAULT SESSION_USER
);

COMMENT ON TABLE mandant.tenant IS
'One row per tenant. Written only through mandant functions; a session sees its own tenant, mandant_admin and mandant_service see all.';

ALTER TABLE mandant.tenant ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_self ON mandant.tenant
	FOR SELECT USING (id = mandant.current_tenant());

CREATE POLICY tenant_platform ON mandant.tenant
	FOR SELECT TO mandant_admin, mandant_service USING (true);

GRANT SELECT ON mandant.tenant TO PUBLIC;
GRANT REFERENCES (id) ON mandant.tenant TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.plan', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.reserved_slug', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('mandant.tenant', '');

/*
 * require_reason raises 22023 when an operation that keeps its reason got
 * none (NULL or blank): "a reason is required to <action>".
 */
CREATE FUNCTION mandant.require_reason(reason text, action text, detail text, hint text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a reason is required to %', action
			USING ERRCODE = 'invalid_parameter_value', DETAIL = detail, HINT = hint;
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.require_reason(text, text, text, text) IS
'Internal: raise 22023 ("a reason is required to <action>") when reason is NULL or blank.';

/*
 * check_tenant_slug raises 22004/22023 when a slug cannot name a tenant:
 * not a lower-case DNS label of 3 to 63 characters, an IDNA ("xn--") or
 * other "??--" label, or a reserved word.  It does not look for clashes with
 * existing tenants.
 */
CREATE FUNCTION mandant.check_tenant_slug(slug text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF slug IS NULL THEN
		RAISE EXCEPTION 'tenant slug must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = 'The slug names the tenant in URLs (acme.example.com).',
				  HINT = 'Pass a lower-case DNS label such as ''acme''.';
	END IF;
	IF slug <> lower(slug) THEN
		RAISE EXCEPTION 'tenant slug must be lower case'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The slug %L contains upper-case letters.', slug),
				  HINT = format('Use %L.', lower(slug));
	END IF;
	IF length(slug) NOT BETWEEN 3 AND 63 THEN
		RAISE EXCEPTION 'tenant slug must be 3 to 63 characters long'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The slug %L has %s characters.', slug, length(slug)),
				  HINT = 'Pick a slug of 3 to 63 characters.';
	END IF;
	IF slug !~ '^[a-z0-9][a-z0-9-]*[a-z0-9]$' THEN
		RAISE EXCEPTION 'tenant slug is not a DNS label'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The slug %L may only contain a-z, 0-9 and inner hyphens.', slug),
				  HINT = 'Use lower-case letters, digits and hyphens, starting and ending with a letter or digit.';
	END IF;
	IF substr(slug, 3, 2) = '--' THEN
		RAISE EXCEPTION 'tenant slug must not have hyphens in positions 3 and 4'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The slug %L looks like an encoded label (xn--...).', slug),
				  HINT = 'Remove the double hyphen.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.reserved_slug r WHERE r.slug = check_tenant_slug.slug) THEN
		RAISE EXCEPTION 'tenant slug "%" is reserved', slug
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The slug %L names a part of the platform itself (see mandant.reserved_slug).', slug),
				  HINT = 'Pick another slug, for example the company name.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_tenant_slug(text) IS
'Raise 22023 (22004 for NULL) unless the slug is a lower-case DNS label of 3-63 characters that is not reserved.';

/*
 * create_tenant creates a tenant and returns its id: active, or pending
 * until its provisioning completes when mandant.provisioning is
 * 'external'.  With an operation_id it is idempotent: repeating the call (also concurrently)
 * returns the tenant the first call created.
 */
CREATE FUNCTION mandant.create_tenant(
	slug text,
	name text,
	owner_email text,
	plan_key text DEFAULT 'free',
	operation_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	existing	mandant.tenant;
	new_id		uuid;
BEGIN
	/* Validate everything before writing anything. */
	PERFORM mandant.check_tenant_slug(slug);
	IF name IS NULL OR length(btrim(name)) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'tenant name must have 1 to 200 characters'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The name was %L.', name),
				  HINT = 'Pass the display name of the organisation.';
	END IF;
	IF owner_email IS NULL OR length(owner_email) > 254
		OR owner_email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'owner e-mail address is not valid'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The owner e-mail was %L.', owner_email),
				  HINT = 'Pass an address such as ''owner@example.com''.';
	END IF;
	IF plan_key IS NULL OR NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.key = create_tenant.plan_key) THEN
		RAISE EXCEPTION 'plan "%" does not exist', plan_key
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('No row of mandant.plan has key %L.', plan_key),
				  HINT = format('Use one of: %s.',
								(SELECT string_agg(p.key, ', ' ORDER BY p.created_at, p.key) FROM mandant.plan p));
	END IF;

	/* A repeated operation returns what the first one created. */
	IF operation_id IS NOT NULL THEN
		SELECT t.* INTO existing FROM mandant.tenant t
		WHERE t.operation_id = create_tenant.operation_id;
		IF FOUND THEN
			RETURN mandant.tenant_for_repeated_operation(existing, slug);
		END IF;
	END IF;

	IF EXISTS (SELECT 1 FROM mandant.tenant t WHERE t.slug = create_tenant.slug) THEN
		RAISE EXCEPTION 'tenant slug "%" is already taken', slug
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('A tenant with slug %L already exists.', slug),
				  HINT = 'Pick another slug.';
	END IF;
	PERFORM mandant.check_slug_quarantine(slug);

	BEGIN
		INSERT INTO mandant.tenant AS t (slug, name, owner_email, plan_key, operation_id, status)
		VALUES (create_tenant.slug, btrim(create_tenant.name), create_tenant.owner_email,
				create_tenant.plan_key, create_tenant.operation_id,
				CASE current_setting('mandant.provisioning') WHEN 'external' THEN 'pending' ELSE 'active' END)
		RETURNING t.id INTO new_id;
	EXCEPTION WHEN unique_violation THEN
		/*
		 * A concurrent call committed first.  If it was this operation,
		 * answer as a repeat; otherwise it took the slug.
		 */
		IF operation_id IS NOT NULL THEN
			SELECT t.* INTO existing FROM mandant.tenant t
			WHERE t.operation_id = create_tenant.operation_id;
			IF FOUND THEN
				RETURN mandant.tenant_for_repeated_operation(existing, slug);
			END IF;
		END IF;
		RAISE EXCEPTION 'tenant slug "%" is already taken', slug
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('A tenant with slug %L was created concurrently.', slug),
				  HINT = 'Pick another slug.';
	END;

	/* The owner becomes a member if they have an account; the tenant is announced (88_lifecycle.sql). */
	PERFORM mandant.after_tenant_created(new_id);
	RETURN new_id;
END
$$;

COMMENT ON FUNCTION mandant.create_tenant(text, text, text, text, uuid) IS
'Create a tenant (active; pending when mandant.provisioning = ''external'') and return its id; emits platform.tenant.created (or provisioning_requested) and makes the owner a member when they have an account. Idempotent by operation_id: the same id returns the same tenant. mandant_admin only.';

/*
 * tenant_for_repeated_operation returns the id of the tenant an earlier call
 * with the same operation id created, and refuses the reuse of an
 * operation id for a different slug.
 */
CREATE FUNCTION mandant.tenant_for_repeated_operation(existing mandant.tenant, slug text)
RETURNS uuid
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF existing.slug <> slug THEN
		RAISE EXCEPTION 'operation id % was already used for another tenant', existing.operation_id
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('Operation %s created tenant %L, not %L.', existing.operation_id, existing.slug, slug),
				  HINT = 'Use a new operation id for each new tenant; repeat an operation only with the same arguments.';
	END IF;
	RETURN existing.id;
END
$$;

COMMENT ON FUNCTION mandant.tenant_for_repeated_operation(mandant.tenant, text) IS
'Internal to mandant.create_tenant: resolve a repeated operation id.';

REVOKE ALL ON FUNCTION mandant.create_tenant(text, text, text, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.create_tenant(text, text, text, text, uuid) TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.tenant_for_repeated_operation(mandant.tenant, text) FROM PUBLIC;

/* ---------------------------------------------------------------------------
 * Tenancy: row-level security per tenant
 *
 * enable_tenancy() turns a table into a tenant table: a uuid tenant column
 * (NOT NULL, DEFAULT mandant.current_tenant(), FK to mandant.tenant), ENABLE
 * and FORCE row level security, one policy tenant_isolation (USING
 * tenant_id = mandant.current_tenant(), WITH CHECK tenant_id =
 * mandant.require_tenant(), which is the same test but raises MD001 rather
 * than a bare policy violation when no tenant is set), an index led by the
 * tenant column, and a row in the registry mandant.tenant_table.
 * It runs with the caller's rights: only the table's owner can do it, as
 * with ALTER TABLE itself.
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.tenant_table (
	relid			regclass PRIMARY KEY,
	tenant_column	name NOT NULL,
	enabled_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by		name NOT NULL DEFAULT CURRENT_USER
);

COMMENT ON TABLE mandant.tenant_table IS
'Registry of tenant tables (written by mandant.enable_tenancy; rows of dropped tables are removed by an event trigger).';

/* Everyone reads the registry; a table's owner writes its row. */
ALTER TABLE mandant.tenant_table ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_table_read ON mandant.tenant_table
	FOR SELECT USING (true);

CREATE POLICY tenant_table_owner ON mandant.tenant_table
	FOR ALL
	USING (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
				   WHERE c.oid = relid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')))
	WITH CHECK (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
						WHERE c.oid = relid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')));

GRANT SELECT, INSERT, UPDATE, DELETE ON mandant.tenant_table TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_table', '');

/*
 * check_table_target raises unless tbl is a permanent table of the
 * application (not a catalog, not mandant's own) that the current user owns.
 * Shared by enable/disable_tenancy and enable/disable_audit.
 */
CREATE FUNCTION mandant.check_table_target(tbl regclass, function_name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rel record;
BEGIN
	IF tbl IS NULL THEN
		RAISE EXCEPTION 'table must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = format('%s was called with a NULL table.', function_name),
				  HINT = format('Pass the table, e.g. %s(''app.orders'').', function_name);
	END IF;
	SELECT c.relkind, c.relpersistence, c.relowner::regrole AS owner, n.nspname INTO rel
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
	IF NOT FOUND OR rel.relkind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '"%" is not a table', tbl
			USING ERRCODE = 'wrong_object_type',
				  DETAIL = format('%s applies to tables and partitioned tables only; relkind is %L.', function_name, rel.relkind),
				  HINT = CASE rel.relkind
							 WHEN 'f' THEN 'A foreign table''s rows live on another server; apply it there.'
							 ELSE format('Call %s on the tables the view reads or writes.', function_name)
						 END;
	END IF;
	IF rel.nspname IN ('pg_catalog', 'information_schema', 'mandant') THEN
		RAISE EXCEPTION 'permission denied: "%" belongs to the system or to mandant', tbl
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Table %s is in schema %s.', tbl, rel.nspname),
				  HINT = format('Call %s on your application''s tables only.', function_name);
	END IF;
	IF rel.relpersistence = 't' THEN
		RAISE EXCEPTION 'temporary table "%" is not supported', tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = format('%s needs a permanent table; temporary tables cannot reference mandant''s tables.', function_name),
				  HINT = 'Use a permanent table.';
	END IF;
	IF NOT pg_has_role(rel.owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', tbl
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Table %s is owned by %s, not by %s.', tbl, rel.owner, current_user),
				  HINT = format('Call %s as the table''s owner, e.g. in the migration that creates it.', function_name);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_table_target(regclass, text) IS
'Internal: raise unless tbl is a permanent application table the current user owns.';

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
			  = format('(%I = mandant.current_tenant())', tenant_column)
		  AND pg_get_expr(p.polwithcheck, p.polrelid)
			  = format('(%I = mandant.require_tenant())', tenant_column))
$$;

COMMENT ON FUNCTION mandant.tenant_policy_is_current(regclass, name) IS
'True when tbl has the tenant_isolation policy that mandant.enable_tenancy() creates for tenant_column.';

CREATE FUNCTION mandant.enable_tenancy(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	col				record;
	has_column		boolean;
	has_rows		boolean;
	attnum			smallint;
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
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', tbl) INTO has_rows;
		IF has_rows THEN
			RAISE EXCEPTION 'table % has rows but no column "%"', tbl, tenant_column
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'mandant cannot guess which tenant the existing rows belong to.',
					  HINT = format('Add the column (ALTER TABLE %s ADD COLUMN %I uuid), fill it, then call mandant.enable_tenancy() again.', tbl, tenant_column);
		END IF;
	END IF;

	/* The tenant column: uuid, NOT NULL, defaulting to the context. */
	IF NOT has_column THEN
		EXECUTE format('ALTER TABLE %s ADD COLUMN %I uuid NOT NULL DEFAULT mandant.current_tenant()',
					   tbl, tenant_column);
	ELSE
		IF NOT col.attnotnull THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, tenant_column);
		END IF;
		IF mandant.tenant_column_default(tbl, tenant_column) IS DISTINCT FROM 'mandant.current_tenant()' THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT mandant.current_tenant()',
						   tbl, tenant_column);
		END IF;
	END IF;

	SELECT a.attnum INTO attnum FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = tenant_column AND NOT a.attisdropped;

	/* The foreign key to mandant.tenant. */
	IF NOT EXISTS (SELECT 1 FROM pg_constraint k
				   WHERE k.conrelid = tbl AND k.contype = 'f'
					 AND k.confrelid = 'mandant.tenant'::regclass
					 AND k.conkey = ARRAY[attnum]) THEN
		EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES mandant.tenant (id)',
					   tbl, left(tenant_column, 40) || '_mandant_tenant_fkey', tenant_column);
	END IF;

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
					   'USING (%I = mandant.current_tenant()) '
					   'WITH CHECK (%I = mandant.require_tenant())',
					   tbl, tenant_column, tenant_column);
	END IF;

	/* An index led by the tenant column (a primary key on it counts). */
	IF NOT EXISTS (SELECT 1 FROM pg_index i
				   WHERE i.indrelid = tbl AND i.indkey[0] = attnum AND i.indpred IS NULL) THEN
		EXECUTE format('CREATE INDEX ON %s (%I)', tbl, tenant_column);
	END IF;

	INSERT INTO mandant.tenant_table AS r (relid, tenant_column)
	VALUES (tbl, tenant_column)
	ON CONFLICT (relid) DO UPDATE SET tenant_column = EXCLUDED.tenant_column,
		enabled_at = now(), enabled_by = current_user
	WHERE r.tenant_column IS DISTINCT FROM EXCLUDED.tenant_column;
END
$$;

COMMENT ON FUNCTION mandant.enable_tenancy(regclass, name) IS
'Make tbl a tenant table: uuid tenant column (NOT NULL, DEFAULT mandant.current_tenant(), FK to mandant.tenant), ENABLE + FORCE row level security, policy tenant_isolation, index led by the tenant column, registry row. Idempotent; the table owner only.';

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
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, tenant_column);
	END IF;

	DELETE FROM mandant.tenant_table r WHERE r.relid = tbl;
END
$$;

COMMENT ON FUNCTION mandant.disable_tenancy(regclass) IS
'Undo enable_tenancy: drop policy tenant_isolation, disable row level security (unless other policies remain) and the column default, unregister. Keeps the column, its data, FK and index.';

/* ---------------------------------------------------------------------------
 * tenancy_lint: what in this database could let one tenant see another
 *
 * A "tenant table" is a registered table, or any table outside the system
 * schemas with a tenant_id column or a foreign key to mandant.tenant.
 * Objects that belong to extensions are skipped.  A clean schema returns no
 * rows.  Codes are stable; severities are error (tenants can leak or the
 * schema cannot be distributed by tenant_id) and warning (risky, check it).
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.tenancy_lint()
RETURNS TABLE (severity text, code text, object text, message text, hint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH RECURSIVE
extension_member AS (
	SELECT d.classid, d.objid FROM pg_depend d
	WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
),
candidate AS (
	SELECT c.oid AS relid, c.relname, c.relrowsecurity, c.relforcerowsecurity,
		   r.relid IS NOT NULL AS registered,
		   COALESCE(r.tenant_column,
					(SELECT a.attname FROM pg_attribute a
					 WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped),
					(SELECT a.attname FROM pg_constraint k
					 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
					 WHERE k.conrelid = c.oid AND k.contype = 'f'
					   AND k.confrelid = 'mandant.tenant'::regclass
					 ORDER BY k.conname LIMIT 1)) AS tenant_column
	FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace
	LEFT JOIN mandant.tenant_table r ON r.relid = c.oid
	WHERE c.relkind IN ('r', 'p')
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid)
	  AND (r.relid IS NOT NULL
		   OR EXISTS (SELECT 1 FROM pg_attribute a
					  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
		   OR EXISTS (SELECT 1 FROM pg_constraint k
					  WHERE k.conrelid = c.oid AND k.contype = 'f'
						AND k.confrelid = 'mandant.tenant'::regclass))
),
tenant_rel AS (
	SELECT cd.*, cd.relid::regclass::text AS name, a.attnum AS tenant_attnum,
		   a.atttypid, a.attnotnull
	FROM candidate cd
	LEFT JOIN pg_attribute a
		ON a.attrelid = cd.relid AND a.attname = cd.tenant_column AND NOT a.attisdropped
),
view_reads_direct AS (
	SELECT DISTINCT rw.ev_class AS viewid, d.refobjid AS relid
	FROM pg_rewrite rw
	JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
					AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> rw.ev_class
),
view_reads (viewid, relid) AS (
	SELECT viewid, relid FROM view_reads_direct
	UNION
	SELECT d.viewid, vr.relid FROM view_reads_direct d JOIN view_reads vr ON vr.viewid = d.relid
),
finding (severity, code, object, message, hint) AS (
	SELECT 'warning', 'not_registered', t.name,
		   format('table %s looks like a tenant table but is not registered', t.name),
		   format('Call mandant.enable_tenancy(%L) so that its rows are isolated, exported and deleted with their tenant.', t.name)
	FROM tenant_rel t WHERE NOT t.registered

	UNION ALL
	SELECT 'error', 'tenant_column_missing', t.name,
		   format('tenant table %s has no tenant column %s', t.name, quote_ident(COALESCE(t.tenant_column, 'tenant_id'))),
		   format('Call mandant.enable_tenancy(%L) again, or re-register it with the right column.', t.name)
	FROM tenant_rel t WHERE t.tenant_attnum IS NULL

	UNION ALL
	SELECT 'error', 'tenant_column_type', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s is of type %s, not uuid', quote_ident(t.tenant_column), t.name, t.atttypid::regtype),
		   'Change the column to uuid; mandant.current_tenant() returns uuid.'
	FROM tenant_rel t WHERE t.tenant_attnum IS NOT NULL AND t.atttypid <> 'uuid'::regtype

	UNION ALL
	SELECT 'error', 'tenant_column_nullable', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s allows NULL', quote_ident(t.tenant_column), t.name),
		   format('Call mandant.enable_tenancy(%L), which sets NOT NULL.', t.name)
	FROM tenant_rel t WHERE t.tenant_attnum IS NOT NULL AND NOT t.attnotnull

	UNION ALL
	SELECT 'error', 'rls_disabled', t.name,
		   format('row level security is disabled on tenant table %s', t.name),
		   format('Call mandant.enable_tenancy(%L).', t.name)
	FROM tenant_rel t WHERE NOT t.relrowsecurity

	UNION ALL
	SELECT 'error', 'rls_not_forced', t.name,
		   format('row level security is not forced on tenant table %s, so its owner sees every tenant', t.name),
		   format('ALTER TABLE %s FORCE ROW LEVEL SECURITY, or call mandant.enable_tenancy(%L).', t.name, t.name)
	FROM tenant_rel t WHERE t.relrowsecurity AND NOT t.relforcerowsecurity

	UNION ALL
	SELECT 'error', 'policy_missing', t.name,
		   format('tenant table %s has no tenant_isolation policy', t.name),
		   format('Call mandant.enable_tenancy(%L).', t.name)
	FROM tenant_rel t
	WHERE NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.relid AND p.polname = 'tenant_isolation')

	UNION ALL
	SELECT 'error', 'policy_changed', t.name,
		   format('policy tenant_isolation on %s is not the one mandant.enable_tenancy() creates', t.name),
		   format('Call mandant.enable_tenancy(%L) to restore it; narrow access with RESTRICTIVE policies instead.', t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.relid AND p.polname = 'tenant_isolation')
	  AND NOT mandant.tenant_policy_is_current(t.relid, t.tenant_column)

	UNION ALL
	SELECT 'warning', 'policy_permissive', t.name || '.' || quote_ident(p.polname),
		   format('permissive policy %s on %s is OR-ed with tenant_isolation and can widen access across tenants',
				  quote_ident(p.polname), t.name),
		   format('Recreate it AS RESTRICTIVE (ALTER cannot change that), so that it can only narrow tenant_isolation.')
	FROM tenant_rel t
	JOIN pg_policy p ON p.polrelid = t.relid
	WHERE p.polpermissive AND p.polname <> 'tenant_isolation'

	UNION ALL
	SELECT 'warning', 'tenant_fk_missing', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s does not reference mandant.tenant', quote_ident(t.tenant_column), t.name),
		   format('Call mandant.enable_tenancy(%L), which adds the foreign key.', t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM pg_constraint k
					  WHERE k.conrelid = t.relid AND k.contype = 'f'
						AND k.confrelid = 'mandant.tenant'::regclass AND k.conkey = ARRAY[t.tenant_attnum])

	UNION ALL
	SELECT 'warning', 'tenant_index_missing', t.name,
		   format('no index of %s starts with its tenant column %s', t.name, quote_ident(t.tenant_column)),
		   format('Lead the primary key with %s, or call mandant.enable_tenancy(%L).', quote_ident(t.tenant_column), t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM pg_index i
					  WHERE i.indrelid = t.relid AND i.indkey[0] = t.tenant_attnum AND i.indpred IS NULL)

	UNION ALL
	SELECT 'error', 'unique_without_tenant', t.name || '.' || quote_ident(ic.relname),
		   format('%s %s of %s does not include the tenant column %s',
				  CASE WHEN i.indisprimary THEN 'primary key' ELSE 'unique key' END,
				  quote_ident(ic.relname), t.name, quote_ident(t.tenant_column)),
		   format('Add %s to it: a key without it makes values unique across tenants (one tenant learns what another stored) and cannot be distributed by tenant.',
				  quote_ident(t.tenant_column))
	FROM tenant_rel t
	JOIN pg_index i ON i.indrelid = t.relid AND i.indisunique
	JOIN pg_class ic ON ic.oid = i.indexrelid
	WHERE t.tenant_attnum IS NOT NULL
	  AND NOT (t.tenant_attnum = ANY (i.indkey::int2[]))

	UNION ALL
	SELECT 'error', 'fk_without_tenant', child.name || '.' || quote_ident(k.conname),
		   format('foreign key %s from %s to %s does not match %s on both sides, so a row of one tenant can point at a row of another',
				  quote_ident(k.conname), child.name, parent.name, quote_ident(child.tenant_column)),
		   format('Make the referenced key (%s, ...) and the foreign key (%s, ...) both start from the tenant column.',
				  quote_ident(parent.tenant_column), quote_ident(child.tenant_column))
	FROM pg_constraint k
	JOIN tenant_rel child ON child.relid = k.conrelid
	JOIN tenant_rel parent ON parent.relid = k.confrelid
	WHERE k.contype = 'f'
	  AND child.tenant_attnum IS NOT NULL AND parent.tenant_attnum IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM generate_subscripts(k.conkey, 1) s
					  WHERE k.conkey[s] = child.tenant_attnum AND k.confkey[s] = parent.tenant_attnum)

	UNION ALL
	SELECT CASE WHEN owner.rolsuper OR owner.rolbypassrls THEN 'error' ELSE 'warning' END,
		   'view_not_security_invoker', v.oid::regclass::text,
		   format('view %s reads tenant table %s with the rights of its owner %s%s',
				  v.oid::regclass, min(t.name), quote_ident(owner.rolname),
				  CASE WHEN owner.rolsuper OR owner.rolbypassrls THEN ', who bypasses row level security' ELSE '' END),
		   format('ALTER VIEW %s SET (security_invoker = true).', v.oid::regclass)
	FROM pg_class v
	JOIN pg_roles owner ON owner.oid = v.relowner
	JOIN view_reads vr ON vr.viewid = v.oid
	JOIN tenant_rel t ON t.relid = vr.relid
	WHERE v.relkind = 'v'
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_class'::regclass AND e.objid = v.oid)
	  AND NOT EXISTS (SELECT 1 FROM pg_options_to_table(v.reloptions) o
					  WHERE o.option_name = 'security_invoker' AND o.option_value::boolean)
	GROUP BY v.oid, owner.rolname, owner.rolsuper, owner.rolbypassrls

	UNION ALL
	SELECT 'error', 'matview_over_tenant_table', v.oid::regclass::text,
		   format('materialized view %s stores rows of tenant table %s outside row level security',
				  v.oid::regclass, min(t.name)),
		   'Replace it with a tenant table refreshed per tenant, or with a security_invoker view.'
	FROM pg_class v
	JOIN view_reads vr ON vr.viewid = v.oid
	JOIN tenant_rel t ON t.relid = vr.relid
	WHERE v.relkind = 'm'
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_class'::regclass AND e.objid = v.oid)
	GROUP BY v.oid

	UNION ALL
	SELECT 'warning', 'security_definer_reads_tenant_table', p.oid::regprocedure::text,
		   format('SECURITY DEFINER function %s reads tenant table %s with the rights of its owner',
				  p.oid::regprocedure, min(t.name)),
		   'Make it SECURITY INVOKER, or make sure its owner is subject to row level security and that it calls mandant.require_tenant().'
	FROM pg_proc p
	JOIN pg_namespace n ON n.oid = p.pronamespace
	JOIN pg_language l ON l.oid = p.prolang
	JOIN tenant_rel t
	  ON EXISTS (SELECT 1 FROM pg_depend d
				 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
				   AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid)
	  OR (l.lanname NOT IN ('c', 'internal')
		  AND p.prosrc ~* ('\m' || regexp_replace(t.relname, '([^[:alnum:]_])', '\\\1', 'g') || '\M'))
	WHERE p.prosecdef
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid)
	GROUP BY p.oid

	UNION ALL
	SELECT 'error', 'privilege_bypasses_rls', t.name,
		   format('%s holds %s on tenant table %s, which row level security does not cover',
				  CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END,
				  acl.privilege_type, t.name),
		   format('REVOKE %s ON %s FROM %s: TRUNCATE empties every tenant at once, and a trigger sees every tenant''s writes.',
				  acl.privilege_type, t.name,
				  CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END)
	FROM tenant_rel t
	JOIN pg_class c ON c.oid = t.relid
	CROSS JOIN LATERAL aclexplode(c.relacl) acl
	WHERE acl.privilege_type IN ('TRUNCATE', 'TRIGGER')
	  AND acl.grantee <> c.relowner

	UNION ALL
	SELECT 'error', 'login_role_bypassrls', quote_ident(r.rolname),
		   format('login role %s bypasses row level security', quote_ident(r.rolname)),
		   format('ALTER ROLE %s NOBYPASSRLS; applications must log in as roles subject to row level security.',
				  quote_ident(r.rolname))
	FROM pg_roles r
	WHERE r.rolcanlogin AND r.rolbypassrls AND NOT r.rolsuper
)
SELECT f.severity, f.code, f.object, f.message, f.hint
FROM finding f
ORDER BY f.severity, f.code, f.object
$$;

COMMENT ON FUNCTION mandant.tenancy_lint() IS
'Report what could let one tenant see or touch another tenant''s rows: (severity, code, object, message, hint). A clean schema returns no rows.';

/* ---------------------------------------------------------------------------
 * Audit trail (extension/audit.c)
 *
 * mandant.audit_event is written only by mandant's C code (the row trigger
 * and audit_log), never through SQL: nobody holds INSERT on it, and UPDATE,
 * DELETE and TRUNCATE fail for everyone.  A tenant reads its own events;
 * mandant_admin reads across tenants through mandant.audit_events().
 * Events of no tenant (platform events) carry the nil uuid, so that the
 * primary key (tenant_id, id) is the table's only btree: it serves tenant
 * reads, verification and distribution by tenant_id, and stays cheap to
 * append to.
 *
 * Tamper evidence: mandant.audit_seal() chains each tenant's events into
 * mandant.audit_seal, chain_n = sha256(chain_(n-1) || hash_n), in the order
 * it seals them; mandant.audit_verify() recomputes event hashes and chain.
 * ------------------------------------------------------------------------- */

GRANT SET ON PARAMETER mandant.audit_max_value_bytes TO mandant_admin;

/* Cached per backend: ids are unique, not in commit or time order. */
CREATE SEQUENCE mandant.audit_event_id_seq CACHE 32;

CREATE TABLE mandant.audit_event (
	id				bigint NOT NULL DEFAULT pg_catalog.nextval('mandant.audit_event_id_seq'),
	tenant_id		uuid NOT NULL,
	occurred_at		timestamptz NOT NULL,
	txid			bigint NOT NULL,
	category		text NOT NULL,
	action			text NOT NULL,
	entity_type		text COLLATE "C" NOT NULL,
	entity_id		text COLLATE "C",
	actor_user_id	uuid,
	request_id		text,
	changes			jsonb,
	hash			bytea NOT NULL,
	PRIMARY KEY (tenant_id, id)
);

ALTER SEQUENCE mandant.audit_event_id_seq OWNED BY mandant.audit_event.id;

COMMENT ON TABLE mandant.audit_event IS
'One row per audited write or application event. Append-only; written by mandant''s C code only. Platform events carry tenant_id 00000000-0000-0000-0000-000000000000.';

/* Sealing finds new events by transaction id. */
CREATE INDEX audit_event_txid_idx ON mandant.audit_event USING brin (txid);

ALTER TABLE mandant.audit_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.audit_event
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.audit_event TO PUBLIC;

CREATE TABLE mandant.audit_seal (
	tenant_id		uuid NOT NULL,
	seq				bigint NOT NULL,
	event_id		bigint NOT NULL,
	chain			bytea NOT NULL,
	sealed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (tenant_id, seq),
	CONSTRAINT audit_seal_event UNIQUE (tenant_id, event_id)
);

COMMENT ON TABLE mandant.audit_seal IS
'The hash chain of each tenant''s audit events: position seq, chain = sha256(previous chain || event hash). Append-only.';

ALTER TABLE mandant.audit_seal ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.audit_seal
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.audit_seal TO PUBLIC;

CREATE TABLE mandant.audit_seal_run (
	run_id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	sealed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	horizon			bigint NOT NULL,
	events			bigint NOT NULL
);

COMMENT ON TABLE mandant.audit_seal_run IS
'One row per mandant.audit_seal() run: events sealed, and the horizon (snapshot xmin) below which every transaction had ended.';

SELECT pg_catalog.pg_extension_config_dump('mandant.audit_event', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_seal', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_seal_run', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_seal_run_run_id_seq', '');

CREATE FUNCTION mandant.audit_append_only()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_append_only'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_append_only() IS
'Trigger: refuses UPDATE, DELETE and TRUNCATE of mandant''s append-only tables (42501).';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_event
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_seal
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_seal_run
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
/* ALWAYS: session_replication_role = replica must not switch them off. */
ALTER TABLE mandant.audit_event ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE mandant.audit_seal ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE mandant.audit_seal_run ENABLE ALWAYS TRIGGER append_only;

CREATE FUNCTION mandant.audit_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_trigger() IS
'Row trigger attached by mandant.enable_audit(): one audit event per inserted, updated or deleted row.';

CREATE FUNCTION mandant.audit_log(category text, action text, entity_type text,
								  entity_id text, payload jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_audit_log'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log(text, text, text, text, jsonb) IS
'Write an application event (login, export, approval ...) with the context of the transaction; returns its id. Actions insert/update/delete/transition are reserved.';

CREATE FUNCTION mandant.audit_event_hash(event mandant.audit_event)
RETURNS bytea
AS 'MODULE_PATHNAME', 'mandant_audit_event_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION mandant.audit_event_hash(mandant.audit_event) IS
'Recompute the sha256 of an event''s canonical form (what its hash column should hold).';

CREATE FUNCTION mandant.check_tenant_access(tenant uuid, what text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_tenant_access'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_tenant_access(uuid, text) IS
'Internal: raise 42501 unless tenant is the tenant of the transaction or the calling role is a member of mandant_admin.';

/*
 * enable_audit attaches the audit trigger, or replaces it when its category
 * or excluded columns changed.  Idempotent; the table owner only.
 */
CREATE FUNCTION mandant.enable_audit(tbl regclass, category text DEFAULT NULL,
									 exclude_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	excluded	text[];
	unknown		text;
	statement	text;
	existing	text;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_audit');
	IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary) THEN
		RAISE EXCEPTION 'table % has no primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Audit events name the row they are about by its primary key.',
				  HINT = format('Add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (id), then call mandant.enable_audit() again.', tbl);
	END IF;
	IF category IS NOT NULL AND category !~ '^[a-z][a-z0-9_.:-]{0,99}$' THEN
		RAISE EXCEPTION 'invalid audit category "%"', category
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A category has 1 to 100 characters: a-z first, then a-z, 0-9, ''_'', ''.'', '':'' or ''-''.',
				  HINT = 'Use a lower-case name such as ''risk'' or ''billing'', or NULL for the schema name.';
	END IF;
	SELECT array_agg(DISTINCT c ORDER BY c) INTO excluded
	FROM unnest(COALESCE(exclude_columns, '{}')) c;
	SELECT c INTO unknown
	FROM unnest(excluded) c
	WHERE c IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a
								   WHERE a.attrelid = tbl AND a.attname = c
									 AND a.attnum > 0 AND NOT a.attisdropped)
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', unknown, tbl
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('exclude_columns names %L.', unknown),
				  HINT = format('Columns of %s: %s.', tbl,
								(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
								 FROM pg_attribute a
								 WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped));
	END IF;

	statement := format('CREATE TRIGGER mandant_audit AFTER INSERT OR DELETE OR UPDATE ON %s '
						'FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger(%s)',
						tbl,
						(SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
						 FROM unnest(ARRAY[COALESCE(category, '')] || COALESCE(excluded, '{}')) WITH ORDINALITY u (a, o)));
	SELECT pg_get_triggerdef(t.oid) INTO existing
	FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'mandant_audit';
	IF existing IS DISTINCT FROM statement THEN
		EXECUTE format('DROP TRIGGER IF EXISTS mandant_audit ON %s', tbl);
		EXECUTE statement;
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.enable_audit(regclass, text, text[]) IS
'Audit every insert, update and delete of tbl (which needs a primary key) into mandant.audit_event. category defaults to the schema name; exclude_columns never appear in any event. Idempotent; the table owner only.';

CREATE FUNCTION mandant.disable_audit(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_audit');
	IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'mandant_audit') THEN
		EXECUTE format('DROP TRIGGER mandant_audit ON %s', tbl);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.disable_audit(regclass) IS
'Stop auditing tbl (its past events stay). The table owner only.';

/*
 * audit_seal chains every event whose transaction has ended since the last
 * run.  It reads audit_event with its snapshot and only locks audit_seal,
 * so writers never wait for it; concurrent runs wait for each other.
 * Events of transactions still open are left for the next run: the window
 * is [xmin of the previous run, xmin of this run).
 */
CREATE FUNCTION mandant.audit_seal()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	horizon		bigint;
	previous	bigint;
	e			record;
	last_tenant	uuid;
	chain		bytea;
	seq			bigint;
	sealed		bigint := 0;
BEGIN
	LOCK TABLE mandant.audit_seal IN SHARE ROW EXCLUSIVE MODE;
	horizon := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
	SELECT r.horizon INTO previous FROM mandant.audit_seal_run r ORDER BY r.run_id DESC LIMIT 1;
	/* Restored into another cluster, whose transaction ids are lower: look at everything. */
	IF previous IS NULL OR previous > horizon THEN
		previous := 0;
	END IF;

	FOR e IN
		SELECT a.id, a.tenant_id, a.hash
		FROM mandant.audit_event a
		WHERE a.txid >= previous AND a.txid < horizon
		  AND NOT EXISTS (SELECT 1 FROM mandant.audit_seal s WHERE s.tenant_id = a.tenant_id AND s.event_id = a.id)
		ORDER BY a.tenant_id, a.id
	LOOP
		IF last_tenant IS DISTINCT FROM e.tenant_id THEN
			SELECT s.chain, s.seq INTO chain, seq
			FROM mandant.audit_seal s
			WHERE s.tenant_id = e.tenant_id
			ORDER BY s.seq DESC
			LIMIT 1;
			IF NOT FOUND THEN
				chain := ''::bytea;
				seq := 0;
			END IF;
			last_tenant := e.tenant_id;
		END IF;
		chain := sha256(chain || e.hash);
		seq := seq + 1;
		INSERT INTO mandant.audit_seal (tenant_id, seq, event_id, chain)
		VALUES (e.tenant_id, seq, e.id, chain);
		sealed := sealed + 1;
	END LOOP;

	INSERT INTO mandant.audit_seal_run (horizon, events) VALUES (horizon, sealed);
	RETURN sealed;
END
$$;

COMMENT ON FUNCTION mandant.audit_seal() IS
'Chain the events of every transaction that has ended since the last run into mandant.audit_seal, per tenant; returns how many. Does not block writers. mandant_admin only; run it periodically.';

REVOKE ALL ON FUNCTION mandant.audit_seal() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.audit_seal() TO mandant_admin;

/*
 * audit_verify walks a tenant's chain in seal order, recomputing each
 * event's hash and each chain link, then checks the hashes of the events
 * not sealed yet.  The first event that fails is reported.
 */
CREATE FUNCTION mandant.audit_verify(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	chain_of	constant uuid := COALESCE(tenant, '00000000-0000-0000-0000-000000000000');
	s			record;
	e			mandant.audit_event;
	chain		bytea := ''::bytea;
	n			bigint := 0;
BEGIN
	PERFORM mandant.check_tenant_access(tenant, 'the audit trail');

	FOR s IN
		SELECT * FROM mandant.audit_seal a WHERE a.tenant_id = chain_of ORDER BY a.seq
	LOOP
		n := n + 1;
		SELECT * INTO e FROM mandant.audit_event a WHERE a.tenant_id = chain_of AND a.id = s.event_id;
		IF NOT FOUND OR s.seq <> n
			OR e.hash IS DISTINCT FROM mandant.audit_event_hash(e)
			OR s.chain IS DISTINCT FROM sha256(chain || e.hash) THEN
			RETURN QUERY SELECT false, n, s.event_id;
			RETURN;
		END IF;
		chain := s.chain;
	END LOOP;

	FOR e IN
		SELECT * FROM mandant.audit_event a
		WHERE a.tenant_id = chain_of
		  AND NOT EXISTS (SELECT 1 FROM mandant.audit_seal x WHERE x.tenant_id = a.tenant_id AND x.event_id = a.id)
		ORDER BY a.id
	LOOP
		n := n + 1;
		IF e.hash IS DISTINCT FROM mandant.audit_event_hash(e) THEN
			RETURN QUERY SELECT false, n, e.id;
			RETURN;
		END IF;
	END LOOP;

	RETURN QUERY SELECT true, n, NULL::bigint;
END
$$;

COMMENT ON FUNCTION mandant.audit_verify(uuid) IS
'Recompute the hashes and the chain of a tenant''s audit events (NULL: the platform''s): (ok, checked, first_bad_id). The current tenant, or any tenant for mandant_admin.';

/*
 * audit_events is how platform administrators read across tenants: a
 * function granted to mandant_admin, not a role that bypasses row level
 * security.
 */
CREATE FUNCTION mandant.audit_events(tenant uuid, since timestamptz DEFAULT '-infinity',
									 entity_type text DEFAULT NULL, entity_id text DEFAULT NULL,
									 max_rows integer DEFAULT 1000)
RETURNS SETOF mandant.audit_event
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.* FROM mandant.audit_event a
	WHERE a.tenant_id = COALESCE(audit_events.tenant, '00000000-0000-0000-0000-000000000000')
	  AND a.occurred_at >= audit_events.since
	  AND (audit_events.entity_type IS NULL OR a.entity_type = audit_events.entity_type)
	  AND (audit_events.entity_id IS NULL OR a.entity_id = audit_events.entity_id)
	ORDER BY a.id DESC
	LIMIT LEAST(GREATEST(audit_events.max_rows, 0), 10000)
$$;

COMMENT ON FUNCTION mandant.audit_events(uuid, timestamptz, text, text, integer) IS
'A tenant''s audit events (NULL: platform events), newest first, at most 10000. mandant_admin only.';

REVOKE ALL ON FUNCTION mandant.audit_events(uuid, timestamptz, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.audit_events(uuid, timestamptz, text, text, integer) TO mandant_admin;

/* ---------------------------------------------------------------------------
 * Status machines (extension/fsm.c)
 *
 * A machine is owned by the role that created it (members of that role and
 * of mandant_admin may change it); everyone may read the definitions.  The
 * definition tables are written through the functions below, which check
 * everything first; row level security and constraints keep direct writes
 * honest.  Any change makes every backend reload the machine (statement
 * trigger -> relcache invalidation of mandant.state_machine).
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.state_machine (
	name				text PRIMARY KEY
						CONSTRAINT state_machine_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	transition_columns	text[] NOT NULL DEFAULT '{}',
	owner				regrole NOT NULL DEFAULT CURRENT_USER::regrole,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE mandant.state_machine IS
'State machines: name, the columns a transition out of a frozen state may change, owner.';

CREATE TABLE mandant.state_machine_state (
	machine		text NOT NULL REFERENCES mandant.state_machine (name) ON DELETE CASCADE,
	state		text NOT NULL
				CONSTRAINT state_machine_state_format CHECK (state ~ '^[a-z][a-z0-9_]{0,62}$'),
	initial		boolean NOT NULL DEFAULT false,
	frozen		boolean NOT NULL DEFAULT false,
	PRIMARY KEY (machine, state)
);

COMMENT ON TABLE mandant.state_machine_state IS
'The states of each machine: initial (a row may start there), frozen (a row there changes only by a transition).';

CREATE TABLE mandant.state_transition (
	machine			text NOT NULL,
	from_state		text NOT NULL,
	to_state		text NOT NULL,
	required_scope	text CONSTRAINT state_transition_scope
						CHECK (required_scope IN ('read', 'write', 'delete', 'admin', 'internal')),
	guard			regprocedure,
	PRIMARY KEY (machine, from_state, to_state),
	FOREIGN KEY (machine, from_state) REFERENCES mandant.state_machine_state ON DELETE CASCADE,
	FOREIGN KEY (machine, to_state) REFERENCES mandant.state_machine_state ON DELETE CASCADE,
	CONSTRAINT state_transition_moves CHECK (from_state <> to_state)
);

COMMENT ON TABLE mandant.state_transition IS
'The declared transitions: the scope the caller must hold and the guard (old jsonb, new jsonb) -> boolean that must agree.';

CREATE TABLE mandant.state_machine_table (
	relid			regclass PRIMARY KEY,
	machine			text NOT NULL REFERENCES mandant.state_machine (name),
	state_column	name NOT NULL
);

COMMENT ON TABLE mandant.state_machine_table IS
'Tables bound to a state machine, and the column that holds the state.';

/* Readable by all; written by the machine's (or table's) owner. */
ALTER TABLE mandant.state_machine ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_machine FOR SELECT USING (true);
CREATE POLICY owner_writes ON mandant.state_machine FOR ALL
	USING (pg_catalog.pg_has_role(owner, 'USAGE') OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'))
	WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE') OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'));

ALTER TABLE mandant.state_machine_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_machine_state FOR SELECT USING (true);
CREATE POLICY owner_writes ON mandant.state_machine_state FOR ALL
	USING (EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine
				   AND (pg_catalog.pg_has_role(m.owner, 'USAGE') OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'))))
	WITH CHECK (EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine
						AND (pg_catalog.pg_has_role(m.owner, 'USAGE') OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'))));

ALTER TABLE mandant.state_transition ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_transition FOR SELECT USING (true);
CREATE POLICY owner_writes ON mandant.state_transition FOR ALL
	USING (EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine
				   AND (pg_catalog.pg_has_role(m.owner, 'USAGE') OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'))))
	WITH CHECK (EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine
						AND (pg_catalog.pg_has_role(m.owner, 'USAGE') OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'))));

ALTER TABLE mandant.state_machine_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_machine_table FOR SELECT USING (true);
CREATE POLICY owner_writes ON mandant.state_machine_table FOR ALL
	USING (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
				   WHERE c.oid = relid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')))
	WITH CHECK (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
						WHERE c.oid = relid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')));

GRANT SELECT, INSERT, UPDATE, DELETE ON mandant.state_machine, mandant.state_machine_state,
	mandant.state_transition, mandant.state_machine_table TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine_state', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine_table', '');

CREATE FUNCTION mandant.state_machines_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_state_machines_changed'
LANGUAGE C;

COMMENT ON FUNCTION mandant.state_machines_changed() IS
'Trigger: makes every session reload its state machines after a change of their definitions.';

CREATE TRIGGER reload AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.state_machine
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.state_machines_changed();
CREATE TRIGGER reload AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.state_machine_state
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.state_machines_changed();
CREATE TRIGGER reload AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.state_transition
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.state_machines_changed();

/* Transitions of tables that are not audited. */
CREATE SEQUENCE mandant.state_transition_log_id_seq CACHE 32;

CREATE TABLE mandant.state_transition_log (
	tenant_id		uuid NOT NULL,
	id				bigint NOT NULL DEFAULT pg_catalog.nextval('mandant.state_transition_log_id_seq'),
	occurred_at		timestamptz NOT NULL,
	machine			text NOT NULL,
	entity_type		text NOT NULL,
	entity_id		text,
	from_state		text NOT NULL,
	to_state		text NOT NULL,
	actor_user_id	uuid,
	request_id		text,
	PRIMARY KEY (tenant_id, id)
);

ALTER SEQUENCE mandant.state_transition_log_id_seq OWNED BY mandant.state_transition_log.id;

COMMENT ON TABLE mandant.state_transition_log IS
'Transitions of tables bound to a state machine and not audited (audited tables record them in mandant.audit_event, action transition). Append-only.';

ALTER TABLE mandant.state_transition_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.state_transition_log
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.state_transition_log TO PUBLIC;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.state_transition_log
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.state_transition_log ENABLE ALWAYS TRIGGER append_only;

SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition_log', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition_log_id_seq', '');

CREATE FUNCTION mandant.state_machine_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_state_machine_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.state_machine_trigger() IS
'Row trigger attached by mandant.enable_state_machine(): checks states and transitions.';

/*
 * check_state_names raises 22023 unless every name is a lower-case state
 * name; what says which argument is checked.
 */
CREATE FUNCTION mandant.check_state_names(names text[], what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad text;
BEGIN
	SELECT n INTO bad FROM unnest(names) n WHERE n IS NULL OR n !~ '^[a-z][a-z0-9_]{0,62}$' LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid state name %', COALESCE(quote_literal(bad), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s contains %s.', what, COALESCE(quote_literal(bad), 'NULL')),
				  HINT = 'State names are lower-case: a-z first, then a-z, 0-9 and ''_'', at most 63 characters.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_state_names(text[], text) IS
'Internal: raise 22023 unless every name is a valid state name.';

/*
 * machine_for_change returns the owner of a machine and raises unless it
 * exists and the current user may change it.
 */
CREATE FUNCTION mandant.machine_for_change(machine text)
RETURNS regrole
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owner regrole;
BEGIN
	SELECT m.owner INTO owner FROM mandant.state_machine m WHERE m.name = machine;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'state machine "%" does not exist', machine
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('No row of mandant.state_machine is named %L.', machine),
				  HINT = 'Create it with mandant.create_state_machine().';
	END IF;
	IF NOT (pg_has_role(owner, 'USAGE') OR pg_has_role('mandant_admin', 'USAGE')) THEN
		RAISE EXCEPTION 'must be owner of state machine "%"', machine
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('State machine %L is owned by %s, not by %s.', machine, owner, current_user),
				  HINT = 'Change it as its owner or as a member of mandant_admin.';
	END IF;
	RETURN owner;
END
$$;

COMMENT ON FUNCTION mandant.machine_for_change(text) IS
'Internal: the owner of a state machine the current user may change; raises otherwise.';

/*
 * check_states_exist raises unless every state is declared in the machine.
 */
CREATE FUNCTION mandant.check_states_exist(machine text, states text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	missing text;
BEGIN
	SELECT s INTO missing FROM unnest(states) s
	WHERE NOT EXISTS (SELECT 1 FROM mandant.state_machine_state x
					  WHERE x.machine = check_states_exist.machine AND x.state = s)
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION '"%" is not a state of state machine "%"', missing, machine
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('States of %L: %s.', machine,
								  (SELECT string_agg(x.state, ', ' ORDER BY x.state)
								   FROM mandant.state_machine_state x WHERE x.machine = check_states_exist.machine)),
				  HINT = 'Declare it first with mandant.add_state().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_states_exist(text, text[]) IS
'Internal: raise 22023 unless every state is declared in the machine.';

CREATE FUNCTION mandant.create_state_machine(name text, initial_states text[],
											 frozen_states text[] DEFAULT '{}',
											 states text[] DEFAULT NULL,
											 transition_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	all_states text[];
BEGIN
	IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid state machine name %', COALESCE(quote_literal(name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A state machine name is lower-case: a-z first, then a-z, 0-9 and ''_'', at most 63 characters.',
				  HINT = 'Name it after what it governs, e.g. ''risk_assessment''.';
	END IF;
	IF COALESCE(cardinality(initial_states), 0) = 0 THEN
		RAISE EXCEPTION 'state machine "%" needs at least one initial state', name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'initial_states is empty.',
				  HINT = 'Pass the states a new row may start in, e.g. ''{draft}''.';
	END IF;
	frozen_states := COALESCE(frozen_states, '{}');
	all_states := ARRAY(SELECT DISTINCT s FROM unnest(COALESCE(states, '{}') || initial_states || frozen_states) s ORDER BY s);
	PERFORM mandant.check_state_names(initial_states, 'initial_states');
	PERFORM mandant.check_state_names(frozen_states, 'frozen_states');
	PERFORM mandant.check_state_names(all_states, 'states');
	IF EXISTS (SELECT 1 FROM unnest(COALESCE(transition_columns, '{}')) c WHERE c IS NULL OR c = '') THEN
		RAISE EXCEPTION 'transition columns must be column names'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('transition_columns is %L.', transition_columns),
				  HINT = 'Name the columns a transition out of a frozen state may set, e.g. ''{approved_by,approved_at}''.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = create_state_machine.name) THEN
		RAISE EXCEPTION 'state machine "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('mandant.state_machine has a row named %L.', name),
				  HINT = 'Change it with mandant.add_state() and mandant.add_transition(), or pick another name.';
	END IF;

	INSERT INTO mandant.state_machine (name, transition_columns)
	VALUES (create_state_machine.name, COALESCE(transition_columns, '{}'));
	INSERT INTO mandant.state_machine_state (machine, state, initial, frozen)
	SELECT create_state_machine.name, s, s = ANY (initial_states), s = ANY (frozen_states)
	FROM unnest(all_states) s;
END
$$;

COMMENT ON FUNCTION mandant.create_state_machine(text, text[], text[], text[], text[]) IS
'Declare a state machine: its initial and frozen states, optionally further states, and the columns a transition out of a frozen state may change. The caller owns it.';

CREATE FUNCTION mandant.add_state(machine text, state text, initial boolean DEFAULT false,
								  frozen boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.machine_for_change(machine);
	PERFORM mandant.check_state_names(ARRAY[state], 'state');
	IF EXISTS (SELECT 1 FROM mandant.state_machine_state x
			   WHERE x.machine = add_state.machine AND x.state = add_state.state) THEN
		RAISE EXCEPTION 'state machine "%" already has state "%"', machine, state
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('mandant.state_machine_state has %L for %L.', state, machine),
				  HINT = 'Pick another name; states are never redefined in place.';
	END IF;
	INSERT INTO mandant.state_machine_state (machine, state, initial, frozen)
	VALUES (machine, state, COALESCE(initial, false), COALESCE(frozen, false));
END
$$;

COMMENT ON FUNCTION mandant.add_state(text, text, boolean, boolean) IS
'Declare one more state of a machine. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.add_transition(machine text, from_state text, to_state text,
									   required_scope text DEFAULT NULL,
									   guard regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.machine_for_change(machine);
	PERFORM mandant.check_states_exist(machine, ARRAY[from_state, to_state]);
	IF from_state = to_state THEN
		RAISE EXCEPTION 'a transition must change the state'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('from_state and to_state are both %L.', from_state),
				  HINT = 'Rows that keep their state need no transition.';
	END IF;
	IF required_scope IS NOT NULL
		AND required_scope NOT IN ('read', 'write', 'delete', 'admin', 'internal') THEN
		RAISE EXCEPTION 'unknown scope "%"', required_scope
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('required_scope is %L.', required_scope),
				  HINT = 'Valid scopes are read, write, delete, admin and internal.';
	END IF;
	IF guard IS NOT NULL AND NOT EXISTS (
		SELECT 1 FROM pg_proc p
		WHERE p.oid = guard AND p.prorettype = 'boolean'::regtype
		  AND p.proargtypes = '3802 3802'::oidvector AND p.prokind = 'f') THEN
		RAISE EXCEPTION 'guard % must be a function (jsonb, jsonb) returning boolean', guard
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = format('%s is called with the old and the new row as jsonb.', guard),
				  HINT = 'Declare it as FUNCTION ...(old_row jsonb, new_row jsonb) RETURNS boolean.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.state_transition t
			   WHERE t.machine = add_transition.machine AND t.from_state = add_transition.from_state
				 AND t.to_state = add_transition.to_state) THEN
		RAISE EXCEPTION 'transition from "%" to "%" already exists', from_state, to_state
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('State machine %L already declares it.', machine),
				  HINT = 'Remove it with mandant.remove_transition() first to change its scope or guard.';
	END IF;
	INSERT INTO mandant.state_transition (machine, from_state, to_state, required_scope, guard)
	VALUES (machine, from_state, to_state, required_scope, guard);
END
$$;

COMMENT ON FUNCTION mandant.add_transition(text, text, text, text, regprocedure) IS
'Declare a transition; the caller must then hold required_scope, and guard(old jsonb, new jsonb) must return true. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.remove_transition(machine text, from_state text, to_state text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.machine_for_change(machine);
	DELETE FROM mandant.state_transition t
	WHERE t.machine = remove_transition.machine AND t.from_state = remove_transition.from_state
	  AND t.to_state = remove_transition.to_state;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'transition from "%" to "%" does not exist', from_state, to_state
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('State machine %L does not declare it.', machine),
				  HINT = format('See SELECT * FROM mandant.state_transition WHERE machine = %L.', machine);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.remove_transition(text, text, text) IS
'Remove a declared transition; every session obeys the change from its next statement. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.next_states(machine text, state text)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine) THEN
		RAISE EXCEPTION 'state machine "%" does not exist', machine
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('No row of mandant.state_machine is named %L.', machine),
				  HINT = 'Create it with mandant.create_state_machine().';
	END IF;
	PERFORM mandant.check_states_exist(machine, ARRAY[state]);
	RETURN ARRAY(SELECT t.to_state FROM mandant.state_transition t
				 WHERE t.machine = next_states.machine AND t.from_state = next_states.state
				 ORDER BY t.to_state);
END
$$;

COMMENT ON FUNCTION mandant.next_states(text, text) IS
'The states a row in state can move to (for user interfaces); scopes and guards still apply.';

CREATE FUNCTION mandant.enable_state_machine(tbl regclass, machine text, "column" name DEFAULT 'status',
											 log_transitions boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coltype regtype;
	statement text;
	existing text;
	stray text;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_state_machine');
	IF NOT EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine) THEN
		RAISE EXCEPTION 'state machine "%" does not exist', machine
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('No row of mandant.state_machine is named %L.', machine),
				  HINT = 'Create it with mandant.create_state_machine() first.';
	END IF;
	SELECT a.atttypid::regtype INTO coltype FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = "column" AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', "column", tbl
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('mandant.enable_state_machine(%L, %L) names it as the state column.', tbl, machine),
				  HINT = 'Add a text column for the state, or name the right one in the third argument.';
	END IF;
	IF coltype NOT IN ('text'::regtype, 'character varying'::regtype) THEN
		RAISE EXCEPTION 'state column "%" of table % must be of type text', "column", tbl
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = format('Column %I is of type %s.', "column", coltype),
				  HINT = 'Store states as text (or varchar).';
	END IF;
	EXECUTE format('SELECT %I FROM %s t WHERE %I IS NOT NULL AND NOT EXISTS '
				   '(SELECT 1 FROM mandant.state_machine_state x WHERE x.machine = $1 AND x.state = t.%I) LIMIT 1',
				   "column", tbl, "column", "column")
		INTO stray USING machine;
	IF stray IS NOT NULL THEN
		RAISE EXCEPTION 'table % has rows in state "%", which state machine "%" does not declare', tbl, stray, machine
			USING ERRCODE = 'check_violation',
				  DETAIL = format('Column %I holds %L.', "column", stray),
				  HINT = 'Declare the state with mandant.add_state(), or fix the rows first.';
	END IF;

	statement := format('CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON %s '
						'FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger(%L, %L, %L)',
						tbl, machine, "column", CASE WHEN COALESCE(log_transitions, true) THEN 'log' ELSE 'nolog' END);
	SELECT pg_get_triggerdef(t.oid) INTO existing
	FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'zz_mandant_state_machine';
	IF existing IS DISTINCT FROM statement THEN
		EXECUTE format('DROP TRIGGER IF EXISTS zz_mandant_state_machine ON %s', tbl);
		EXECUTE statement;
	END IF;

	INSERT INTO mandant.state_machine_table AS r (relid, machine, state_column)
	VALUES (tbl, machine, "column")
	ON CONFLICT (relid) DO UPDATE SET machine = EXCLUDED.machine, state_column = EXCLUDED.state_column
	WHERE (r.machine, r.state_column) IS DISTINCT FROM (EXCLUDED.machine, EXCLUDED.state_column);
END
$$;

COMMENT ON FUNCTION mandant.enable_state_machine(regclass, text, name, boolean) IS
'Bind a table to a state machine through a text column: a C BEFORE INSERT OR UPDATE trigger enforces initial states, declared transitions, scopes, guards and frozen states (MD010). Transitions are recorded by the audit trail when the table is audited, else in mandant.state_transition_log unless log_transitions is false. Idempotent; the table owner only.';

CREATE FUNCTION mandant.disable_state_machine(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_state_machine');
	IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'zz_mandant_state_machine') THEN
		EXECUTE format('DROP TRIGGER zz_mandant_state_machine ON %s', tbl);
	END IF;
	DELETE FROM mandant.state_machine_table r WHERE r.relid = tbl;
END
$$;

COMMENT ON FUNCTION mandant.disable_state_machine(regclass) IS
'Unbind a table from its state machine. The table owner only.';

CREATE FUNCTION mandant.drop_state_machine(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	used_by text;
BEGIN
	PERFORM mandant.machine_for_change(name);
	SELECT string_agg(r.relid::text, ', ' ORDER BY r.relid::text) INTO used_by
	FROM mandant.state_machine_table r WHERE r.machine = drop_state_machine.name;
	IF used_by IS NOT NULL THEN
		RAISE EXCEPTION 'state machine "%" is in use', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Tables bound to it: %s.', used_by),
				  HINT = 'Call mandant.disable_state_machine() on them first.';
	END IF;
	DELETE FROM mandant.state_machine m WHERE m.name = drop_state_machine.name;
END
$$;

COMMENT ON FUNCTION mandant.drop_state_machine(text) IS
'Drop an unused state machine with its states and transitions. Its owner or mandant_admin only.';

/* ---------------------------------------------------------------------------
 * Transactional outbox (extension/outbox.c)
 *
 * Events are written by mandant's C code in the writer's transaction.
 * Consumers (roles granted mandant_service or mandant_admin) claim them
 * across tenants with leases, acknowledge or reject them; tenants read their
 * own events under row level security.
 *
 * Delivery is at least once, in order per (tenant, aggregate): a claim never
 * hands out an event while an older event of the same aggregate is not
 * published yet (pending, leased, backing off or dead).  A dead event stops
 * its aggregate until it is replayed (delivered again) or skipped (given up,
 * recorded as such): later events of an aggregate usually depend on the
 * earlier ones, so they wait for a human decision rather than overtake.
 * ------------------------------------------------------------------------- */

/* No per-backend cache: a later event of an aggregate gets a larger id. */
CREATE SEQUENCE mandant.outbox_id_seq;

CREATE TABLE mandant.outbox (
	id				bigint PRIMARY KEY DEFAULT pg_catalog.nextval('mandant.outbox_id_seq'),
	event_id		uuid NOT NULL,
	tenant_id		uuid NOT NULL,
	topic			text NOT NULL,
	aggregate_type	text NOT NULL,
	aggregate_id	text,
	payload			jsonb NOT NULL,
	headers			jsonb NOT NULL,
	created_at		timestamptz NOT NULL,
	available_at	timestamptz NOT NULL,
	attempts		integer NOT NULL DEFAULT 0,
	last_error		text,
	locked_until	timestamptz,
	locked_by		text,
	published_at	timestamptz,
	dead_at			timestamptz
);

ALTER SEQUENCE mandant.outbox_id_seq OWNED BY mandant.outbox.id;

COMMENT ON TABLE mandant.outbox IS
'Transactional outbox: events written with the data they describe, claimed by consumers with leases. Platform events carry tenant_id 00000000-0000-0000-0000-000000000000.';

/* What a claim scans, and the per-aggregate order check. */
CREATE INDEX outbox_pending_idx ON mandant.outbox (id)
	WHERE published_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_aggregate_idx ON mandant.outbox (tenant_id, aggregate_type, aggregate_id, id)
	WHERE published_at IS NULL;

ALTER TABLE mandant.outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.outbox
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.outbox TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.outbox_id_seq', '');

CREATE FUNCTION mandant.outbox_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_outbox_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.outbox_trigger() IS
'Row trigger attached by mandant.enable_outbox(): one {domain}.{entity}.created|updated|deleted event per written row.';

CREATE FUNCTION mandant.emit(topic text, aggregate_id text, payload jsonb)
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_emit'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.emit(text, text, jsonb) IS
'Write a custom event (topic domain.entity.action, lower case) for the tenant of the transaction; returns its event id.';

CREATE FUNCTION mandant.emit_for(tenant uuid, topic text, aggregate_id text, payload jsonb)
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_emit_for'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.emit_for(uuid, text, text, jsonb) IS
'Internal: write a custom event for an explicit tenant (NULL: the platform), for the tenant lifecycle.';

REVOKE ALL ON FUNCTION mandant.emit_for(uuid, text, text, jsonb) FROM PUBLIC;

/*
 * enable_outbox attaches the outbox trigger, or replaces it when its
 * arguments changed.  Idempotent; the table owner only.
 */
CREATE FUNCTION mandant.enable_outbox(tbl regclass, domain text, entity text DEFAULT NULL,
									  exclude_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	excluded	text[];
	unknown		text;
	statement	text;
	existing	text;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_outbox');
	entity := COALESCE(entity, (SELECT c.relname FROM pg_class c WHERE c.oid = tbl));
	IF domain IS NULL OR domain !~ '^[a-z][a-z0-9_]{0,62}$' OR entity !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid event domain or entity: %.%', COALESCE(domain, 'NULL'), entity
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Topics are domain.entity.action; domain and entity are lower-case words (a-z first, then a-z, 0-9, ''_'').',
				  HINT = 'Pass e.g. mandant.enable_outbox(''app.site'', ''risk'', ''site'').';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary) THEN
		RAISE EXCEPTION 'table % has no primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Outbox events name their aggregate by the primary key, and are delivered in order per aggregate.',
				  HINT = format('Add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (id), then call mandant.enable_outbox() again.', tbl);
	END IF;
	SELECT array_agg(DISTINCT c ORDER BY c) INTO excluded FROM unnest(COALESCE(exclude_columns, '{}')) c;
	SELECT c INTO unknown FROM unnest(excluded) c
	WHERE c IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a
								   WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', unknown, tbl
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('exclude_columns names %L.', unknown),
				  HINT = format('Columns of %s: %s.', tbl,
								(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
								 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped));
	END IF;

	statement := format('CREATE TRIGGER mandant_outbox AFTER INSERT OR DELETE OR UPDATE ON %s '
						'FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger(%s)',
						tbl,
						(SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
						 FROM unnest(ARRAY[domain, entity] || COALESCE(excluded, '{}')) WITH ORDINALITY u (a, o)));
	SELECT pg_get_triggerdef(t.oid) INTO existing
	FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'mandant_outbox';
	IF existing IS DISTINCT FROM statement THEN
		EXECUTE format('DROP TRIGGER IF EXISTS mandant_outbox ON %s', tbl);
		EXECUTE statement;
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.enable_outbox(regclass, text, text, text[]) IS
'Publish every insert, update and delete of tbl as {domain}.{entity}.created|updated|deleted events (payload: the row with camelCase keys, without exclude_columns). entity defaults to the table name. Idempotent; the table owner only.';

CREATE FUNCTION mandant.disable_outbox(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_outbox');
	IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'mandant_outbox') THEN
		EXECUTE format('DROP TRIGGER mandant_outbox ON %s', tbl);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.disable_outbox(regclass) IS
'Stop publishing events for tbl (events already written stay). The table owner only.';

/*
 * outbox_claim leases up to max events to a consumer.  Candidates whose
 * lease expired after their last allowed attempt are dead-lettered instead
 * of delivered (the batch is then smaller).
 */
CREATE FUNCTION mandant.outbox_claim(consumer text, max integer DEFAULT 100,
									 lease interval DEFAULT '30 seconds')
RETURNS TABLE (id bigint, event_id uuid, topic text, tenant_id uuid, aggregate_id text,
			   attempts integer, envelope jsonb, headers jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	max_attempts constant integer := current_setting('mandant.outbox_max_attempts')::integer;
BEGIN
	IF consumer IS NULL OR length(consumer) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'consumer name must have 1 to 200 characters'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('mandant.outbox_claim() was called with consumer %L.', consumer),
				  HINT = 'Name the consumer, e.g. ''mailer-1''; leases record it.';
	END IF;
	IF max IS NULL OR max NOT BETWEEN 1 AND 10000 OR lease IS NULL OR lease < interval '1 second' THEN
		RAISE EXCEPTION 'invalid claim size or lease'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('max is %s and lease is %s.', COALESCE(max::text, 'NULL'), COALESCE(lease::text, 'NULL')),
				  HINT = 'Claim 1 to 10000 events with a lease of at least one second.';
	END IF;

	RETURN QUERY
	WITH candidate AS (
		SELECT c.id FROM mandant.outbox c
		WHERE c.published_at IS NULL AND c.dead_at IS NULL
		  AND c.available_at <= now()
		  AND (c.locked_until IS NULL OR c.locked_until <= now())
		  AND NOT EXISTS (SELECT 1 FROM mandant.outbox p
						  WHERE p.tenant_id = c.tenant_id AND p.aggregate_type = c.aggregate_type
							AND p.aggregate_id = c.aggregate_id AND p.id < c.id
							AND p.published_at IS NULL)
		ORDER BY c.id
		LIMIT max
		FOR UPDATE SKIP LOCKED
	),
	expired AS (
		/* leased after their last allowed attempt, and never acknowledged */
		UPDATE mandant.outbox o
		SET dead_at = now(), locked_until = NULL,
			last_error = format('the lease of %s expired after attempt %s', o.locked_by, o.attempts)
		FROM candidate
		WHERE o.id = candidate.id AND o.attempts >= max_attempts
	)
	UPDATE mandant.outbox o
	SET locked_until = now() + lease, locked_by = consumer, attempts = o.attempts + 1
	FROM candidate
	WHERE o.id = candidate.id AND o.attempts < max_attempts
	RETURNING o.id, o.event_id, o.topic, o.tenant_id, o.aggregate_id, o.attempts,
			  jsonb_build_object('eventId', o.event_id, 'type', o.topic, 'tenantId', o.tenant_id,
								 'timestamp', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
								 'payload', o.payload),
			  o.headers;
END
$$;

COMMENT ON FUNCTION mandant.outbox_claim(text, integer, interval) IS
'Lease up to max pending events (oldest first, FOR UPDATE SKIP LOCKED, never past an older unpublished event of the same aggregate) to consumer for lease. Returns each with its envelope {eventId, type, tenantId, timestamp, payload}. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.outbox_ack(ids bigint[])
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	WITH acked AS (
		UPDATE mandant.outbox o
		SET published_at = now(), locked_until = NULL
		WHERE o.id = ANY (ids) AND o.published_at IS NULL AND o.dead_at IS NULL
		  AND o.locked_until IS NOT NULL
		RETURNING 1
	)
	SELECT count(*) FROM acked
$$;

COMMENT ON FUNCTION mandant.outbox_ack(bigint[]) IS
'Mark leased events published; returns how many were (unknown, unleased or already published ids are ignored). mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.outbox_nack(id bigint, error text, consumer text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e			mandant.outbox;
	max_attempts constant integer := current_setting('mandant.outbox_max_attempts')::integer;
BEGIN
	SELECT * INTO e FROM mandant.outbox o WHERE o.id = outbox_nack.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % does not exist', id
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('No row of mandant.outbox has id %s.', id),
				  HINT = 'Pass the id that mandant.outbox_claim() returned.';
	END IF;
	IF e.published_at IS NOT NULL OR e.dead_at IS NOT NULL OR e.locked_until IS NULL
		OR e.locked_until <= now() OR (consumer IS NOT NULL AND e.locked_by IS DISTINCT FROM consumer) THEN
		RAISE EXCEPTION 'outbox event % is not leased%', id, COALESCE(' by ' || consumer, '')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Event %s is %s.', id,
								  CASE WHEN e.published_at IS NOT NULL THEN 'published'
									   WHEN e.dead_at IS NOT NULL THEN 'dead'
									   WHEN e.locked_until IS NULL THEN 'not claimed'
									   WHEN e.locked_until <= now() THEN format('no longer leased (the lease of %s expired)', e.locked_by)
									   ELSE format('leased by %s', e.locked_by) END),
				  HINT = 'Only the consumer holding a lease can reject the event; claim it again.';
	END IF;
	UPDATE mandant.outbox o
	SET locked_until = NULL, last_error = left(COALESCE(error, '(no error given)'), 2000),
		available_at = now() + make_interval(secs => LEAST(60, 2 ^ LEAST(e.attempts - 1, 6))),
		dead_at = CASE WHEN e.attempts >= max_attempts THEN now() END
	WHERE o.id = outbox_nack.id;
END
$$;

COMMENT ON FUNCTION mandant.outbox_nack(bigint, text, text) IS
'Reject a leased event: it is retried after 1, 2, 4 ... 60 seconds, and dead after mandant.outbox_max_attempts attempts. With consumer, the lease must be that consumer''s. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.outbox_replay(id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE mandant.outbox o
	SET published_at = NULL, dead_at = NULL, locked_until = NULL, locked_by = NULL,
		attempts = 0, available_at = now()
	WHERE o.id = outbox_replay.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % does not exist', id
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('No row of mandant.outbox has id %s (published events may have been purged).', id),
				  HINT = 'Look the event up in mandant.outbox first.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.outbox_replay(bigint) IS
'Deliver an event again (a dead one, or a published one): pending now, attempts reset. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.outbox_skip(id bigint, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.require_reason(reason, 'skip an event',
								   format('mandant.outbox_skip(%s) was called without a reason.', id),
								   'Say why the event is given up; the reason is kept with it.');
	UPDATE mandant.outbox o
	SET published_at = now(), locked_until = NULL,
		last_error = format('skipped by %s: %s (last error: %s)', session_user, reason, o.last_error)
	WHERE o.id = outbox_skip.id AND o.dead_at IS NOT NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % is not dead', id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Only dead events can be skipped; event %s is missing or still deliverable.', id),
				  HINT = 'Dead events have dead_at set; see mandant.outbox_stats().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.outbox_skip(bigint, text) IS
'Give up a dead event (it counts as published, with the reason recorded), releasing the later events of its aggregate. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.outbox_purge(older_than interval)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '0' THEN
		RAISE EXCEPTION 'invalid purge age'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('older_than is %s.', COALESCE(older_than::text, 'NULL')),
				  HINT = 'Pass how long published events are kept, e.g. ''7 days''.';
	END IF;
	DELETE FROM mandant.outbox o WHERE o.published_at < now() - older_than;
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;

COMMENT ON FUNCTION mandant.outbox_purge(interval) IS
'Delete events published longer ago than older_than; returns how many. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.outbox_stats()
RETURNS TABLE (pending bigint, leased bigint, dead bigint, oldest_pending_age interval)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT count(*) FILTER (WHERE o.dead_at IS NULL AND (o.locked_until IS NULL OR o.locked_until <= now())),
		   count(*) FILTER (WHERE o.dead_at IS NULL AND o.locked_until > now()),
		   count(*) FILTER (WHERE o.dead_at IS NOT NULL),
		   now() - min(o.created_at) FILTER (WHERE o.dead_at IS NULL)
	FROM mandant.outbox o
	WHERE o.published_at IS NULL
$$;

COMMENT ON FUNCTION mandant.outbox_stats() IS
'Unpublished events: pending (including backing off), leased, dead, and the age of the oldest one not dead. mandant_service and mandant_admin only.';

DO $grants$
DECLARE
	f text;
BEGIN
	FOREACH f IN ARRAY ARRAY[
		'mandant.outbox_claim(text, integer, interval)', 'mandant.outbox_ack(bigint[])',
		'mandant.outbox_nack(bigint, text, text)', 'mandant.outbox_replay(bigint)',
		'mandant.outbox_skip(bigint, text)', 'mandant.outbox_purge(interval)',
		'mandant.outbox_stats()']
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO mandant_service, mandant_admin', f);
	END LOOP;
END
$grants$;

/* ---------------------------------------------------------------------------
 * Versioned configuration
 *
 * mandant.config_entry holds the current value of every (tenant, service,
 * key); tenant_id NULL is the global value every tenant falls back to.
 * Each change bumps the key's version by one and takes the next global
 * revision, under a row lock on mandant.config_clock held until commit: so
 * writers commit in revision order, and a reader that remembers the highest
 * revision it has seen never misses a later change (config_changes).
 * mandant.config_history keeps every change (append-only).  Commit sends
 * NOTIFY mandant_config {tenantId, service, key, version, revision}, never
 * the value.
 *
 * Who writes: a tenant's values, trusted backends (mandant_service,
 * mandant_admin) in that tenant and end users holding scope admin; global
 * values, mandant_admin without a tenant.  Everyone reads their tenant's
 * and the global values (row level security).
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.config_clock (
	id			integer PRIMARY KEY CONSTRAINT config_clock_one_row CHECK (id = 1),
	revision	bigint NOT NULL
);

COMMENT ON TABLE mandant.config_clock IS
'The global configuration revision (its one row is written by the first change, so that a dump restores it); its row lock orders configuration writers by commit.';

CREATE TABLE mandant.config_entry (
	tenant_id	uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	service		text NOT NULL,
	key			text NOT NULL,
	value		jsonb,
	version		bigint NOT NULL,
	revision	bigint NOT NULL,
	updated_at	timestamptz NOT NULL,
	updated_by	text NOT NULL,
	deleted_at	timestamptz,
	CONSTRAINT config_entry_key UNIQUE NULLS NOT DISTINCT (tenant_id, service, key),
	CONSTRAINT config_entry_deleted CHECK ((value IS NULL) = (deleted_at IS NOT NULL))
);

CREATE INDEX config_entry_revision_idx ON mandant.config_entry (revision);

COMMENT ON TABLE mandant.config_entry IS
'Current configuration values per (tenant, service, key); tenant_id NULL: global. A deleted key keeps its row (value NULL) so that its version continues.';

CREATE TABLE mandant.config_history (
	revision		bigint PRIMARY KEY,
	tenant_id		uuid,
	service			text NOT NULL,
	key				text NOT NULL,
	version			bigint NOT NULL,
	old_value		jsonb,
	new_value		jsonb,
	reason			text NOT NULL,
	changed_by		text NOT NULL,
	actor_user_id	uuid,
	request_id		text,
	changed_at		timestamptz NOT NULL
);

CREATE INDEX config_history_key_idx ON mandant.config_history (service, key, tenant_id, version);

COMMENT ON TABLE mandant.config_history IS
'Every configuration change: who (user id or role), when, old and new value, reason, request id. Append-only.';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.config_history
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.config_history ENABLE ALWAYS TRIGGER append_only;

ALTER TABLE mandant.config_entry ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_global ON mandant.config_entry
	FOR SELECT USING (tenant_id IS NULL OR tenant_id = mandant.current_tenant());
ALTER TABLE mandant.config_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_global ON mandant.config_history
	FOR SELECT USING (tenant_id IS NULL OR tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.config_entry, mandant.config_history, mandant.config_clock TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.config_entry', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.config_history', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.config_clock', '');

/*
 * check_config_input raises on a malformed service, key or reason, and on a
 * secret stored as a plain value.
 */
CREATE FUNCTION mandant.check_config_input(service text, key text, value jsonb, reason text, deleting boolean)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF service IS NULL OR service !~ '^[a-z][a-z0-9_.-]{0,99}$' THEN
		RAISE EXCEPTION 'invalid configuration service %', COALESCE(quote_literal(service), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A service name has 1 to 100 characters: a-z first, then a-z, 0-9, ''_'', ''.'' or ''-''.',
				  HINT = 'Name the service that reads the value, e.g. ''mailer''.';
	END IF;
	IF key IS NULL OR key = '' OR length(key) > 200 OR key ~ '[[:space:][:cntrl:]]' THEN
		RAISE EXCEPTION 'invalid configuration key %', COALESCE(quote_literal(left(key, 60)), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('A key has 1 to 200 characters and no whitespace; this one has %s.', COALESCE(length(key), 0)),
				  HINT = 'Use a dotted name such as ''smtp.host''.';
	END IF;
	PERFORM mandant.require_reason(reason, 'change configuration',
								   format('The change of %s/%s has no reason.', service, key),
								   'Say why, e.g. ''new SMTP relay''; the reason is kept in mandant.config_history.');
	IF NOT deleting AND value IS NULL THEN
		RAISE EXCEPTION 'configuration value must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = format('mandant.config_set(%L, %L) was called with NULL.', service, key),
				  HINT = 'Use mandant.config_delete() to remove a key, or pass JSON null (''null''::jsonb).';
	END IF;
	IF NOT deleting AND key ~* '(password|secret|token|api_?key|private_?key)'
		AND NOT (jsonb_typeof(value) = 'object' AND value ?& ARRAY['secretRef']
				 AND (SELECT count(*) FROM jsonb_object_keys(value)) = 1
				 AND jsonb_typeof(value -> 'secretRef') = 'string') THEN
		RAISE EXCEPTION 'configuration key "%" looks like a secret', key
			USING ERRCODE = 'MD060',
				  DETAIL = 'Keys naming a password, secret, token, API key or private key may only hold a reference to the secret.',
				  HINT = 'Store the secret in your secret manager and set {"secretRef": "<where to find it>"}.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_config_input(text, text, jsonb, text, boolean) IS
'Internal: raise on a malformed configuration service, key, reason or value (MD060 for plain secrets).';

/*
 * config_apply is the one path for every change: it takes the next
 * revision (locking the clock until commit), checks the expected version,
 * writes entry and history and queues the notification.  Returns the new
 * version.  Only mandant.config_write() (C, extension/config.c) calls it,
 * after checking that the caller may change the configuration of tenant;
 * no role holds EXECUTE on it.
 */
CREATE FUNCTION mandant.config_apply(tenant uuid, service text, key text, value jsonb,
									 reason text, expected_version bigint, changed_by text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rev		bigint;
	current	mandant.config_entry;
	version	bigint;
	who		text := COALESCE(mandant.current_user_id()::text, changed_by);
BEGIN
	PERFORM mandant.check_config_input(service, key, value, reason, value IS NULL);
	INSERT INTO mandant.config_clock AS c (id, revision) VALUES (1, 1)
	ON CONFLICT (id) DO UPDATE SET revision = c.revision + 1
	RETURNING c.revision INTO rev;
	SELECT * INTO current FROM mandant.config_entry e
	WHERE e.tenant_id IS NOT DISTINCT FROM tenant AND e.service = config_apply.service AND e.key = config_apply.key
	FOR UPDATE;
	version := COALESCE(current.version, 0);

	IF expected_version IS NOT NULL AND expected_version <> version THEN
		RAISE EXCEPTION 'configuration %/% changed: version % is not the current one', service, key, expected_version
			USING ERRCODE = 'MD020',
				  DETAIL = format('The current version is %s (the change expected %s).', version, expected_version),
				  HINT = 'Read the value again with mandant.config_get() and retry with its version.';
	END IF;
	IF value IS NULL AND (current.value IS NULL) THEN
		RAISE EXCEPTION 'configuration %/% does not exist', service, key
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('There is no %s value to delete.', CASE WHEN tenant IS NULL THEN 'global' ELSE 'tenant' END),
				  HINT = 'See mandant.config_get_all() for the keys that are set.';
	END IF;

	version := version + 1;
	INSERT INTO mandant.config_entry AS e (tenant_id, service, key, value, version, revision,
										   updated_at, updated_by, deleted_at)
	VALUES (tenant, service, key, value, version, rev, now(), who,
			CASE WHEN value IS NULL THEN now() END)
	ON CONFLICT ON CONSTRAINT config_entry_key DO UPDATE
	SET value = EXCLUDED.value, version = EXCLUDED.version, revision = EXCLUDED.revision,
		updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by, deleted_at = EXCLUDED.deleted_at;
	INSERT INTO mandant.config_history (revision, tenant_id, service, key, version, old_value, new_value,
										reason, changed_by, actor_user_id, request_id, changed_at)
	VALUES (rev, tenant, service, key, version, current.value, value, reason,
			changed_by, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''), now());
	PERFORM pg_notify('mandant_config',
					  jsonb_build_object('tenantId', tenant, 'service', service, 'key', key,
										 'version', version, 'revision', rev)::text);
	RETURN version;
END
$$;

COMMENT ON FUNCTION mandant.config_apply(uuid, text, text, jsonb, text, bigint, text) IS
'Internal: applies a configuration change for mandant.config_write(), which checks the caller first.';

REVOKE ALL ON FUNCTION mandant.config_apply(uuid, text, text, jsonb, text, bigint, text) FROM PUBLIC;

CREATE FUNCTION mandant.config_write(service text, key text, value jsonb, reason text,
									 expected_version bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_config_write'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.config_write(text, text, jsonb, text, bigint) IS
'Internal: changes a value of the current tenant (no tenant: global; value NULL deletes) after checking that the calling role may; use config_set, config_delete or config_rollback.';

CREATE FUNCTION mandant.config_set(service text, key text, value jsonb, reason text,
								   expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_config_input(service, key, value, reason, false);
	RETURN mandant.config_write(service, key, value, reason, expected_version);
END
$$;

COMMENT ON FUNCTION mandant.config_set(text, text, jsonb, text, bigint) IS
'Set a value for the current tenant (no tenant: global, mandant_admin only) and return its new version. With expected_version it is a compare-and-set: a stale version fails with MD020. Secret-looking keys take only {"secretRef": ...} (MD060).';

CREATE FUNCTION mandant.config_delete(service text, key text, reason text,
									  expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_config_input(service, key, NULL, reason, true);
	RETURN mandant.config_write(service, key, NULL, reason, expected_version);
END
$$;

COMMENT ON FUNCTION mandant.config_delete(text, text, text, bigint) IS
'Remove a value of the current tenant (no tenant: global); the tenant falls back to the global value. Returns the new version (deletions are versions too).';

CREATE FUNCTION mandant.config_rollback(service text, key text, to_version bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant	uuid := mandant.current_tenant();
	old		jsonb;
	current	bigint;
BEGIN
	PERFORM mandant.check_config_input(service, key, NULL, reason, true);
	SELECT h.new_value INTO old FROM mandant.config_history h
	WHERE h.tenant_id IS NOT DISTINCT FROM tenant AND h.service = config_rollback.service
	  AND h.key = config_rollback.key AND h.version = to_version;
	IF NOT FOUND THEN
		SELECT max(h.version) INTO current FROM mandant.config_history h
		WHERE h.tenant_id IS NOT DISTINCT FROM tenant AND h.service = config_rollback.service
		  AND h.key = config_rollback.key;
		RAISE EXCEPTION 'configuration %/% has no version %', service, key, COALESCE(to_version::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Its versions run from 1 to %s.', COALESCE(current, 0)),
				  HINT = 'See mandant.config_history for the versions and their values.';
	END IF;
	RETURN mandant.config_write(service, key, old, format('rollback to version %s: %s', to_version, reason), NULL);
END
$$;

COMMENT ON FUNCTION mandant.config_rollback(text, text, bigint, text) IS
'Write a new version holding the value of an earlier version (of the current tenant, or global without one). Returns the new version.';

CREATE FUNCTION mandant.config_get(service text, key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_config_get'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION mandant.config_get(text, text) IS
'The value of a key: the current tenant''s, else the global one, else NULL.';

CREATE FUNCTION mandant.config_get_all(service text)
RETURNS TABLE (key text, value jsonb, version bigint, revision bigint, scope text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT DISTINCT ON (e.key) e.key, e.value, e.version, e.revision,
		   CASE WHEN e.tenant_id IS NULL THEN 'global' ELSE 'tenant' END
	FROM mandant.config_entry e
	WHERE e.service = config_get_all.service AND e.value IS NOT NULL
	  AND (e.tenant_id = mandant.current_tenant() OR e.tenant_id IS NULL)
	ORDER BY e.key, e.tenant_id NULLS LAST
$$;

COMMENT ON FUNCTION mandant.config_get_all(text) IS
'Every key of a service with its effective value (the tenant''s, else the global one), version, revision and scope.';

CREATE FUNCTION mandant.config_changes(since_revision bigint)
RETURNS TABLE (tenant_id uuid, service text, key text, value jsonb, version bigint,
			   revision bigint, deleted boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT e.tenant_id, e.service, e.key, e.value, e.version, e.revision, e.value IS NULL
	FROM mandant.config_entry e
	WHERE e.revision > COALESCE(since_revision, 0)
	  AND (e.tenant_id = mandant.current_tenant() OR e.tenant_id IS NULL)
	ORDER BY e.revision
$$;

COMMENT ON FUNCTION mandant.config_changes(bigint) IS
'Every entry (of the current tenant, and global) changed after since_revision, with its current value: warm load with 0, then reconcile from the highest revision seen.';

CREATE FUNCTION mandant.config_revision()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE((SELECT c.revision FROM mandant.config_clock c WHERE c.id = 1), 0)
$$;

COMMENT ON FUNCTION mandant.config_revision() IS
'The highest committed configuration revision.';

/* ---------------------------------------------------------------------------
 * Identity and access
 *
 * Users (global: one person, one e-mail, many tenants), memberships (user x
 * tenant x role), roles (system roles with fixed scopes, tenant roles with
 * a subset), service accounts, refresh tokens in families, the jti
 * denylist and the login log.
 *
 * No table holds a plaintext password, token or key: passwords are bcrypt
 * (cost 12, pgcrypto), refresh tokens and client secrets SHA-256 (they are
 * 256 random bits), TOTP secrets sealed with AES-256-GCM (totp.c), the
 * signing key stays in a file (jwt.c).  Nobody but the extension owner
 * reads these tables directly; the functions below are the interface.
 *
 * Who may do what: management operations go through the C gate
 * mandant.identity_call() (gate.c), which checks the real caller;
 * self-service operations act on app.current_user_id, which only
 * authenticate() and set_user() set; login, refresh and service_token take
 * credentials.
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.users (
	id				uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	email			text NOT NULL
					CONSTRAINT users_email_format
						CHECK (pg_catalog.length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
	display_name	text NOT NULL
					CONSTRAINT users_display_name_length
						CHECK (pg_catalog.length(pg_catalog.btrim(display_name)) BETWEEN 1 AND 200),
	password_hash	text NOT NULL,
	status			text NOT NULL DEFAULT 'active'
					CONSTRAINT users_status_value CHECK (status IN ('active', 'disabled')),
	totp_state		text NOT NULL DEFAULT 'off'
					CONSTRAINT users_totp_state_value CHECK (totp_state IN ('off', 'pending', 'on')),
	totp_secret		bytea,
	totp_last_step	bigint,
	token_version	bigint NOT NULL DEFAULT 1,
	last_login_at	timestamptz,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CONSTRAINT users_totp_secret CHECK ((totp_state = 'off') = (totp_secret IS NULL))
);

CREATE UNIQUE INDEX users_email_key ON mandant.users (pg_catalog.lower(email));

COMMENT ON TABLE mandant.users IS
'People who log in. E-mail unique case-insensitively; password_hash is bcrypt, totp_secret sealed (AES-256-GCM); token_version invalidates every token when it grows.';

CREATE TABLE mandant.role (
	tenant_id	uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	name		text NOT NULL
				CONSTRAINT role_name_format CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
	scopes		text[] NOT NULL
				CONSTRAINT role_scopes_known
					CHECK (scopes <@ ARRAY['read', 'write', 'delete', 'admin']::text[]),
	description	text,
	CONSTRAINT role_key UNIQUE NULLS NOT DISTINCT (tenant_id, name)
);

COMMENT ON TABLE mandant.role IS
'Roles and their scopes: system roles (tenant_id NULL) owner, admin, manager, agent, viewer; tenants add their own with a subset of read, write, delete, admin.';

INSERT INTO mandant.role (tenant_id, name, scopes, description) VALUES
	(NULL, 'owner', '{read,write,delete,admin}', 'Owns the tenant; the only role that grants or removes owners.'),
	(NULL, 'admin', '{read,write,delete,admin}', 'Manages the tenant and its members.'),
	(NULL, 'manager', '{read,write}', 'Works with the data.'),
	(NULL, 'agent', '{read,write}', 'Works with the data.'),
	(NULL, 'viewer', '{read}', 'Reads.');

CREATE TABLE mandant.membership (
	tenant_id	uuid NOT NULL REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	user_id		uuid NOT NULL REFERENCES mandant.users (id) ON DELETE CASCADE ON UPDATE CASCADE,
	role		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	text NOT NULL,
	PRIMARY KEY (tenant_id, user_id)
);

CREATE INDEX membership_user_idx ON mandant.membership (user_id);

COMMENT ON TABLE mandant.membership IS
'Who belongs to which tenant, in which role. A tenant keeps at least one owner.';

CREATE TABLE mandant.service_account (
	id			uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	client_id	text NOT NULL CONSTRAINT service_account_client_id_key UNIQUE,
	secret_hash	bytea NOT NULL,
	name		text NOT NULL
				CONSTRAINT service_account_name_length
					CHECK (pg_catalog.length(pg_catalog.btrim(name)) BETWEEN 1 AND 200),
	tenant_id	uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	scopes		text[] NOT NULL
				CONSTRAINT service_account_scopes_known
					CHECK (scopes <@ ARRAY['read', 'write', 'delete', 'admin', 'internal']::text[]),
	status		text NOT NULL DEFAULT 'active'
				CONSTRAINT service_account_status_value CHECK (status IN ('active', 'disabled')),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	text NOT NULL,
	last_used_at timestamptz,
	CONSTRAINT service_account_internal_platform
		CHECK (tenant_id IS NULL OR NOT 'internal' = ANY (scopes))
);

COMMENT ON TABLE mandant.service_account IS
'Machine clients: client id + secret (stored as SHA-256) give tokens of type m2m. Platform accounts (no tenant) may hold scope internal.';

CREATE TABLE mandant.refresh_family (
	id				uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	user_id			uuid NOT NULL REFERENCES mandant.users (id) ON DELETE CASCADE ON UPDATE CASCADE,
	tenant_id		uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	revoked_at		timestamptz,
	revoked_reason	text
);

CREATE INDEX refresh_family_user_idx ON mandant.refresh_family (user_id) WHERE revoked_at IS NULL;

COMMENT ON TABLE mandant.refresh_family IS
'One login session: every refresh token rotated from the first one. Presenting a rotated token again revokes the family.';

CREATE TABLE mandant.refresh_token (
	token_hash	bytea PRIMARY KEY,
	family_id	uuid NOT NULL REFERENCES mandant.refresh_family (id) ON DELETE CASCADE,
	issued_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at	timestamptz NOT NULL,
	consumed_at	timestamptz
);

CREATE INDEX refresh_token_family_idx ON mandant.refresh_token (family_id);

COMMENT ON TABLE mandant.refresh_token IS
'Refresh tokens by SHA-256; consumed_at is set when the token is rotated.';

CREATE TABLE mandant.revoked_jti (
	jti			uuid PRIMARY KEY,
	expires_at	timestamptz NOT NULL,
	revoked_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE mandant.revoked_jti IS
'Access tokens logged out before they expire (checked by mandant.authenticate); rows can go once expires_at has passed.';

CREATE TABLE mandant.login_attempt (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	email		text,
	user_id		uuid,
	tenant_id	uuid,
	client_ip	inet,
	success		boolean NOT NULL,
	reason		text,
	request_id	text
);

CREATE INDEX login_attempt_at_idx ON mandant.login_attempt (at);

COMMENT ON TABLE mandant.login_attempt IS
'Every login and service token attempt, successful or not (failures are written by mandant''s worker, so they survive the refusal''s rollback).';

-- Nobody reads these tables directly but platform administrators (never
-- the secret columns); tenants see their own memberships and roles.
REVOKE ALL ON mandant.users, mandant.role, mandant.membership, mandant.service_account,
	mandant.refresh_family, mandant.refresh_token, mandant.revoked_jti, mandant.login_attempt FROM PUBLIC;
GRANT SELECT (id, email, display_name, status, totp_state, token_version, last_login_at, created_at, updated_at)
	ON mandant.users TO mandant_admin;
GRANT SELECT (id, client_id, name, tenant_id, scopes, status, created_at, created_by, last_used_at)
	ON mandant.service_account TO mandant_admin;
GRANT SELECT ON mandant.login_attempt, mandant.refresh_family TO mandant_admin;
GRANT SELECT ON mandant.membership, mandant.role TO PUBLIC;
ALTER TABLE mandant.membership ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.membership FOR SELECT
	USING (tenant_id = mandant.current_tenant() OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'));
ALTER TABLE mandant.role ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_system ON mandant.role FOR SELECT
	USING (tenant_id IS NULL OR tenant_id = mandant.current_tenant() OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'));

SELECT pg_catalog.pg_extension_config_dump('mandant.users', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.role', 'WHERE tenant_id IS NOT NULL');
SELECT pg_catalog.pg_extension_config_dump('mandant.membership', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.service_account', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.refresh_family', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.refresh_token', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.revoked_jti', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.login_attempt', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.login_attempt_id_seq', '');

/* ---- C building blocks ------------------------------------------------- */

CREATE FUNCTION mandant.authenticate(token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_authenticate'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.authenticate(text) IS
'Verify an access token (RS256, issuer, times with 30 s leeway, not revoked, user active with a current token version and still in the role, tenant enterable) and set tenant, user and scopes for the transaction. MD051 invalid, MD052 expired, MD053 revoked, MD003 suspended tenant.';

CREATE FUNCTION mandant.set_user(user_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_user'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.set_user(uuid) IS
'For trusted backends (mandant_service, mandant_admin) acting for an end user: set the user and the scopes of their role in the current tenant (42501 if not a member).';

CREATE FUNCTION mandant.jwks()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_jwks'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.jwks() IS
'The public keys that verify access tokens, as a JSON Web Key Set (kid: RFC 7638 thumbprint).';

CREATE FUNCTION mandant.jwt_sign(claims jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_jwt_sign'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.jwt_sign(jsonb) IS
'Internal: sign claims with the signing key (RS256).';

CREATE FUNCTION mandant.jwt_verify(token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_jwt_verify'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.jwt_verify(text) IS
'Internal: the claims of a token whose form, signature, issuer and times check out; revocation is not checked.';

CREATE FUNCTION mandant.random_bytes(bytes integer)
RETURNS bytea
AS 'MODULE_PATHNAME', 'mandant_random_bytes'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.random_bytes(integer) IS
'Random bytes from OpenSSL (16 to 64).';

CREATE FUNCTION mandant.random_token(bytes integer DEFAULT 32)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_random_token'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.random_token(integer) IS
'Random bytes (OpenSSL), base64url encoded.';

CREATE FUNCTION mandant.totp_code(secret bytea, at timestamptz DEFAULT pg_catalog.now(), digits integer DEFAULT 6)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_totp_code'
LANGUAGE C STABLE STRICT;

COMMENT ON FUNCTION mandant.totp_code(bytea, timestamptz, integer) IS
'The RFC 6238 code (HMAC-SHA1, 30 s steps) of a secret at a time.';

CREATE FUNCTION mandant.base32_encode(data bytea)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_base32_encode'
LANGUAGE C IMMUTABLE STRICT;

COMMENT ON FUNCTION mandant.base32_encode(bytea) IS
'RFC 4648 base32 without padding (how authenticator apps take secrets).';

CREATE FUNCTION mandant.secret_seal(secret bytea, owner uuid)
RETURNS bytea
AS 'MODULE_PATHNAME', 'mandant_secret_seal'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.secret_seal(bytea, uuid) IS
'Internal: seal a secret for an owner (AES-256-GCM under mandant.secret_key_file).';

CREATE FUNCTION mandant.totp_match(sealed bytea, owner uuid, code text, after_step bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_totp_match'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.totp_match(bytea, uuid, text, bigint) IS
'Internal: the step (now +/- 1) whose code matches and that is later than after_step, else NULL.';

CREATE FUNCTION mandant.rate_limit(key text, max integer, per interval)
RETURNS integer
AS 'MODULE_PATHNAME', 'mandant_rate_limit'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.rate_limit(text, integer, interval) IS
'Count one event for key; MD040 when max events already happened within per (sliding window, shared by all connections, not undone by rollback). Returns how many remain.';

CREATE FUNCTION mandant.login_guard(keys text[], max integer, per interval)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_login_guard'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.login_guard(text[], integer, interval) IS
'Internal: MD040 when a key has max failures within per.';

CREATE FUNCTION mandant.login_failed_count(keys text[], per interval)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_login_failed_count'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.login_failed_count(text[], interval) IS
'Internal: count a failure for each key (survives rollback).';

CREATE FUNCTION mandant.login_reset(key text, per interval)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_login_reset'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.login_reset(text, interval) IS
'Internal: forget the failures of a key.';

CREATE FUNCTION mandant.defer_write(entry jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_defer_write'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.defer_write(jsonb) IS
'Internal: have mandant''s worker apply the entry (mandant.deferred_apply) in its own transaction, and wait for it.';

CREATE FUNCTION mandant.audit_log_for(tenant uuid, actor uuid, request_id text, category text,
									  action text, entity_type text, entity_id text, payload jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_audit_log_for'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb) IS
'Internal: write an application event for an explicit tenant (NULL: platform), actor and request id.';

CREATE FUNCTION mandant.identity_call(op text, tenant uuid, args jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_identity_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.identity_call(text, uuid, jsonb) IS
'Internal: run identity operation op after checking that the calling role may (see extension/gate.c).';

REVOKE ALL ON FUNCTION mandant.jwt_sign(jsonb), mandant.jwt_verify(text), mandant.secret_seal(bytea, uuid),
	mandant.totp_match(bytea, uuid, text, bigint), mandant.login_guard(text[], integer, interval),
	mandant.login_failed_count(text[], interval), mandant.login_reset(text, interval),
	mandant.defer_write(jsonb), mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb)
	FROM PUBLIC;

/*
 * Password hashing through pgcrypto, wherever it is installed; the dummy
 * hash (of a random string nobody knows) lets a login for an unknown
 * e-mail cost one bcrypt like any other.
 */
DO $install$
DECLARE
	crypto name := (SELECT n.nspname FROM pg_catalog.pg_extension e
					JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
					WHERE e.extname = 'pgcrypto');
	dummy text;
BEGIN
	EXECUTE format('SELECT %1$I.crypt(mandant.random_token(32), %1$I.gen_salt(''bf'', 12))', crypto) INTO dummy;
	EXECUTE format($f$
		CREATE FUNCTION mandant.password_hash(password text) RETURNS text
		LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
		AS $b$ SELECT %1$I.crypt(password, %1$I.gen_salt('bf', 12)) $b$$f$, crypto);
	EXECUTE format($f$
		CREATE FUNCTION mandant.password_matches(password text, hash text) RETURNS boolean
		LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
		AS $b$ SELECT %1$I.crypt(COALESCE(password, ''), COALESCE(hash, %2$L)) = COALESCE(hash, '') $b$$f$,
		crypto, dummy);
END
$install$;

COMMENT ON FUNCTION mandant.password_hash(text) IS
'Internal: bcrypt (cost 12) of a password.';
COMMENT ON FUNCTION mandant.password_matches(text, text) IS
'Internal: whether a password matches a bcrypt hash; with no hash it costs the same and answers false.';
REVOKE ALL ON FUNCTION mandant.password_hash(text), mandant.password_matches(text, text) FROM PUBLIC;

/* ---- checks ----------------------------------------------------------------- */

/*
 * check_password raises unless a password is acceptable: 12 to 72 bytes
 * (bcrypt ignores what follows 72), not the e-mail.
 */
CREATE FUNCTION mandant.check_password(password text, email text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF password IS NULL OR length(password) < 12 THEN
		RAISE EXCEPTION 'password too short'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It has %s characters; at least 12 are required.', COALESCE(length(password), 0)),
				  HINT = 'Use a passphrase of several words.';
	END IF;
	IF octet_length(password) > 72 THEN
		RAISE EXCEPTION 'password too long'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It has %s bytes; bcrypt uses at most 72.', octet_length(password)),
				  HINT = 'Use at most 72 bytes (fewer characters outside ASCII).';
	END IF;
	IF lower(password) = lower(btrim(email)) THEN
		RAISE EXCEPTION 'password must not be the e-mail address'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The password equals the e-mail address.',
				  HINT = 'Choose a password nobody can guess from the account.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_password(text, text) IS
'Raise 22023 unless a password has at least 12 characters, at most 72 bytes (what bcrypt reads) and differs from the e-mail.';

CREATE FUNCTION mandant.check_email(email text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF email IS NULL OR length(email) > 254 OR btrim(email) !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'invalid e-mail address'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s is not an address of at most 254 characters.',
								  COALESCE(quote_literal(left(email, 60)), 'NULL')),
				  HINT = 'Pass an address such as ''ada@example.com''.';
	END IF;
	RETURN btrim(email);
END
$$;

COMMENT ON FUNCTION mandant.check_email(text) IS
'Internal: the trimmed e-mail, or 22023 when it is not an address of at most 254 characters.';

CREATE FUNCTION mandant.require_user()
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me uuid := mandant.current_user_id();
BEGIN
	IF me IS NULL THEN
		RAISE EXCEPTION 'no user is signed in'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'This acts for the signed-in user, and app.current_user_id is not set.',
				  HINT = 'Call mandant.authenticate(access_token) first, in the same transaction.';
	END IF;
	RETURN me;
END
$$;

COMMENT ON FUNCTION mandant.require_user() IS
'The signed-in user (set by authenticate or set_user), or 42501.';

/*
 * record_event writes an identity event for a tenant (NULL: platform) with
 * the signed-in user as actor and the request id of the transaction.
 */
CREATE FUNCTION mandant.record_event(tenant uuid, category text, action text, entity_type text,
									 entity_id text, payload jsonb)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								 category, action, entity_type, entity_id, payload);
$$;

COMMENT ON FUNCTION mandant.record_event(uuid, text, text, text, text, jsonb) IS
'Internal: an audit event of an identity operation, by the signed-in user, with the request id.';

REVOKE ALL ON FUNCTION mandant.record_event(uuid, text, text, text, text, jsonb) FROM PUBLIC;

/* ---- tokens ------------------------------------------------------------------ */

CREATE FUNCTION mandant.ttl_seconds(setting text)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT extract(epoch FROM current_setting(setting)::interval)::integer $$;

COMMENT ON FUNCTION mandant.ttl_seconds(text) IS
'Internal: a duration setting (mandant.access_token_ttl, mandant.refresh_token_ttl) in seconds.';

/*
 * issue_tokens creates an access token and a refresh token of family for a
 * user in a tenant (or none), and the answer login and refresh give.
 */
CREATE FUNCTION mandant.issue_tokens(account mandant.users, tenant uuid, family uuid)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t			mandant.tenant;
	member_role	text;
	scopes		text[] := '{}';
	ttl			integer := mandant.ttl_seconds('mandant.access_token_ttl');
	issued		bigint := floor(extract(epoch FROM clock_timestamp()));
	refresh		text := mandant.random_token(32);
	access		text;
BEGIN
	IF tenant IS NOT NULL THEN
		SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
		SELECT m.role INTO member_role FROM mandant.membership m
		WHERE m.tenant_id = tenant AND m.user_id = account.id;
		SELECT r.scopes INTO scopes FROM mandant.role r
		WHERE r.name = member_role AND (r.tenant_id = tenant OR r.tenant_id IS NULL)
		ORDER BY r.tenant_id NULLS LAST LIMIT 1;
	END IF;
	access := mandant.jwt_sign(jsonb_strip_nulls(jsonb_build_object(
		'iss', current_setting('mandant.jwt_issuer'),
		'sub', account.id,
		'typ', 'access',
		'tid', tenant,
		'tslug', t.slug,
		'role', member_role,
		'scopes', to_jsonb(COALESCE(scopes, '{}')),
		'jti', gen_random_uuid(),
		'sid', family,
		'ver', account.token_version,
		'iat', issued,
		'exp', issued + ttl)));
	INSERT INTO mandant.refresh_token (token_hash, family_id, expires_at)
	VALUES (sha256(convert_to(refresh, 'UTF8')), family,
			now() + make_interval(secs => mandant.ttl_seconds('mandant.refresh_token_ttl')));
	RETURN jsonb_build_object(
		'accessToken', access,
		'refreshToken', refresh,
		'tokenType', 'Bearer',
		'expiresIn', ttl,
		'tenant', CASE WHEN tenant IS NULL THEN NULL
					   ELSE jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name) END,
		'role', member_role,
		'user', jsonb_build_object('id', account.id, 'email', account.email,
								   'displayName', account.display_name));
END
$$;

COMMENT ON FUNCTION mandant.issue_tokens(mandant.users, uuid, uuid) IS
'Internal: a signed access token and a new refresh token of family, as login and refresh answer them.';

/*
 * deferred_apply is what mandant's worker runs for a write that must
 * outlive the caller's rollback (extension/deferred.c).
 */
CREATE FUNCTION mandant.deferred_apply(entry jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text := entry ->> 'kind';
BEGIN
	IF kind = 'login_failed' THEN
		INSERT INTO mandant.login_attempt (at, email, user_id, tenant_id, client_ip, success, reason, request_id)
		VALUES ((entry ->> 'at')::timestamptz, entry ->> 'email', (entry ->> 'userId')::uuid,
				(entry ->> 'tenantId')::uuid, (entry ->> 'clientIp')::inet, false,
				entry ->> 'reason', entry ->> 'requestId');
		PERFORM mandant.audit_log_for((entry ->> 'tenantId')::uuid, (entry ->> 'userId')::uuid,
									  entry ->> 'requestId', 'auth', entry ->> 'action', 'user',
									  entry ->> 'userId',
									  jsonb_strip_nulls(jsonb_build_object('login', entry ->> 'email',
																		   'clientIp', entry ->> 'clientIp',
																		   'reason', entry ->> 'reason')));
	ELSIF kind = 'family_revoked' THEN
		UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = entry ->> 'reason'
		WHERE f.id = (entry ->> 'familyId')::uuid AND f.revoked_at IS NULL;
		PERFORM mandant.audit_log_for((entry ->> 'tenantId')::uuid, (entry ->> 'userId')::uuid,
									  entry ->> 'requestId', 'auth', 'token.reuse_detected', 'user',
									  entry ->> 'userId',
									  jsonb_build_object('familyId', entry ->> 'familyId'));
	ELSE
		RAISE EXCEPTION 'unknown deferred write %', COALESCE(quote_literal(kind), 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.deferred_apply(jsonb) IS
'Internal: applies a write of mandant''s worker (failed logins, revoked refresh families).';

REVOKE ALL ON FUNCTION mandant.issue_tokens(mandant.users, uuid, uuid), mandant.deferred_apply(jsonb) FROM PUBLIC;

/*
 * login_failed records a failure where a rollback cannot undo it (the
 * counters in shared memory, the record through the worker), then raises.
 */
CREATE FUNCTION mandant.login_failed(keys text[], email text, account uuid, tenant uuid,
									 client_ip inet, reason text, code text, action text DEFAULT 'login.failed')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.login_failed_count(keys, '15 minutes');
	PERFORM mandant.defer_write(jsonb_build_object(
		'kind', 'login_failed', 'action', action, 'at', clock_timestamp(), 'email', left(email, 254),
		'userId', account, 'tenantId', tenant, 'clientIp', client_ip, 'reason', reason,
		'requestId', NULLIF(current_setting('app.request_id'), '')));
	IF code = 'MD054' THEN
		RAISE EXCEPTION 'a one-time code is required'
			USING ERRCODE = 'MD054',
				  DETAIL = 'The account has two-factor authentication on, and the code was missing or wrong.',
				  HINT = 'Pass the 6-digit code of the authenticator app as totp_code.';
	END IF;
	RAISE EXCEPTION 'invalid credentials'
		USING ERRCODE = 'MD050',
			  DETAIL = 'The e-mail address or the password is wrong, or the account is disabled.',
			  HINT = 'Check both and try again; 10 failures within 15 minutes lock further attempts.';
END
$$;

COMMENT ON FUNCTION mandant.login_failed(text[], text, uuid, uuid, inet, text, text, text) IS
'Internal: count and record a failed login (surviving the rollback), then raise MD050 or MD054.';

REVOKE ALL ON FUNCTION mandant.login_failed(text[], text, uuid, uuid, inet, text, text, text) FROM PUBLIC;

/* ---- login, refresh, logout ------------------------------------------------ */

CREATE FUNCTION mandant.login(email text, password text, totp_code text DEFAULT NULL,
							  client_ip inet DEFAULT NULL, tenant_slug text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	address		text := lower(btrim(email));
	keys		text[];
	account		mandant.users;
	matches		boolean;
	step		bigint;
	chosen		uuid;
	status		text;
	tenants		jsonb;
	family		uuid;
	answer		jsonb;
BEGIN
	IF email IS NULL OR address = '' OR length(email) > 254 THEN
		RAISE EXCEPTION 'invalid e-mail address'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The e-mail address is empty or longer than 254 characters (%s).', COALESCE(length(email), 0)),
				  HINT = 'Pass the address the account was created with.';
	END IF;
	IF password IS NULL OR password = '' OR octet_length(password) > 1024 THEN
		RAISE EXCEPTION 'invalid password'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The password is empty or longer than 1024 bytes.',
				  HINT = 'Pass the account''s password.';
	END IF;
	keys := ARRAY['account:' || address];
	IF client_ip IS NOT NULL THEN
		keys := keys || ('ip:' || host(client_ip));
	END IF;
	PERFORM mandant.login_guard(keys, 10, '15 minutes');

	SELECT * INTO account FROM mandant.users u WHERE lower(u.email) = address;
	matches := mandant.password_matches(password, account.password_hash);	-- one bcrypt, always
	IF account.id IS NULL OR NOT matches OR account.status <> 'active' THEN
		PERFORM mandant.login_failed(keys, address, account.id, NULL, client_ip,
									 CASE WHEN account.id IS NULL THEN 'unknown e-mail'
										  WHEN NOT matches THEN 'wrong password'
										  ELSE 'account disabled' END, 'MD050');
	END IF;

	IF account.totp_state = 'on' THEN
		IF totp_code IS NULL OR btrim(totp_code) = '' THEN
			RAISE EXCEPTION 'a one-time code is required'
				USING ERRCODE = 'MD054',
					  DETAIL = 'The account has two-factor authentication on.',
					  HINT = 'Pass the 6-digit code of the authenticator app as totp_code.';
		END IF;
		step := mandant.totp_match(account.totp_secret, account.id, btrim(totp_code), account.totp_last_step);
		IF step IS NULL THEN
			PERFORM mandant.login_failed(keys, address, account.id, NULL, client_ip,
										 'wrong one-time code', 'MD054');
		END IF;
		UPDATE mandant.users u SET totp_last_step = step WHERE u.id = account.id;
	END IF;

	SELECT jsonb_agg(jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name, 'role', m.role)
					 ORDER BY t.name, t.slug)
	INTO tenants
	FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
	WHERE m.user_id = account.id AND t.status IN ('active', 'pending', 'suspended');

	IF tenant_slug IS NOT NULL THEN
		SELECT t.id, t.status INTO chosen, status
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.slug = lower(tenant_slug);
		IF chosen IS NULL THEN
			RAISE EXCEPTION 'not a member of tenant "%"', tenant_slug
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'The account exists but has no membership in that tenant.',
					  HINT = 'Log in without a tenant to see the tenants of the account.';
		END IF;
	ELSE
		SELECT t.id, t.status INTO chosen, status
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.status IN ('active', 'pending')
		ORDER BY t.name, t.slug LIMIT 1;
	END IF;
	IF status = 'suspended' THEN
		RAISE EXCEPTION 'tenant "%" is suspended', tenant_slug
			USING ERRCODE = 'MD003',
				  DETAIL = 'Its data is kept but nobody can enter it.',
				  HINT = 'A platform administrator can resume the tenant.';
	ELSIF status NOT IN ('active', 'pending') THEN
		RAISE EXCEPTION 'tenant "%" is not available', tenant_slug
			USING ERRCODE = 'MD002',
				  DETAIL = format('Its status is %s.', status),
				  HINT = 'Only active tenants can be entered.';
	END IF;

	INSERT INTO mandant.refresh_family (user_id, tenant_id) VALUES (account.id, chosen) RETURNING id INTO family;
	answer := mandant.issue_tokens(account, chosen, family) || jsonb_build_object('tenants', COALESCE(tenants, '[]'));
	UPDATE mandant.users u SET last_login_at = now() WHERE u.id = account.id;
	INSERT INTO mandant.login_attempt (email, user_id, tenant_id, client_ip, success, request_id)
	VALUES (address, account.id, chosen, client_ip, true, NULLIF(current_setting('app.request_id'), ''));
	PERFORM mandant.audit_log_for(chosen, account.id, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'login.succeeded', 'user', account.id::text,
								  jsonb_strip_nulls(jsonb_build_object('clientIp', host(client_ip),
																	   'mfa', account.totp_state = 'on')));
	PERFORM mandant.login_reset('account:' || address, '15 minutes');
	RETURN answer;
END
$$;

COMMENT ON FUNCTION mandant.login(text, text, text, inet, text) IS
'Log in: {accessToken, refreshToken, tokenType, expiresIn, tenant, role, user, tenants}. MD050 for a wrong e-mail, password or a disabled account alike (one bcrypt always runs); MD054 when the one-time code is missing or wrong; MD040 after 10 failures per account or IP within 15 minutes. The tenant: tenant_slug, else the first by name.';

CREATE FUNCTION mandant.refresh(refresh_token text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hash	bytea := sha256(convert_to(COALESCE(refresh_token, ''), 'UTF8'));
	token	mandant.refresh_token;
	family	mandant.refresh_family;
	account	mandant.users;
BEGIN
	SELECT * INTO token FROM mandant.refresh_token r WHERE r.token_hash = hash;
	IF token.token_hash IS NULL THEN
		RAISE EXCEPTION 'invalid refresh token'
			USING ERRCODE = 'MD051',
				  DETAIL = 'No such refresh token.',
				  HINT = 'Log in again.';
	END IF;
	SELECT * INTO family FROM mandant.refresh_family f WHERE f.id = token.family_id;
	IF family.revoked_at IS NOT NULL THEN
		RAISE EXCEPTION 'refresh token revoked'
			USING ERRCODE = 'MD053',
				  DETAIL = format('Its session was revoked (%s).', COALESCE(family.revoked_reason, 'revoked')),
				  HINT = 'Log in again.';
	END IF;
	IF token.consumed_at IS NOT NULL THEN
		-- Presented again after rotation: someone else has a copy. Revoke
		-- the session where the rollback of this error cannot undo it.
		PERFORM mandant.defer_write(jsonb_build_object(
			'kind', 'family_revoked', 'familyId', family.id, 'userId', family.user_id,
			'tenantId', family.tenant_id, 'reason', 'refresh token reused',
			'requestId', NULLIF(current_setting('app.request_id'), '')));
		RAISE EXCEPTION 'refresh token reused'
			USING ERRCODE = 'MD053',
				  DETAIL = 'The token was already rotated; its whole session is revoked.',
				  HINT = 'Log in again.';
	END IF;
	IF token.expires_at <= now() THEN
		RAISE EXCEPTION 'refresh token expired'
			USING ERRCODE = 'MD052',
				  DETAIL = format('It expired at %s.', token.expires_at),
				  HINT = 'Log in again.';
	END IF;
	SELECT * INTO account FROM mandant.users u WHERE u.id = family.user_id;
	IF account.status <> 'active' THEN
		RAISE EXCEPTION 'refresh token revoked'
			USING ERRCODE = 'MD053',
				  DETAIL = 'The user is disabled.',
				  HINT = 'Ask an administrator.';
	END IF;
	IF family.tenant_id IS NOT NULL THEN
		PERFORM 1 FROM mandant.membership m WHERE m.tenant_id = family.tenant_id AND m.user_id = account.id;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'refresh token revoked'
				USING ERRCODE = 'MD053',
					  DETAIL = 'The user is no longer a member of the session''s tenant.',
					  HINT = 'Log in again.';
		END IF;
		PERFORM mandant.check_tenant_enterable(family.tenant_id);
	END IF;

	UPDATE mandant.refresh_token r SET consumed_at = now()
	WHERE r.token_hash = hash AND r.consumed_at IS NULL;
	IF NOT FOUND THEN
		-- a concurrent refresh with the same token won
		RAISE EXCEPTION 'refresh token reused'
			USING ERRCODE = 'MD053',
				  DETAIL = 'The token was rotated by a concurrent request.',
				  HINT = 'Use the tokens that request received, or log in again.';
	END IF;
	RETURN mandant.issue_tokens(account, family.tenant_id, family.id);
END
$$;

COMMENT ON FUNCTION mandant.refresh(text) IS
'Rotate a refresh token: a new pair, the old refresh token consumed. Presenting a rotated token again revokes its whole session (MD053).';

CREATE FUNCTION mandant.logout(access_token text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims jsonb := mandant.jwt_verify(access_token);
BEGIN
	INSERT INTO mandant.revoked_jti (jti, expires_at)
	VALUES ((claims ->> 'jti')::uuid, to_timestamp((claims ->> 'exp')::double precision))
	ON CONFLICT (jti) DO NOTHING;
	IF claims ? 'sid' THEN
		UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'logout'
		WHERE f.id = (claims ->> 'sid')::uuid AND f.revoked_at IS NULL;
	END IF;
	PERFORM mandant.audit_log_for((claims ->> 'tid')::uuid, (claims ->> 'sub')::uuid,
								  NULLIF(current_setting('app.request_id'), ''), 'auth', 'logout',
								  'user', claims ->> 'sub', '{}');
END
$$;

COMMENT ON FUNCTION mandant.logout(text) IS
'Revoke an access token until it expires (its jti goes on the denylist) and end its session (refresh family).';

/* ---- self-service ------------------------------------------------------------ */

CREATE FUNCTION mandant.change_password(old_password text, new_password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	PERFORM mandant.login_guard(ARRAY['account:' || lower(account.email)], 10, '15 minutes');
	IF NOT mandant.password_matches(old_password, account.password_hash) THEN
		PERFORM mandant.login_failed(ARRAY['account:' || lower(account.email)], lower(account.email),
									 me, mandant.current_tenant(), NULL, 'wrong password on change',
									 'MD050', 'password.change_failed');
	END IF;
	PERFORM mandant.check_password(new_password, account.email);
	UPDATE mandant.users u SET password_hash = mandant.password_hash(new_password),
		token_version = u.token_version + 1, updated_at = now()
	WHERE u.id = me;
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'password changed'
	WHERE f.user_id = me AND f.revoked_at IS NULL;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'password.changed', 'user', me::text, '{}');
END
$$;

COMMENT ON FUNCTION mandant.change_password(text, text) IS
'Change the signed-in user''s password (the old one is required); revokes every token of the user.';

CREATE FUNCTION mandant.totp_enroll()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
	secret	bytea;
	encoded	text;
	issuer	text := current_setting('mandant.jwt_issuer');
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	IF account.totp_state = 'on' THEN
		RAISE EXCEPTION 'two-factor authentication is already on'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Enrolling again would replace a working secret.',
				  HINT = 'Call mandant.totp_disable(code) first.';
	END IF;
	secret := mandant.random_bytes(20);
	encoded := mandant.base32_encode(secret);
	UPDATE mandant.users u SET totp_state = 'pending', totp_secret = mandant.secret_seal(secret, me),
		totp_last_step = NULL, updated_at = now()
	WHERE u.id = me;
	RETURN jsonb_build_object(
		'secret', encoded,
		'uri', format('otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6&period=30',
					  replace(issuer, ' ', '%20'), account.email, encoded, replace(issuer, ' ', '%20')));
END
$$;

COMMENT ON FUNCTION mandant.totp_enroll() IS
'Start two-factor authentication for the signed-in user: a new secret (base32) and its otpauth:// URI; confirm with mandant.totp_confirm(code).';

CREATE FUNCTION mandant.totp_confirm(code text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
	step	bigint;
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	IF account.totp_state <> 'pending' THEN
		RAISE EXCEPTION 'no two-factor enrollment to confirm'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Two-factor authentication is %s.', account.totp_state),
				  HINT = 'Call mandant.totp_enroll() first.';
	END IF;
	step := mandant.totp_match(account.totp_secret, me, btrim(code), NULL);
	IF step IS NULL THEN
		RAISE EXCEPTION 'wrong one-time code'
			USING ERRCODE = 'MD054',
				  DETAIL = 'The code does not match the enrolled secret (the current 30-second step, or one either side).',
				  HINT = 'Check the device''s clock and enter the current code.';
	END IF;
	UPDATE mandant.users u SET totp_state = 'on', totp_last_step = step, updated_at = now() WHERE u.id = me;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'mfa.enabled', 'user', me::text, '{}');
END
$$;

COMMENT ON FUNCTION mandant.totp_confirm(text) IS
'Turn two-factor authentication on with a code of the enrolled secret.';

CREATE FUNCTION mandant.totp_disable(code text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	IF account.totp_state <> 'on' THEN
		RAISE EXCEPTION 'two-factor authentication is not on'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('It is %s.', account.totp_state),
				  HINT = 'Nothing to disable.';
	END IF;
	IF mandant.totp_match(account.totp_secret, me, btrim(code), account.totp_last_step) IS NULL THEN
		RAISE EXCEPTION 'wrong one-time code'
			USING ERRCODE = 'MD054',
				  DETAIL = 'Disabling needs a current code that was not used before.',
				  HINT = 'Enter the next code of the authenticator app.';
	END IF;
	UPDATE mandant.users u SET totp_state = 'off', totp_secret = NULL, totp_last_step = NULL, updated_at = now()
	WHERE u.id = me;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'mfa.disabled', 'user', me::text, '{}');
END
$$;

COMMENT ON FUNCTION mandant.totp_disable(text) IS
'Turn two-factor authentication off; needs a current, unused code.';

/* ---- service accounts ---------------------------------------------------------- */

CREATE FUNCTION mandant.service_token(client_id text, client_secret text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account	mandant.service_account;
	keys	text[] := ARRAY['client:' || COALESCE(left(client_id, 100), '')];
	ttl		integer := mandant.ttl_seconds('mandant.access_token_ttl');
	issued	bigint := floor(extract(epoch FROM clock_timestamp()));
	slug	text;
BEGIN
	PERFORM mandant.login_guard(keys, 10, '15 minutes');
	SELECT * INTO account FROM mandant.service_account s WHERE s.client_id = service_token.client_id;
	IF account.id IS NULL OR account.status <> 'active'
		OR account.secret_hash <> sha256(convert_to(COALESCE(client_secret, ''), 'UTF8')) THEN
		PERFORM mandant.login_failed(keys, left(client_id, 100), NULL, account.tenant_id, NULL,
									 CASE WHEN account.id IS NULL THEN 'unknown client'
										  WHEN account.status <> 'active' THEN 'client disabled'
										  ELSE 'wrong secret' END, 'MD050', 'service_token.failed');
	END IF;
	IF account.tenant_id IS NOT NULL THEN
		PERFORM mandant.check_tenant_enterable(account.tenant_id);
		SELECT t.slug INTO slug FROM mandant.tenant t WHERE t.id = account.tenant_id;
	END IF;
	UPDATE mandant.service_account s SET last_used_at = now() WHERE s.id = account.id;
	RETURN jsonb_build_object(
		'accessToken', mandant.jwt_sign(jsonb_strip_nulls(jsonb_build_object(
			'iss', current_setting('mandant.jwt_issuer'), 'sub', account.id, 'typ', 'm2m',
			'tid', account.tenant_id, 'tslug', slug, 'scopes', to_jsonb(account.scopes),
			'jti', gen_random_uuid(), 'iat', issued, 'exp', issued + ttl))),
		'tokenType', 'Bearer',
		'expiresIn', ttl,
		'scopes', to_jsonb(account.scopes));
END
$$;

COMMENT ON FUNCTION mandant.service_token(text, text) IS
'Client credentials: an access token of type m2m with the service account''s scopes (MD050 for a wrong id or secret, MD040 after 10 failures per client in 15 minutes).';

/* ---- management (through the gate) ----------------------------------------------- */

CREATE FUNCTION mandant.check_tenant_enterable(tenant uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status text := (SELECT t.status FROM mandant.tenant t WHERE t.id = tenant);
BEGIN
	IF status IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.',
				  HINT = 'Check the tenant id.';
	ELSIF status = 'suspended' THEN
		RAISE EXCEPTION 'tenant "%" is suspended', tenant
			USING ERRCODE = 'MD003', DETAIL = 'Its data is kept but nobody can enter it.',
				  HINT = 'A platform administrator can resume the tenant.';
	ELSIF status NOT IN ('active', 'pending') THEN
		RAISE EXCEPTION 'tenant "%" is not available', tenant
			USING ERRCODE = 'MD002', DETAIL = format('Its status is %s.', status),
				  HINT = 'Only active tenants can be entered.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_tenant_enterable(uuid) IS
'Internal: MD002 or MD003 unless the tenant can be entered.';

/* The role of the signed-in user in a tenant, if any. */
CREATE FUNCTION mandant.actor_role(tenant uuid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m.role FROM mandant.membership m
	WHERE m.tenant_id = tenant AND m.user_id = mandant.current_user_id()
$$;

COMMENT ON FUNCTION mandant.actor_role(uuid) IS
'Internal: the role of the signed-in user in a tenant.';

/*
 * check_role raises unless role exists for tenant, and unless the actor
 * may hand it out: owner only by owners (or trusted callers).
 */
CREATE FUNCTION mandant.check_role(tenant uuid, role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.role r WHERE r.name = role AND (r.tenant_id = tenant OR r.tenant_id IS NULL)) THEN
		RAISE EXCEPTION 'role "%" does not exist', role
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Roles are owner, admin, manager, agent, viewer and those the tenant added.',
				  HINT = 'See mandant.role, or create the role with mandant.create_role().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_role(uuid, text) IS
'Internal: 22023 unless role exists for the tenant.';

/*
 * check_owner_change raises when an actor who is not an owner touches the
 * owner role (grants it, changes or removes an owner).  Trusted callers
 * (no signed-in user) may.
 */
CREATE FUNCTION mandant.check_owner_change(tenant uuid, old_role text, new_role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF 'owner' IN (old_role, new_role) AND mandant.current_user_id() IS NOT NULL
		AND mandant.actor_role(tenant) IS DISTINCT FROM 'owner' THEN
		RAISE EXCEPTION 'only owners grant or take the owner role'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The signed-in user is %s of the tenant.', COALESCE(mandant.actor_role(tenant), 'not a member')),
				  HINT = 'Ask an owner of the tenant.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_owner_change(uuid, text, text) IS
'Internal: 42501 when a non-owner grants, changes or removes the owner role.';

/*
 * keep_an_owner raises when no owner would be left.  The caller holds the
 * tenant's row lock, which serializes concurrent changes of its members.
 */
CREATE FUNCTION mandant.keep_an_owner(tenant uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.role = 'owner') THEN
		RAISE EXCEPTION 'a tenant keeps at least one owner'
			USING ERRCODE = 'check_violation',
				  DETAIL = format('The change would leave tenant %s without an owner.', tenant),
				  HINT = 'Make another member owner first.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.keep_an_owner(uuid) IS
'Internal: 23514 when the tenant has no owner.';

CREATE FUNCTION mandant.lock_tenant(tenant uuid)
RETURNS mandant.tenant
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t mandant.tenant;
BEGIN
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	RETURN t;
END
$$;

COMMENT ON FUNCTION mandant.lock_tenant(uuid) IS
'Internal: lock a tenant''s row (MD002 when there is none) so that changes of it and its members happen one at a time; returns the row. Inserts into its tables (key share) are not blocked.';

CREATE FUNCTION mandant.identity_create_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	address	text := mandant.check_email(args ->> 'email');
	name	text := btrim(args ->> 'displayName');
	new_id	uuid;
	joined	uuid;
BEGIN
	IF name IS NULL OR length(name) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'invalid display name'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('A display name has 1 to 200 characters; this one has %s.', COALESCE(length(name), 0)),
				  HINT = 'Pass the name the user goes by.';
	END IF;
	PERFORM mandant.check_password(args ->> 'password', address);
	IF EXISTS (SELECT 1 FROM mandant.users u WHERE lower(u.email) = lower(address)) THEN
		RAISE EXCEPTION 'a user with this e-mail address exists'
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'E-mail addresses are unique, whatever their case.',
				  HINT = 'Add the existing user to the tenant with mandant.add_member().';
	END IF;
	INSERT INTO mandant.users (email, display_name, password_hash)
	VALUES (address, name, mandant.password_hash(args ->> 'password'))
	RETURNING id INTO new_id;
	/* The owner named when a tenant was created joins it now. */
	FOR joined IN
		SELECT t.id FROM mandant.tenant t
		WHERE lower(t.owner_email) = lower(address) AND t.status IN ('pending', 'active', 'suspended')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.role = 'owner')
		ORDER BY t.id
	LOOP
		PERFORM mandant.consume(joined, 'users', 1);
		INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
		VALUES (joined, new_id, 'owner', 'owner_email');
		PERFORM mandant.record_event(joined, 'identity', 'member.added', 'user', new_id::text,
									 jsonb_build_object('role', 'owner', 'by', 'owner_email'));
	END LOOP;
	PERFORM mandant.record_event(tenant, 'identity', 'user.created', 'user', new_id::text,
								  jsonb_build_object('email', address, 'by', caller));
	RETURN to_jsonb(new_id);
END
$$;

CREATE FUNCTION mandant.identity_add_member(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	new_role	text := args ->> 'role';
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	PERFORM mandant.check_role(tenant, new_role);
	PERFORM mandant.check_owner_change(tenant, NULL, new_role);
	IF NOT EXISTS (SELECT 1 FROM mandant.users u WHERE u.id = member) THEN
		RAISE EXCEPTION 'user % does not exist', member
			USING ERRCODE = 'no_data_found', DETAIL = 'No row of mandant.users has that id.',
				  HINT = 'Create the user with mandant.create_user() first.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member) THEN
		RAISE EXCEPTION 'user % is already a member', member
			USING ERRCODE = 'unique_violation', DETAIL = 'A user has one role per tenant.',
				  HINT = 'Change the role with mandant.set_member_role().';
	END IF;
	PERFORM mandant.consume(tenant, 'users', 1);		-- MD030 past the plan's users
	INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
	VALUES (tenant, member, new_role, COALESCE(mandant.current_user_id()::text, caller));
	PERFORM mandant.record_event(tenant, 'identity', 'member.added', 'user', member::text,
								  jsonb_build_object('role', new_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_set_member_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	new_role	text := args ->> 'role';
	old_role	text;
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	PERFORM mandant.check_role(tenant, new_role);
	SELECT m.role INTO old_role FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	IF old_role IS NULL THEN
		RAISE EXCEPTION 'user % is not a member of tenant %', member, tenant
			USING ERRCODE = 'no_data_found', DETAIL = 'mandant.membership has no row for them.',
				  HINT = 'Add them with mandant.add_member().';
	END IF;
	PERFORM mandant.check_owner_change(tenant, old_role, new_role);
	UPDATE mandant.membership m SET role = new_role WHERE m.tenant_id = tenant AND m.user_id = member;
	PERFORM mandant.keep_an_owner(tenant);
	PERFORM mandant.record_event(tenant, 'identity', 'member.role_changed', 'user', member::text,
								  jsonb_build_object('from', old_role, 'to', new_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_remove_member(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	old_role	text;
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	SELECT m.role INTO old_role FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	IF old_role IS NULL THEN
		RAISE EXCEPTION 'user % is not a member of tenant %', member, tenant
			USING ERRCODE = 'no_data_found', DETAIL = 'mandant.membership has no row for them.',
				  HINT = 'See mandant.list_members().';
	END IF;
	PERFORM mandant.check_owner_change(tenant, old_role, NULL);
	PERFORM mandant.consume(tenant, 'users', -1);
	DELETE FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	PERFORM mandant.keep_an_owner(tenant);
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'removed from tenant'
	WHERE f.user_id = member AND f.tenant_id = tenant AND f.revoked_at IS NULL;
	PERFORM mandant.record_event(tenant, 'identity', 'member.removed', 'user', member::text,
								  jsonb_build_object('role', old_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_create_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name	text := args ->> 'name';
	role_scopes	text[] := ARRAY(SELECT jsonb_array_elements_text(args -> 'scopes'));
BEGIN
	IF EXISTS (SELECT 1 FROM mandant.role r WHERE r.tenant_id IS NULL AND r.name = role_name) THEN
		RAISE EXCEPTION 'role "%" is a system role', role_name
			USING ERRCODE = 'unique_violation', DETAIL = 'owner, admin, manager, agent and viewer are defined by mandant.',
				  HINT = 'Choose another name.';
	END IF;
	IF role_name IS NULL OR role_name !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid role name %', COALESCE(quote_literal(role_name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A role name has 1 to 63 characters: a-z first, then a-z, 0-9, ''_'' or ''-''.',
				  HINT = 'For example ''auditor''.';
	END IF;
	IF NOT role_scopes <@ ARRAY['read', 'write', 'delete', 'admin'] OR cardinality(role_scopes) = 0 THEN
		RAISE EXCEPTION 'invalid scopes for role "%"', role_name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The scopes were %s; a tenant role holds some of read, write, delete, admin.', role_scopes),
				  HINT = 'For example ''{read,write}''.';
	END IF;
	BEGIN
		INSERT INTO mandant.role (tenant_id, name, scopes, description)
		VALUES (tenant, role_name, role_scopes, args ->> 'description');
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'role "%" exists', role_name
			USING ERRCODE = 'unique_violation', DETAIL = 'Role names are unique per tenant.', HINT = 'Choose another name.';
	END;
	PERFORM mandant.record_event(tenant, 'identity', 'role.created', 'role', role_name,
								  jsonb_build_object('scopes', role_scopes, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_drop_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name text := args ->> 'name';
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	IF EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.role = role_name) THEN
		RAISE EXCEPTION 'role "%" is in use', role_name
			USING ERRCODE = 'dependent_objects_still_exist', DETAIL = 'Members of the tenant hold it.',
				  HINT = 'Give them another role first.';
	END IF;
	DELETE FROM mandant.role r WHERE r.tenant_id = tenant AND r.name = role_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'role "%" does not exist in this tenant', role_name
			USING ERRCODE = 'no_data_found', DETAIL = 'System roles cannot be dropped.', HINT = 'See mandant.role.';
	END IF;
	PERFORM mandant.record_event(tenant, 'identity', 'role.dropped', 'role', role_name, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_create_service_account(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	scopes	text[] := ARRAY(SELECT jsonb_array_elements_text(args -> 'scopes'));
	secret	text := mandant.random_token(32);
	client	text := 'sa-' || encode(sha256(convert_to(mandant.random_token(16), 'UTF8')), 'hex');
	new_id	uuid;
BEGIN
	IF tenant IS NOT NULL AND 'internal' = ANY (scopes) THEN
		RAISE EXCEPTION 'scope internal is for platform service accounts'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A tenant''s service account holds some of read, write, delete, admin.',
				  HINT = 'Create it without a tenant, as a platform administrator.';
	END IF;
	IF NOT scopes <@ ARRAY['read', 'write', 'delete', 'admin', 'internal'] OR cardinality(scopes) = 0 THEN
		RAISE EXCEPTION 'invalid scopes for a service account'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The scopes were %s.', scopes),
				  HINT = 'Use some of read, write, delete, admin (and internal for platform accounts).';
	END IF;
	client := left(client, 27);
	INSERT INTO mandant.service_account (client_id, secret_hash, name, tenant_id, scopes, created_by)
	VALUES (client, sha256(convert_to(secret, 'UTF8')), btrim(COALESCE(args ->> 'name', '')), tenant, scopes,
			COALESCE(mandant.current_user_id()::text, caller))
	RETURNING id INTO new_id;
	PERFORM mandant.record_event(tenant, 'identity', 'service_account.created', 'service_account', new_id::text,
								  jsonb_build_object('name', args ->> 'name', 'scopes', scopes, 'by', caller));
	RETURN jsonb_build_object('id', new_id, 'clientId', client, 'clientSecret', secret, 'scopes', scopes);
END
$$;

CREATE FUNCTION mandant.identity_disable_service_account(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'id')::uuid;
BEGIN
	UPDATE mandant.service_account s SET status = 'disabled'
	WHERE s.id = account AND s.tenant_id IS NOT DISTINCT FROM tenant;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'service account % does not exist here', account
			USING ERRCODE = 'no_data_found', DETAIL = 'No service account of this tenant has that id.',
				  HINT = 'Platform accounts are disabled without a tenant.';
	END IF;
	PERFORM mandant.record_event(tenant, 'identity', 'service_account.disabled', 'service_account', account::text,
								  jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

/* revoke_tokens_of: every token of a user stops working. */
CREATE FUNCTION mandant.revoke_tokens_of(account uuid, reason text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE mandant.users u SET token_version = u.token_version + 1, updated_at = now() WHERE u.id = account;
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = reason
	WHERE f.user_id = account AND f.revoked_at IS NULL;
$$;

COMMENT ON FUNCTION mandant.revoke_tokens_of(uuid, text) IS
'Internal: raise the user''s token version (access tokens fail) and revoke every refresh family.';

CREATE FUNCTION mandant.check_user_exists(account uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.users u WHERE u.id = account) THEN
		RAISE EXCEPTION 'user % does not exist', account
			USING ERRCODE = 'no_data_found', DETAIL = 'No row of mandant.users has that id.', HINT = 'Check the id.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_user_exists(uuid) IS
'Internal: P0002 unless the user exists.';

CREATE FUNCTION mandant.identity_disable_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET status = 'disabled', updated_at = now() WHERE u.id = account;
	PERFORM mandant.revoke_tokens_of(account, 'user disabled');
	PERFORM mandant.record_event(NULL, 'identity', 'user.disabled', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_enable_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET status = 'active', updated_at = now() WHERE u.id = account;
	PERFORM mandant.record_event(NULL, 'identity', 'user.enabled', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_reset_password(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
	address text;
BEGIN
	PERFORM mandant.check_user_exists(account);
	SELECT u.email INTO address FROM mandant.users u WHERE u.id = account;
	PERFORM mandant.check_password(args ->> 'password', address);
	UPDATE mandant.users u SET password_hash = mandant.password_hash(args ->> 'password'), updated_at = now()
	WHERE u.id = account;
	PERFORM mandant.revoke_tokens_of(account, 'password reset');
	PERFORM mandant.record_event(NULL, 'identity', 'password.reset', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_revoke_user_tokens(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	PERFORM mandant.revoke_tokens_of(account, 'revoked');
	PERFORM mandant.record_event(NULL, 'identity', 'tokens.revoked', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_purge_tokens(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	jtis		bigint;
	refreshes	bigint;
BEGIN
	DELETE FROM mandant.revoked_jti j WHERE j.expires_at < now() - interval '1 minute';
	GET DIAGNOSTICS jtis = ROW_COUNT;
	DELETE FROM mandant.refresh_token r WHERE r.expires_at < now();
	GET DIAGNOSTICS refreshes = ROW_COUNT;
	DELETE FROM mandant.refresh_family f
	WHERE NOT EXISTS (SELECT 1 FROM mandant.refresh_token r WHERE r.family_id = f.id);
	RETURN jsonb_build_object('revokedJtis', jtis, 'refreshTokens', refreshes);
END
$$;

DO $revoke$
DECLARE
	fn regprocedure;
BEGIN
	FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE 'identity\_%'
				AND p.proname NOT IN ('identity_call')
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn,
					   'Internal: an identity operation, run by mandant.identity_call() after it checked the caller.');
	END LOOP;
END
$revoke$;

REVOKE ALL ON FUNCTION mandant.revoke_tokens_of(uuid, text), mandant.lock_tenant(uuid) FROM PUBLIC;

/* ---- the public management API ----------------------------------------------- */

CREATE FUNCTION mandant.create_user(email text, password text, display_name text)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (mandant.identity_call('create_user', mandant.current_tenant(),
		jsonb_build_object('email', email, 'password', password, 'displayName', display_name)) #>> '{}')::uuid
$$;

COMMENT ON FUNCTION mandant.create_user(text, text, text) IS
'Create a user (password: at least 12 characters, at most 72 bytes, not the e-mail; bcrypt cost 12). For trusted backends, mandant_admin, and tenant administrators (then add them with add_member). Returns the id.';

CREATE FUNCTION mandant.add_member(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('add_member', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.add_member(uuid, uuid, text) IS
'Add a user to a tenant in a role. For the tenant''s administrators inside the tenant, trusted backends there and mandant_admin; the owner role only by owners.';

CREATE FUNCTION mandant.set_member_role(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('set_member_role', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.set_member_role(uuid, uuid, text) IS
'Change a member''s role (the tenant keeps at least one owner; owners change owners). Tokens issued for the old role stop working.';

CREATE FUNCTION mandant.remove_member(tenant uuid, user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('remove_member', tenant, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.remove_member(uuid, uuid) IS
'Remove a member (not the last owner); their sessions in the tenant end.';

CREATE FUNCTION mandant.create_role(name text, scopes text[], description text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.identity_call('create_role', mandant.current_tenant(),
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes), 'description', description));
$$;

COMMENT ON FUNCTION mandant.create_role(text, text[], text) IS
'Add a role to the current tenant with a subset of read, write, delete, admin.';

CREATE FUNCTION mandant.drop_role(name text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('drop_role', mandant.current_tenant(), jsonb_build_object('name', name)); $$;

COMMENT ON FUNCTION mandant.drop_role(text) IS
'Drop a role of the current tenant that nobody holds.';

CREATE FUNCTION mandant.disable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('disable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.disable_user(uuid) IS
'Disable a user everywhere and revoke all their tokens. For trusted backends and mandant_admin.';

CREATE FUNCTION mandant.enable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('enable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.enable_user(uuid) IS
'Enable a disabled user again (their old tokens stay revoked).';

CREATE FUNCTION mandant.reset_password(user_id uuid, new_password text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('reset_password', NULL, jsonb_build_object('userId', user_id, 'password', new_password)); $$;

COMMENT ON FUNCTION mandant.reset_password(uuid, text) IS
'Set a user''s password (the reset flow of a trusted backend, or mandant_admin); revokes all their tokens.';

CREATE FUNCTION mandant.revoke_user_tokens(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF user_id IS NOT NULL AND user_id = mandant.current_user_id() THEN
		PERFORM mandant.revoke_tokens_of(user_id, 'signed out everywhere');
		PERFORM mandant.audit_log_for(mandant.current_tenant(), user_id, NULLIF(current_setting('app.request_id'), ''),
									  'identity', 'tokens.revoked', 'user', user_id::text, '{}');
	ELSE
		PERFORM mandant.identity_call('revoke_user_tokens', NULL, jsonb_build_object('userId', user_id));
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.revoke_user_tokens(uuid) IS
'Revoke every token of a user: the signed-in user for themselves, trusted backends and mandant_admin for anyone.';

CREATE FUNCTION mandant.create_service_account(name text, scopes text[], tenant uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.identity_call('create_service_account', tenant,
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes)));
$$;

COMMENT ON FUNCTION mandant.create_service_account(text, text[], uuid) IS
'Create a service account: {id, clientId, clientSecret, scopes}. The secret is shown once (stored as SHA-256). Tenant accounts by the tenant''s administrators; platform accounts (scope internal allowed) by mandant_admin.';

CREATE FUNCTION mandant.disable_service_account(id uuid, tenant uuid DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('disable_service_account', tenant, jsonb_build_object('id', id)); $$;

COMMENT ON FUNCTION mandant.disable_service_account(uuid, uuid) IS
'Disable a service account; its tokens stop working at once.';

CREATE FUNCTION mandant.purge_tokens()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.identity_call('purge_tokens', NULL, '{}'); $$;

COMMENT ON FUNCTION mandant.purge_tokens() IS
'Delete expired denylist entries, refresh tokens and empty sessions; schedule it daily.';

CREATE FUNCTION mandant.list_members()
RETURNS TABLE (user_id uuid, email text, display_name text, role text, status text, mfa boolean,
			   joined_at timestamptz, last_login_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant uuid := mandant.require_tenant();
BEGIN
	IF NOT (mandant.has_scope('read') OR mandant.has_scope('admin')) THEN
		RAISE EXCEPTION 'permission denied to list the members of tenant %', tenant
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The transaction holds scopes %s.', mandant.current_scopes()),
				  HINT = 'Listing members needs scope read.';
	END IF;
	RETURN QUERY
	SELECT u.id, u.email, u.display_name, m.role, u.status, u.totp_state = 'on', m.created_at, u.last_login_at
	FROM mandant.membership m JOIN mandant.users u ON u.id = m.user_id
	WHERE m.tenant_id = tenant
	ORDER BY lower(u.email);
END
$$;

COMMENT ON FUNCTION mandant.list_members() IS
'The members of the current tenant (needs scope read). Never returns secrets.';

/* ---------------------------------------------------------------------------
 * Plans and quotas (extension/quota.c)
 *
 * A tenant's limit of a resource (users, records, storage_bytes, or any
 * key of mandant.plan.limits) is the newest quota change already in effect,
 * else its plan's.  mandant.quota_change is the append-only history of
 * overrides.  mandant.tenant_usage counts per tenant and resource and
 * caches the limit in effect (until the next scheduled change); tables
 * count through mandant.enable_quota, other resources through
 * mandant.charge.  Members count as "users" (mandant.consume in the
 * identity functions).
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.quota_change (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id		uuid NOT NULL REFERENCES mandant.tenant (id),
	resource		text NOT NULL,
	"limit"			bigint CONSTRAINT quota_change_limit_positive CHECK ("limit" >= 0),
	effective_at	timestamptz NOT NULL,
	reason			text NOT NULL,
	actor			text NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX quota_change_lookup_idx ON mandant.quota_change (tenant_id, resource, effective_at);

COMMENT ON TABLE mandant.quota_change IS
'Quota overrides per tenant and resource ("limit" NULL: unlimited), effective from effective_at. Append-only.';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.quota_change
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.quota_change ENABLE ALWAYS TRIGGER append_only;

CREATE TABLE mandant.tenant_usage (
	tenant_id	uuid NOT NULL REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	resource	text NOT NULL,
	used		bigint NOT NULL DEFAULT 0,
	limit_value	bigint,
	limit_until	timestamptz NOT NULL DEFAULT '-infinity',
	PRIMARY KEY (tenant_id, resource)
);

COMMENT ON TABLE mandant.tenant_usage IS
'What each tenant uses of each resource, with the limit in effect until limit_until (NULL limit: unlimited). Written by mandant only.';

CREATE TABLE mandant.quota_table (
	relid			regclass PRIMARY KEY,
	resource		text NOT NULL,
	tenant_column	name NOT NULL
);

COMMENT ON TABLE mandant.quota_table IS
'Tables whose rows count against a resource (mandant.enable_quota), and their tenant column.';

ALTER TABLE mandant.quota_change ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.quota_change FOR SELECT USING (tenant_id = mandant.current_tenant());
ALTER TABLE mandant.tenant_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.tenant_usage FOR SELECT USING (tenant_id = mandant.current_tenant());
ALTER TABLE mandant.quota_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY quota_table_read ON mandant.quota_table FOR SELECT USING (true);
CREATE POLICY quota_table_owner ON mandant.quota_table FOR ALL
	USING (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
				   WHERE c.oid = relid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')))
	WITH CHECK (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
						WHERE c.oid = relid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')));
GRANT SELECT ON mandant.quota_change, mandant.tenant_usage TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON mandant.quota_table TO PUBLIC;
GRANT SELECT ON mandant.quota_change, mandant.tenant_usage TO mandant_admin;
CREATE POLICY platform ON mandant.quota_change FOR SELECT TO mandant_admin, mandant_service USING (true);
CREATE POLICY platform ON mandant.tenant_usage FOR SELECT TO mandant_admin, mandant_service USING (true);

SELECT pg_catalog.pg_extension_config_dump('mandant.quota_change', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.quota_change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_usage', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.quota_table', 'WHERE relid <> ''mandant.membership''::regclass');

CREATE FUNCTION mandant.quota_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_quota_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.quota_trigger() IS
'Trigger of mandant.enable_quota: counts inserted and deleted rows against the tenant''s limit (MD030), refuses moving rows between tenants.';

CREATE FUNCTION mandant.charge(resource text, amount bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_charge'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.charge(text, bigint) IS
'Count amount of a resource that is not rows (e.g. storage_bytes) against the current tenant''s limit (MD030 past it); a negative amount gives back. Trusted backends (mandant_service) and mandant_admin only: a negative charge frees quota.';

REVOKE ALL ON FUNCTION mandant.charge(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.charge(text, bigint) TO mandant_service, mandant_admin;

CREATE FUNCTION mandant.check_resource(resource text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF resource IS NULL OR NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.limits ? resource) THEN
		RAISE EXCEPTION 'unknown resource %', COALESCE(quote_literal(resource), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'No plan names it in its limits.',
				  HINT = format('Known resources: %s. Add new ones to mandant.plan.limits (null: unlimited).',
								(SELECT string_agg(DISTINCT k, ', ') FROM mandant.plan p, jsonb_object_keys(p.limits) k));
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_resource(text) IS
'Internal: raise 22023 unless some plan names the resource in its limits.';

/*
 * effective_limit is the limit of a resource for a tenant now: the newest
 * quota change in effect, else the plan's (NULL: unlimited).
 */
CREATE FUNCTION mandant.effective_limit(tenant uuid, resource text)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (COALESCE(
		(SELECT jsonb_build_object('v', q."limit") FROM mandant.quota_change q
		 WHERE q.tenant_id = tenant AND q.resource = effective_limit.resource AND q.effective_at <= now()
		 ORDER BY q.effective_at DESC, q.id DESC LIMIT 1),
		(SELECT jsonb_build_object('v', p.limits -> effective_limit.resource)
		 FROM mandant.tenant t JOIN mandant.plan p ON p.key = t.plan_key WHERE t.id = tenant)
	) ->> 'v')::bigint
$$;

COMMENT ON FUNCTION mandant.effective_limit(uuid, text) IS
'The limit of a resource for a tenant now: the newest quota change in effect, else the plan''s; NULL means unlimited.';

/* count_rows: rows of the tenant in the tables that count as resource. */
CREATE FUNCTION mandant.count_rows(tenant uuid, resource text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t		record;
	n		bigint;
	total	bigint := 0;
BEGIN
	FOR t IN SELECT q.relid, q.tenant_column FROM mandant.quota_table q WHERE q.resource = count_rows.resource LOOP
		EXECUTE format('SELECT count(*) FROM %s WHERE %I = $1', t.relid, t.tenant_column) INTO n USING tenant;
		total := total + n;
	END LOOP;
	RETURN total;
END
$$;

COMMENT ON FUNCTION mandant.count_rows(uuid, text) IS
'Internal: how many rows of a tenant the tables under quota for resource hold.';

/*
 * quota_refresh (called by quota.c as the extension owner) creates the
 * usage row of a tenant and resource, starting from counted, or
 * recomputes the limit in effect and until when it holds.  Every counter
 * starts here, so this is where an unknown resource is refused (charge).
 */
CREATE FUNCTION mandant.quota_refresh(tenant uuid, resource text, counted bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.check_resource(resource);
	INSERT INTO mandant.tenant_usage AS u (tenant_id, resource, used, limit_value, limit_until)
	VALUES (tenant, resource, COALESCE(counted, 0), mandant.effective_limit(tenant, resource),
			COALESCE((SELECT min(q.effective_at) FROM mandant.quota_change q
					  WHERE q.tenant_id = tenant AND q.resource = quota_refresh.resource AND q.effective_at > now()),
					 'infinity'))
	ON CONFLICT (tenant_id, resource) DO UPDATE
	SET limit_value = EXCLUDED.limit_value, limit_until = EXCLUDED.limit_until;
$$;

COMMENT ON FUNCTION mandant.quota_refresh(uuid, text, bigint) IS
'Internal: create the usage row of a tenant and resource (starting at counted), or refresh its limit.';

REVOKE ALL ON FUNCTION mandant.quota_refresh(uuid, text, bigint), mandant.count_rows(uuid, text) FROM PUBLIC;

/* Registering a table (or changing its resource) recounts that resource. */
CREATE FUNCTION mandant.quota_table_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		DELETE FROM mandant.tenant_usage u WHERE u.resource = NEW.resource;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		DELETE FROM mandant.tenant_usage u WHERE u.resource = OLD.resource;
	END IF;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.quota_table_changed() IS
'Trigger: forget the counters of a resource whose tables changed (registered, moved to another resource, unregistered); they are recounted on next use.';

CREATE TRIGGER recount AFTER INSERT OR UPDATE OR DELETE ON mandant.quota_table
	FOR EACH ROW EXECUTE FUNCTION mandant.quota_table_changed();

/*
 * quota_truncated: TRUNCATE fires no row triggers, so the counters of the
 * table's resource are forgotten and recounted on next use.  Only for a
 * table registered for that resource (nobody resets charged usage by
 * attaching this trigger to a table of their own).
 */
CREATE FUNCTION mandant.quota_truncated()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_NARGS = 1 AND EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.relid = TG_RELID AND q.resource = TG_ARGV[0]) THEN
		DELETE FROM mandant.tenant_usage u WHERE u.resource = TG_ARGV[0];
	END IF;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.quota_truncated() IS
'Trigger of mandant.enable_quota: after TRUNCATE of a table under quota, forget the counters of its resource (recounted on next use).';

/*
 * enable_quota makes the rows of a tenant table count against a resource
 * of each tenant's plan.  The table owner only; the table must be a tenant
 * table (mandant.enable_tenancy).
 */
CREATE FUNCTION mandant.enable_quota(tbl regclass, resource text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant_column	name;
	statement		text;
	existing		text;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_quota');
	SELECT r.tenant_column INTO tenant_column FROM mandant.tenant_table r WHERE r.relid = tbl;
	IF tenant_column IS NULL THEN
		RAISE EXCEPTION 'table % is not a tenant table', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Quotas count rows per tenant, and the table has no registered tenant column.',
				  HINT = format('Call mandant.enable_tenancy(%L) first.', tbl::text);
	END IF;
	PERFORM mandant.check_resource(resource);

	statement := format('CREATE TRIGGER mandant_quota AFTER INSERT OR DELETE OR UPDATE OF %I ON %s '
						'FOR EACH ROW EXECUTE FUNCTION mandant.quota_trigger(%L, %L)',
						tenant_column, tbl, resource, tenant_column);
	SELECT pg_get_triggerdef(t.oid) INTO existing FROM pg_trigger t
	WHERE t.tgrelid = tbl AND t.tgname = 'mandant_quota';
	IF existing IS DISTINCT FROM statement THEN
		EXECUTE format('DROP TRIGGER IF EXISTS mandant_quota ON %s', tbl);
		EXECUTE statement;
	END IF;
	statement := format('CREATE TRIGGER mandant_quota_truncate AFTER TRUNCATE ON %s '
						'FOR EACH STATEMENT EXECUTE FUNCTION mandant.quota_truncated(%L)', tbl, resource);
	SELECT pg_get_triggerdef(t.oid) INTO existing FROM pg_trigger t
	WHERE t.tgrelid = tbl AND t.tgname = 'mandant_quota_truncate';
	IF existing IS DISTINCT FROM statement THEN
		EXECUTE format('DROP TRIGGER IF EXISTS mandant_quota_truncate ON %s', tbl);
		EXECUTE statement;
	END IF;
	INSERT INTO mandant.quota_table AS q (relid, resource, tenant_column)
	VALUES (tbl, resource, tenant_column)
	ON CONFLICT (relid) DO UPDATE SET resource = EXCLUDED.resource, tenant_column = EXCLUDED.tenant_column
	WHERE (q.resource, q.tenant_column) IS DISTINCT FROM (EXCLUDED.resource, EXCLUDED.tenant_column);
END
$$;

COMMENT ON FUNCTION mandant.enable_quota(regclass, text) IS
'Count the rows of a tenant table against a resource of each tenant''s plan (C trigger; the insert past the limit fails with MD030, also under concurrency). Idempotent; the table owner only.';

CREATE FUNCTION mandant.disable_quota(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_quota');
	EXECUTE format('DROP TRIGGER IF EXISTS mandant_quota ON %s', tbl);
	EXECUTE format('DROP TRIGGER IF EXISTS mandant_quota_truncate ON %s', tbl);
	DELETE FROM mandant.quota_table q WHERE q.relid = tbl;
END
$$;

COMMENT ON FUNCTION mandant.disable_quota(regclass) IS
'Stop counting a table''s rows. The table owner only.';

/*
 * Members count as users: the identity functions call mandant.consume()
 * (no trigger on mandant's own table, see quota.c); the registration lets
 * counters be recounted from the memberships.
 */
INSERT INTO mandant.quota_table (relid, resource, tenant_column) VALUES ('mandant.membership', 'users', 'tenant_id');

CREATE FUNCTION mandant.consume(tenant uuid, resource text, amount bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_consume'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.consume(uuid, text, bigint) IS
'Internal: count amount of a resource for a tenant (MD030 past the limit); call before writing the row it counts.';

REVOKE ALL ON FUNCTION mandant.consume(uuid, text, bigint) FROM PUBLIC;

CREATE FUNCTION mandant.check_limit(tenant uuid, resource text, "limit" bigint)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.tenant t WHERE t.id = tenant) THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	PERFORM mandant.check_resource(resource);
	IF "limit" < 0 THEN
		RAISE EXCEPTION 'a limit must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The limit given for %s was %s.', resource, "limit"),
				  HINT = 'Pass 0 or more, or NULL for unlimited.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_limit(uuid, text, bigint) IS
'Internal: raise unless the tenant exists, the resource is known and the limit is not negative.';

CREATE FUNCTION mandant.set_quota(tenant uuid, resource text, "limit" bigint,
								  effective_at timestamptz DEFAULT now(), reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	change_id bigint;
BEGIN
	PERFORM mandant.check_limit(tenant, resource, "limit");
	PERFORM mandant.require_reason(reason, 'change a quota',
								   'Quota changes are kept in mandant.quota_change with their reason.',
								   'Say why, e.g. ''contract amendment 2026-11''.');
	INSERT INTO mandant.quota_change (tenant_id, resource, "limit", effective_at, reason, actor)
	VALUES (tenant, resource, "limit", COALESCE(effective_at, now()), reason,
			COALESCE(mandant.current_user_id()::text, session_user))
	RETURNING id INTO change_id;
	UPDATE mandant.tenant_usage u SET limit_until = '-infinity'
	WHERE u.tenant_id = tenant AND u.resource = set_quota.resource;
	PERFORM mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'quota.changed', 'tenant', tenant::text,
								  jsonb_build_object('resource', resource, 'limit', "limit",
													 'effectiveAt', COALESCE(effective_at, now()), 'reason', reason));
	RETURN change_id;
END
$$;

COMMENT ON FUNCTION mandant.set_quota(uuid, text, bigint, timestamptz, text) IS
'Override a tenant''s limit of a resource from effective_at on (NULL limit: unlimited); kept in mandant.quota_change. mandant_admin only.';

CREATE FUNCTION mandant.change_plan(tenant uuid, plan_key text, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old_plan text := (mandant.lock_tenant(tenant)).plan_key;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.key = change_plan.plan_key) THEN
		RAISE EXCEPTION 'plan "%" does not exist', plan_key
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('No row of mandant.plan has key %L.', plan_key),
				  HINT = format('Use one of: %s.', (SELECT string_agg(p.key, ', ' ORDER BY p.key) FROM mandant.plan p));
	END IF;
	PERFORM mandant.require_reason(reason, 'change a plan', 'The reason is recorded in the audit trail.',
								   'Say why, e.g. ''upgrade ordered by the customer''.');
	UPDATE mandant.tenant t SET plan_key = change_plan.plan_key, updated_at = now() WHERE t.id = tenant;
	UPDATE mandant.tenant_usage u SET limit_until = '-infinity' WHERE u.tenant_id = tenant;
	PERFORM mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'plan.changed', 'tenant', tenant::text,
								  jsonb_build_object('from', old_plan, 'to', plan_key, 'reason', reason));
	PERFORM mandant.emit_for(NULL, 'platform.tenant.plan_changed', tenant::text,
							 jsonb_build_object('tenantId', tenant, 'from', old_plan, 'to', plan_key));
END
$$;

COMMENT ON FUNCTION mandant.change_plan(uuid, text, text) IS
'Move a tenant to another plan; its limits change at once (usage above a lower limit stays, new rows are refused). mandant_admin only.';

CREATE FUNCTION mandant.usage(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (resource text, used bigint, "limit" bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_tenant_access(tenant, 'the usage');
	RETURN QUERY
	SELECT r.resource,
		   COALESCE((SELECT u.used FROM mandant.tenant_usage u WHERE u.tenant_id = usage.tenant AND u.resource = r.resource),
					CASE WHEN EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = r.resource)
						 THEN mandant.count_rows(usage.tenant, r.resource) ELSE 0 END),
		   mandant.effective_limit(usage.tenant, r.resource)
	FROM (SELECT DISTINCT k AS resource FROM mandant.plan p, jsonb_object_keys(p.limits) k) r
	ORDER BY r.resource;
END
$$;

COMMENT ON FUNCTION mandant.usage(uuid) IS
'What a tenant uses of each resource and its limit (NULL: unlimited). The current tenant, or any for mandant_admin.';

CREATE FUNCTION mandant.usage_reconcile()
RETURNS TABLE (tenant_id uuid, resource text, recorded bigint, actual bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	u record;
	n bigint;
BEGIN
	FOR u IN SELECT x.tenant_id, x.resource, x.used FROM mandant.tenant_usage x
			 WHERE EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = x.resource)
			 ORDER BY x.tenant_id, x.resource FOR UPDATE
	LOOP
		n := mandant.count_rows(u.tenant_id, u.resource);
		IF n <> u.used THEN
			UPDATE mandant.tenant_usage x SET used = n WHERE x.tenant_id = u.tenant_id AND x.resource = u.resource;
			tenant_id := u.tenant_id;
			resource := u.resource;
			recorded := u.used;
			actual := n;
			RETURN NEXT;
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.usage_reconcile() IS
'Recount the rows behind every usage counter, fix the counters that drifted and report them. mandant_admin only.';

REVOKE ALL ON FUNCTION mandant.set_quota(uuid, text, bigint, timestamptz, text), mandant.change_plan(uuid, text, text),
	mandant.usage_reconcile() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.set_quota(uuid, text, bigint, timestamptz, text), mandant.change_plan(uuid, text, text),
	mandant.usage_reconcile() TO mandant_admin;

/* ---------------------------------------------------------------------------
 * Tenant lifecycle: status machine, provisioning saga, suspension, hard
 * deletion with a tombstone, export and import.
 *
 * The status of mandant.tenant follows mandant's own state machine
 * "mandant_tenant": pending -> active | failed, active <-> suspended, any
 * -> deleted.  Every state may start a row, so that a dump restores
 * suspended and failed tenants; transitions are what the machine guards.
 * Every step is announced in the outbox (platform.tenant.*) and recorded
 * in the audit trail.
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
'Internal: delete a tenant''s rows from mandant''s append-only tables (for delete_tenant).';

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
 * after_tenant_created: the owner (if already a user) becomes a member,
 * and the tenant is announced.  Called by mandant.create_tenant.
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
	FOR owner IN SELECT u.id FROM mandant.users u WHERE lower(u.email) = lower(t.owner_email) LOOP
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

CREATE FUNCTION mandant.complete_tenant_provisioning(operation_id uuid)
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

COMMENT ON FUNCTION mandant.complete_tenant_provisioning(uuid) IS
'End the provisioning saga of a pending tenant: it becomes active and platform.tenant.created is emitted. Repeating it changes nothing and returns the same id. For mandant_admin and trusted backends.';

CREATE FUNCTION mandant.fail_tenant_provisioning(operation_id uuid, reason text)
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

COMMENT ON FUNCTION mandant.fail_tenant_provisioning(uuid, text) IS
'End the provisioning saga of a pending tenant as failed and emit the compensation event platform.tenant.provisioning_failed. Repeating it changes nothing. For mandant_admin and trusted backends.';

/* ---- suspension ------------------------------------------------------------ */

CREATE FUNCTION mandant.suspend_tenant(tenant uuid, reason text)
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

COMMENT ON FUNCTION mandant.suspend_tenant(uuid, text) IS
'Suspend an active tenant: nobody can enter it (set_tenant and authenticate answer MD003), its data stays. mandant_admin only.';

CREATE FUNCTION mandant.resume_tenant(tenant uuid)
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

COMMENT ON FUNCTION mandant.resume_tenant(uuid) IS
'Resume a suspended tenant (55000 for pending and failed ones: provisioning decides those). Repeating it changes nothing. mandant_admin only.';

/* ---- the tenant's tables, in foreign key order --------------------------- */

/*
 * tenant_tables lists the registered tenant tables that hold rows of their
 * own (partitions of a registered table are reached through it), with the
 * length of the longest chain of registered tables referencing each: 0 for
 * tables nothing references.  Deleting in ascending order and inserting in
 * descending order respects the foreign keys between them.
 */
CREATE FUNCTION mandant.tenant_tables()
RETURNS TABLE (relid regclass, tenant_column name, depth integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH RECURSIVE own AS (
		SELECT r.relid, r.tenant_column FROM mandant.tenant_table r
		WHERE NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(r.relid) a
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
	ORDER BY 3, 1::text
$$;

COMMENT ON FUNCTION mandant.tenant_tables() IS
'The registered tenant tables (partitions left out) with their depth in the foreign keys between them: delete by ascending depth, insert by descending.';

/* ---- deletion -------------------------------------------------------------- */

CREATE FUNCTION mandant.delete_tenant(tenant uuid, confirm_slug text)
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
	UPDATE mandant.tenant x SET status = 'deleted', updated_at = now() WHERE x.id = tenant;

	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth, relid::text LOOP
		EXECUTE format('DELETE FROM %s WHERE %I = $1', tbl.relid, tbl.tenant_column) USING tenant;
		GET DIAGNOSTICS n = ROW_COUNT;
		counts := counts || jsonb_build_object(tbl.relid::text, n);
	END LOOP;

	DELETE FROM mandant.outbox o WHERE o.tenant_id = tenant;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('mandant.outbox', n);
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
	SELECT jsonb_build_object('seq', a.seq, 'chain', encode(a.chain, 'hex')) INTO head
	FROM mandant.audit_seal a WHERE a.tenant_id = tenant ORDER BY a.seq DESC LIMIT 1;
	counts := counts || mandant.erase_tenant_history(tenant);
	DELETE FROM mandant.tenant x WHERE x.id = tenant;		-- roles, service accounts, sessions cascade

	INSERT INTO mandant.tenant_tombstone (tenant_id, slug_sha256, counts, deleted_by)
	VALUES (tenant, sha256(convert_to(t.slug, 'UTF8')), counts, COALESCE(mandant.current_user_id()::text, session_user));
	PERFORM mandant.emit_for(NULL, 'platform.tenant.deleted', tenant::text,
							 jsonb_build_object('tenantId', tenant, 'counts', counts));
	PERFORM mandant.audit_log_for(NULL, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'tenant.deleted', 'tenant', tenant::text,
								  jsonb_build_object('slugSha256', encode(sha256(convert_to(t.slug, 'UTF8')), 'hex'),
													 'counts', counts, 'chainHead', head));
	RETURN counts;
END
$$;

COMMENT ON FUNCTION mandant.delete_tenant(uuid, text) IS
'Delete a tenant for good: every row of every tenant table (children first), its outbox events, configuration, members, usage, audit trail and history; leaves a tombstone (id, slug SHA-256, counts) and returns the counts. confirm_slug must be the tenant''s slug. mandant_admin only.';

/* ---- export and import ------------------------------------------------------ */

CREATE FUNCTION mandant.export_tenant(tenant uuid)
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
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth DESC, relid::text LOOP
		EXECUTE format('SELECT COALESCE(jsonb_agg(to_jsonb(r) ORDER BY r::text), ''[]'') FROM %s r WHERE %I = $1',
					   tbl.relid, tbl.tenant_column)
			INTO rows USING tenant;
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

COMMENT ON FUNCTION mandant.export_tenant(uuid) IS
'Everything of a tenant as one JSON document (format mandant.tenant-export, version 1): the tenant, the rows of every tenant table, its roles, members (e-mail, name, role: never password hashes or secrets), configuration and its history, quota changes, charged usage and the audit trail with its seals. mandant_admin only.';

/* import_rows inserts exported rows into one tenant table, for tenant. */
CREATE FUNCTION mandant.import_rows(tbl regclass, tenant_column name, tenant uuid, rows jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	columns	text;
	n		bigint;
	seq		text;
	col		name;
BEGIN
	SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
	FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
	EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1)',
				   tbl, columns, columns, tbl)
		USING (SELECT COALESCE(jsonb_agg(r || jsonb_build_object(tenant_column, tenant)), '[]')
			   FROM jsonb_array_elements(rows) r);
	GET DIAGNOSTICS n = ROW_COUNT;
	/* Sequences behind the imported ids move past them. */
	FOR col, seq IN
		SELECT a.attname, pg_get_serial_sequence(tbl::text, a.attname)
		FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
	LOOP
		IF seq IS NOT NULL THEN
			EXECUTE format('SELECT setval(%L, GREATEST((SELECT max(%I) FROM %s), (SELECT last_value FROM %s)))',
						   seq, col, tbl, seq::regclass);
		END IF;
	END LOOP;
	RETURN n;
END
$$;

COMMENT ON FUNCTION mandant.import_rows(regclass, name, uuid, jsonb) IS
'Internal: insert exported rows into a tenant table for a tenant and move its sequences past them.';

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
		GROUP BY c.oid, c.conname, c.confrelid
		ORDER BY c.conname
	LOOP
		EXECUTE format('SELECT count(*) FROM %s c WHERE c.%I = $1 AND %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)',
					   tbl, tenant_column, fk.present, fk.parent, fk.matches)
			INTO missing USING tenant;
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

CREATE FUNCTION mandant.import_tenant(export jsonb)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	t		mandant.tenant;
	tbl		record;
	rows	jsonb;
	name	text;
	h		record;
	rev		bigint;
	skipped	text[] := '{}';
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
	t := jsonb_populate_record(NULL::mandant.tenant, export -> 'tenant');
	IF t.id IS NULL OR t.slug IS NULL THEN
		RAISE EXCEPTION 'export names no tenant'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The "tenant" object lacks id or slug.',
				  HINT = 'Pass what mandant.export_tenant() returned.';
	END IF;
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
	FOR name IN SELECT jsonb_object_keys(COALESCE(export -> 'tables', '{}')) LOOP
		IF NOT EXISTS (SELECT 1 FROM mandant.tenant_tables() x WHERE x.relid::text = name) THEN
			RAISE EXCEPTION 'table % of the export is not a tenant table here', name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Every table of the export must exist and be registered with mandant.enable_tenancy.',
					  HINT = 'Create the schema (migrations) first.';
		END IF;
	END LOOP;

	INSERT INTO mandant.tenant SELECT (t).*;
	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth DESC, relid::text LOOP
		rows := export -> 'tables' -> tbl.relid::text;
		IF rows IS NOT NULL THEN
			PERFORM mandant.import_rows(tbl.relid, tbl.tenant_column, t.id, rows);
		END IF;
	END LOOP;
	FOR tbl IN SELECT * FROM mandant.tenant_tables() ORDER BY depth DESC, relid::text LOOP
		IF export -> 'tables' ? tbl.relid::text THEN
			PERFORM mandant.check_imported_references(tbl.relid, tbl.tenant_column, t.id);
		END IF;
	END LOOP;

	INSERT INTO mandant.role (tenant_id, name, scopes, description)
	SELECT t.id, r.name, r.scopes, r.description
	FROM jsonb_to_recordset(COALESCE(export -> 'roles', '[]')) AS r (name text, scopes text[], description text);
	INSERT INTO mandant.membership (tenant_id, user_id, role, created_at, created_by)
	SELECT t.id, u.id, m.role, m."createdAt", m."createdBy"
	FROM jsonb_to_recordset(COALESCE(export -> 'memberships', '[]'))
		 AS m (email text, role text, "createdAt" timestamptz, "createdBy" text)
	JOIN mandant.users u ON lower(u.email) = lower(m.email);
	SELECT COALESCE(array_agg(m.email ORDER BY m.email), '{}') INTO skipped
	FROM jsonb_to_recordset(COALESCE(export -> 'memberships', '[]')) AS m (email text)
	WHERE NOT EXISTS (SELECT 1 FROM mandant.users u WHERE lower(u.email) = lower(m.email));

	/* Configuration: revisions are this database's, so they are taken anew in order. */
	FOR h IN SELECT * FROM jsonb_populate_recordset(NULL::mandant.config_history, COALESCE(export -> 'configHistory', '[]'))
			 ORDER BY revision LOOP
		INSERT INTO mandant.config_clock AS c (id, revision) VALUES (1, 1)
		ON CONFLICT (id) DO UPDATE SET revision = c.revision + 1 RETURNING c.revision INTO rev;
		INSERT INTO mandant.config_history (revision, tenant_id, service, key, version, old_value, new_value,
											reason, changed_by, actor_user_id, request_id, changed_at)
		VALUES (rev, t.id, h.service, h.key, h.version, h.old_value, h.new_value, h.reason, h.changed_by,
				h.actor_user_id, h.request_id, h.changed_at);
	END LOOP;
	FOR h IN SELECT * FROM jsonb_populate_recordset(NULL::mandant.config_entry, COALESCE(export -> 'config', '[]')) LOOP
		INSERT INTO mandant.config_clock AS c (id, revision) VALUES (1, 1)
		ON CONFLICT (id) DO UPDATE SET revision = c.revision + 1 RETURNING c.revision INTO rev;
		INSERT INTO mandant.config_entry (tenant_id, service, key, value, version, revision, updated_at, updated_by, deleted_at)
		VALUES (t.id, h.service, h.key, h.value, h.version, rev, h.updated_at, h.updated_by, h.deleted_at);
	END LOOP;

	INSERT INTO mandant.quota_change (tenant_id, resource, "limit", effective_at, reason, actor, created_at)
	SELECT t.id, q.resource, q."limit", q.effective_at, q.reason, q.actor, q.created_at
	FROM jsonb_populate_recordset(NULL::mandant.quota_change, COALESCE(export -> 'quotaChanges', '[]')) q;
	INSERT INTO mandant.tenant_usage (tenant_id, resource, used)
	SELECT t.id, c.key, (c.value #>> '{}')::bigint FROM jsonb_each(COALESCE(export -> 'charged', '{}')) c;

	INSERT INTO mandant.audit_event
	SELECT (jsonb_populate_record(NULL::mandant.audit_event, e || jsonb_build_object('tenant_id', t.id))).*
	FROM jsonb_array_elements(COALESCE(export #> '{audit,events}', '[]')) e;
	INSERT INTO mandant.audit_seal
	SELECT (jsonb_populate_record(NULL::mandant.audit_seal, s || jsonb_build_object('tenant_id', t.id))).*
	FROM jsonb_array_elements(COALESCE(export #> '{audit,seals}', '[]')) s;
	PERFORM setval('mandant.audit_event_id_seq', GREATEST(
		(SELECT max(e.id) FROM mandant.audit_event e), (SELECT last_value FROM mandant.audit_event_id_seq)));

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
	RETURN t.id;
END
$$;

COMMENT ON FUNCTION mandant.import_tenant(jsonb) IS
'Restore a tenant from mandant.export_tenant() (version 1) into this database: rows with their ids, members whose e-mail has an account here, configuration (new revisions), quota changes, audit trail and seals (audit_verify still passes; the platform''s tenant.imported record keeps the imported chain head). Refuses other versions and existing slugs; all or nothing. mandant_admin only.';

REVOKE ALL ON FUNCTION mandant.delete_tenant(uuid, text), mandant.export_tenant(uuid), mandant.import_tenant(jsonb),
	mandant.suspend_tenant(uuid, text), mandant.resume_tenant(uuid),
	mandant.complete_tenant_provisioning(uuid), mandant.fail_tenant_provisioning(uuid, text),
	mandant.import_rows(regclass, name, uuid, jsonb), mandant.check_imported_references(regclass, name, uuid),
	mandant.announce(uuid, text, text), mandant.check_slug_quarantine(text, uuid),
	mandant.after_tenant_created(uuid), mandant.tenant_by_operation(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.delete_tenant(uuid, text), mandant.export_tenant(uuid), mandant.import_tenant(jsonb),
	mandant.suspend_tenant(uuid, text), mandant.resume_tenant(uuid),
	mandant.complete_tenant_provisioning(uuid), mandant.fail_tenant_provisioning(uuid, text) TO mandant_admin;
GRANT EXECUTE ON FUNCTION mandant.complete_tenant_provisioning(uuid), mandant.fail_tenant_provisioning(uuid, text)
	TO mandant_service;
GRANT SET ON PARAMETER mandant.slug_quarantine_days TO mandant_admin;

/* ---------------------------------------------------------------------------
 * Registry upkeep: dropped tables leave mandant's registries.
 * ------------------------------------------------------------------------- */

/*
 * forget_dropped_tables removes registry rows of tables being dropped.  It is
 * SECURITY DEFINER because the registry's owner policy can no longer see the
 * owner of a table whose catalog row is gone.
 */
CREATE FUNCTION mandant.forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped oid[];
BEGIN
	SELECT array_agg(o.objid) INTO dropped
	FROM pg_event_trigger_dropped_objects() o
	WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0;
	DELETE FROM mandant.tenant_table r WHERE r.relid::oid = ANY (dropped);
	DELETE FROM mandant.state_machine_table r WHERE r.relid::oid = ANY (dropped);
	DELETE FROM mandant.quota_table r WHERE r.relid::oid = ANY (dropped);
END
$$;

COMMENT ON FUNCTION mandant.forget_dropped_tables() IS
'Event trigger: unregister tenant tables, state machine tables and tables under quota when they are dropped.';

REVOKE ALL ON FUNCTION mandant.forget_dropped_tables() FROM PUBLIC;

CREATE EVENT TRIGGER mandant_forget_dropped_tables ON sql_drop
	EXECUTE FUNCTION mandant.forget_dropped_tables();
