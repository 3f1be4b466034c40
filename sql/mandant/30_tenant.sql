
/* ---------------------------------------------------------------------------
 * Plans, reserved slugs, tenants
 *
 * mandant.tenant is a platform table: a session sees its own tenant's row,
 * mandant_admin and mandant_service see all rows, and rows are written only
 * through SECURITY DEFINER functions.  Every tenant table references
 * mandant.tenant(id) through a foreign key that mandant adds when it
 * registers the table (mandant.registry_tenant_table): nobody else holds
 * REFERENCES on it, because a foreign key with an ON DELETE action or a
 * deferred trigger behind it would run its owner's code when a tenant is
 * deleted, and every foreign key tells whether a uuid is a tenant.
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
DECLARE
	updated		bigint;
BEGIN
	IF NEW.builtin THEN
		/* the relation it fires on: on Citus, a placement of the reference table */
		EXECUTE format('UPDATE %I.%I p SET name = $1, limits = $2, created_at = $3 '
					   'WHERE p.key = $4 AND p.builtin', TG_TABLE_SCHEMA, TG_TABLE_NAME)
			USING NEW.name, NEW.limits, NEW.created_at, NEW.key;
		GET DIAGNOSTICS updated = ROW_COUNT;
		IF updated > 0 THEN
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
	id				uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid()
					CONSTRAINT tenant_id_not_platform
						CHECK (id <> '00000000-0000-0000-0000-000000000000'),
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
CREATE FUNCTION mandant.op_create_tenant(
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
	/* a value, not an expression: Citus cannot evaluate a simple CASE in an INSERT */
	initial_status text := CASE current_setting('mandant.provisioning')
						   WHEN 'external' THEN 'pending' ELSE 'active' END;
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
	IF plan_key IS NULL OR NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.key = op_create_tenant.plan_key) THEN
		RAISE EXCEPTION 'plan "%" does not exist', plan_key
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('No row of mandant.plan has key %L.', plan_key),
				  HINT = format('Use one of: %s.',
								(SELECT string_agg(p.key, ', ' ORDER BY p.created_at, p.key) FROM mandant.plan p));
	END IF;

	/* A repeated operation returns what the first one created. */
	IF operation_id IS NOT NULL THEN
		SELECT t.* INTO existing FROM mandant.tenant t
		WHERE t.operation_id = op_create_tenant.operation_id;
		IF FOUND THEN
			RETURN mandant.tenant_for_repeated_operation(existing, slug);
		END IF;
	END IF;

	IF EXISTS (SELECT 1 FROM mandant.tenant t WHERE t.slug = op_create_tenant.slug) THEN
		RAISE EXCEPTION 'tenant slug "%" is already taken', slug
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('A tenant with slug %L already exists.', slug),
				  HINT = 'Pick another slug.';
	END IF;
	PERFORM mandant.check_slug_quarantine(slug);

	BEGIN
		INSERT INTO mandant.tenant AS t (slug, name, owner_email, plan_key, operation_id, status)
		VALUES (op_create_tenant.slug, btrim(op_create_tenant.name), op_create_tenant.owner_email,
				op_create_tenant.plan_key, op_create_tenant.operation_id, initial_status)
		RETURNING t.id INTO new_id;
	EXCEPTION WHEN unique_violation THEN
		/*
		 * A concurrent call committed first.  If it was this operation,
		 * answer as a repeat; otherwise it took the slug.
		 */
		IF operation_id IS NOT NULL THEN
			SELECT t.* INTO existing FROM mandant.tenant t
			WHERE t.operation_id = op_create_tenant.operation_id;
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

COMMENT ON FUNCTION mandant.op_create_tenant(text, text, text, text, uuid) IS
'Internal: the body of mandant.create_tenant(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.create_tenant(
	slug text,
	name text,
	owner_email text,
	plan_key text DEFAULT 'free',
	operation_id uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('create_tenant');
	RETURN mandant.op_create_tenant(slug, name, owner_email, plan_key, operation_id);
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

REVOKE ALL ON FUNCTION mandant.op_create_tenant(text, text, text, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_create_tenant(text, text, text, text, uuid) TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.tenant_for_repeated_operation(mandant.tenant, text) FROM PUBLIC;

CREATE FUNCTION mandant.check_tenant_enterable(tenant uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_tenant_enterable'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_tenant_enterable(uuid) IS
'Internal: MD002 or MD003 unless the tenant can be entered.';

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

REVOKE ALL ON FUNCTION mandant.lock_tenant(uuid) FROM PUBLIC;
