/*
 * mandant 0.1.0 -> 0.2.0
 *
 * Every change of the install script (sql/mandant/) between the two
 * releases.  test/shell/upgrade.sh proves that a database updated with this
 * script has the same objects, definitions, rights and comments as a fresh
 * installation of 0.2.0, and that its data survives.
 *
 * 0.2.0 closes mandant's registries (only mandant's functions write them,
 * through the gate of extension/gate.c), runs the application's code only
 * as its owner, reserves the platform's events, vouches for owner e-mails
 * and keeps notifications free of tenant data; see README, "Changes".
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mandant UPDATE TO '0.2.0'" to load this file. \quit

/* ---- registries written only by mandant ---- */

DROP POLICY tenant_table_owner ON mandant.tenant_table;
REVOKE INSERT, UPDATE, DELETE ON mandant.tenant_table FROM PUBLIC;
COMMENT ON TABLE mandant.tenant_table IS
'Registry of tenant tables (written by mandant.enable_tenancy through the gate; rows of dropped tables are removed by an event trigger).';

DROP POLICY owner_writes ON mandant.state_machine;
DROP POLICY owner_writes ON mandant.state_machine_state;
DROP POLICY owner_writes ON mandant.state_transition;
DROP POLICY owner_writes ON mandant.state_machine_table;
REVOKE INSERT, UPDATE, DELETE ON mandant.state_machine, mandant.state_machine_state,
	mandant.state_transition, mandant.state_machine_table FROM PUBLIC;

DROP POLICY quota_table_owner ON mandant.quota_table;
REVOKE INSERT, UPDATE, DELETE ON mandant.quota_table FROM PUBLIC;

CREATE TABLE mandant.audit_table (
	relid			regclass PRIMARY KEY,
	category		text,
	exclude_columns	text[] NOT NULL DEFAULT '{}',
	enabled_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by		name NOT NULL
);

COMMENT ON TABLE mandant.audit_table IS
'Registry of audited tables (written by mandant.enable_audit through the gate): category (NULL: the schema name) and excluded columns.';

ALTER TABLE mandant.audit_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_table_read ON mandant.audit_table FOR SELECT USING (true);
GRANT SELECT ON mandant.audit_table TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_table', '');

CREATE TABLE mandant.outbox_table (
	relid			regclass PRIMARY KEY,
	domain			text NOT NULL,
	entity			text NOT NULL,
	exclude_columns	text[] NOT NULL DEFAULT '{}',
	enabled_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by		name NOT NULL
);

COMMENT ON TABLE mandant.outbox_table IS
'Registry of tables whose writes become outbox events (written by mandant.enable_outbox through the gate): domain, entity and excluded columns.';

ALTER TABLE mandant.outbox_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_table_read ON mandant.outbox_table FOR SELECT USING (true);
GRANT SELECT ON mandant.outbox_table TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.outbox_table', '');

/*
 * Tables audited or publishing events under 0.1.0 keep doing so: their
 * triggers are registered (the triggers of 0.2.0 refuse unregistered
 * tables).  Triggers on temporary tables and those that partitions
 * inherited are not registrations.
 */
INSERT INTO mandant.audit_table (relid, category, exclude_columns, enabled_by)
SELECT t.tgrelid, NULLIF(a.args[1], ''), COALESCE(a.args[2:], '{}'), c.relowner::regrole::name
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
CROSS JOIN LATERAL (SELECT CASE WHEN t.tgnargs = 0 THEN '{}'::text[]
								ELSE (pg_catalog.string_to_array(pg_catalog.replace(pg_catalog.rtrim(
										  pg_catalog.encode(t.tgargs, 'escape'), '\000'), '\\', '\'), '\000'))[1:t.tgnargs]
						   END AS args) a
WHERE t.tgfoid = 'mandant.audit_trigger()'::regprocedure AND t.tgname = 'mandant_audit'
  AND t.tgparentid = 0 AND c.relpersistence <> 't';

INSERT INTO mandant.outbox_table (relid, domain, entity, exclude_columns, enabled_by)
SELECT t.tgrelid, a.args[1], a.args[2], COALESCE(a.args[3:], '{}'), c.relowner::regrole::name
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
CROSS JOIN LATERAL (SELECT (pg_catalog.string_to_array(pg_catalog.replace(pg_catalog.rtrim(
								pg_catalog.encode(t.tgargs, 'escape'), '\000'), '\\', '\'), '\000'))[1:t.tgnargs] AS args) a
WHERE t.tgfoid = 'mandant.outbox_trigger()'::regprocedure AND t.tgname = 'mandant_outbox'
  AND t.tgparentid = 0 AND c.relpersistence <> 't' AND t.tgnargs >= 2 AND a.args[1] <> 'platform';

/* ---- checkpoints of incremental audit verification ---- */

CREATE TABLE mandant.audit_checkpoint (
	tenant_id		uuid NOT NULL,
	seq				bigint NOT NULL,
	event_id		bigint NOT NULL,
	chain			bytea NOT NULL,
	from_seq		bigint NOT NULL,
	record_id		bigint NOT NULL,
	verified_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	verified_by		text NOT NULL,
	PRIMARY KEY (tenant_id, seq)
);

COMMENT ON TABLE mandant.audit_checkpoint IS
'Verified points of each tenant''s chain, written by mandant.audit_verify_since_checkpoint() when the seals from_seq+1 .. seq passed: the seal row (seq, event_id, chain) and record_id, the platform audit event (action audit.verified) that records the same values. Append-only.';

ALTER TABLE mandant.audit_checkpoint ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.audit_checkpoint
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.audit_checkpoint TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_checkpoint', '');
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_checkpoint
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.audit_checkpoint ENABLE ALWAYS TRIGGER append_only;

/* ---- nobody but mandant references mandant.tenant ---- */

REVOKE REFERENCES (id) ON mandant.tenant FROM PUBLIC;

/* ---- users: the platform vouches for owner e-mails ---- */

ALTER TABLE mandant.users ADD COLUMN email_confirmed_at timestamptz;
COMMENT ON TABLE mandant.users IS
'People who log in. E-mail unique case-insensitively; password_hash is bcrypt, totp_secret sealed (AES-256-GCM); token_version invalidates every token when it grows; email_confirmed_at is set when the platform vouches for the address.';
GRANT SELECT (email_confirmed_at) ON mandant.users TO mandant_admin;

/*
 * ---- the platform's operations pass the gate's check first ----
 *
 * Each keeps its body, its rights (mandant_admin, mandant_service) and its
 * data as mandant.op_<name>; the public name becomes a SECURITY INVOKER
 * function, executable by everyone, that calls mandant.gate_check() and
 * then op_<name> (created below), so a refusal names the role to grant.
 */
ALTER FUNCTION mandant.create_tenant(text, text, text, text, uuid) RENAME TO op_create_tenant;
ALTER FUNCTION mandant.audit_seal() RENAME TO op_audit_seal;
ALTER FUNCTION mandant.audit_events(uuid, timestamptz, text, text, integer) RENAME TO op_audit_events;
ALTER FUNCTION mandant.outbox_claim(text, integer, interval) RENAME TO op_outbox_claim;
ALTER FUNCTION mandant.outbox_ack(bigint[]) RENAME TO op_outbox_ack;
ALTER FUNCTION mandant.outbox_nack(bigint, text, text) RENAME TO op_outbox_nack;
ALTER FUNCTION mandant.outbox_replay(bigint) RENAME TO op_outbox_replay;
ALTER FUNCTION mandant.outbox_skip(bigint, text) RENAME TO op_outbox_skip;
ALTER FUNCTION mandant.outbox_purge(interval) RENAME TO op_outbox_purge;
ALTER FUNCTION mandant.outbox_stats() RENAME TO op_outbox_stats;
ALTER FUNCTION mandant.set_quota(uuid, text, bigint, timestamptz, text) RENAME TO op_set_quota;
ALTER FUNCTION mandant.change_plan(uuid, text, text) RENAME TO op_change_plan;
ALTER FUNCTION mandant.usage_reconcile() RENAME TO op_usage_reconcile;
ALTER FUNCTION mandant.complete_tenant_provisioning(uuid) RENAME TO op_complete_tenant_provisioning;
ALTER FUNCTION mandant.fail_tenant_provisioning(uuid, text) RENAME TO op_fail_tenant_provisioning;
ALTER FUNCTION mandant.suspend_tenant(uuid, text) RENAME TO op_suspend_tenant;
ALTER FUNCTION mandant.resume_tenant(uuid) RENAME TO op_resume_tenant;
ALTER FUNCTION mandant.delete_tenant(uuid, text) RENAME TO op_delete_tenant;
ALTER FUNCTION mandant.export_tenant(uuid) RENAME TO op_export_tenant;
ALTER FUNCTION mandant.import_tenant(jsonb) RENAME TO op_import_tenant;

/* ---- routes of the HTTP gateway ---- */

CREATE TABLE mandant.http_route (
	method			text NOT NULL
					CONSTRAINT http_route_method
						CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
	path			text NOT NULL
					CONSTRAINT http_route_path
						CHECK (path ~ '^(/([A-Za-z0-9._~-]+|\{[a-z][A-Za-z0-9]*\}))+$'),
	function		regprocedure NOT NULL,
	required_scope	text
					CONSTRAINT http_route_scope
						CHECK (required_scope IN ('read', 'write', 'delete', 'admin', 'internal')),
	public			boolean NOT NULL DEFAULT false,
	paginated		boolean NOT NULL DEFAULT false,
	summary			text,
	envelope		boolean NOT NULL DEFAULT true,
	builtin			boolean NOT NULL DEFAULT false,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		name NOT NULL,
	PRIMARY KEY (method, path),
	CONSTRAINT http_route_public_scope CHECK (NOT (public AND required_scope IS NOT NULL))
);

COMMENT ON TABLE mandant.http_route IS
'Routes of the HTTP gateway: method and path template ({param} segments) to a function, with the scope it requires, whether it is public and paginated, and whether its answer is the envelope or the function''s JSON as it is (written by mandant.http_route() through the gate; builtin rows come with the extension).';

ALTER TABLE mandant.http_route ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_route_read ON mandant.http_route FOR SELECT USING (true);
GRANT SELECT ON mandant.http_route TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.http_route', 'WHERE NOT builtin');

CREATE TABLE mandant.http_route_grant (
	kind		text NOT NULL CONSTRAINT http_route_grant_kind CHECK (kind IN ('function', 'schema')),
	object		oid NOT NULL,
	PRIMARY KEY (kind, object)
);

COMMENT ON TABLE mandant.http_route_grant IS
'Rights mandant.http_route() granted to mandant_gateway: EXECUTE on routed functions, USAGE on their schemas (revoked when no route needs them).';

ALTER TABLE mandant.http_route_grant ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('mandant.http_route_grant', '');

CREATE TABLE mandant.tenant_table_name (
	nspname		name NOT NULL,
	relname		name NOT NULL,
	owner		name NOT NULL,
	PRIMARY KEY (nspname, relname)
);

COMMENT ON TABLE mandant.tenant_table_name IS
'Schema, name and owner of each table ever registered as a tenant table (written by mandant.enable_tenancy through the gate), for mandant.tenant_tables_unregistered().';

ALTER TABLE mandant.tenant_table_name ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_table_name_read ON mandant.tenant_table_name
	FOR SELECT USING (true);

GRANT SELECT ON mandant.tenant_table_name TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_table_name', '');

/* the tables 0.1.0 registered */
INSERT INTO mandant.tenant_table_name (nspname, relname, owner)
SELECT s.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner)
FROM mandant.tenant_table r JOIN pg_catalog.pg_class c ON c.oid = r.relid
JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace;

/*
 * outbox_claimable: the events a claim may lease now, the rule of delivery
 * in order per aggregate (op_outbox_claim, on one server and on Citus).
 */
CREATE VIEW mandant.outbox_claimable AS
	SELECT c.id, c.created_at FROM mandant.outbox c
	WHERE c.published_at IS NULL AND c.dead_at IS NULL
	  AND c.available_at <= pg_catalog.now()
	  AND (c.locked_until IS NULL OR c.locked_until <= pg_catalog.now())
	  AND NOT EXISTS (SELECT 1 FROM mandant.outbox p
					  WHERE p.tenant_id = c.tenant_id AND p.aggregate_type = c.aggregate_type
						AND p.aggregate_id = c.aggregate_id AND p.id < c.id
						AND p.published_at IS NULL);

COMMENT ON VIEW mandant.outbox_claimable IS
'Internal: the outbox events that a claim may lease now (pending, available, not leased, no older unpublished event of their aggregate).';

REVOKE ALL ON mandant.outbox_claimable FROM PUBLIC;

/* ---- functions: new and changed (as in the install script) ---- */

CREATE OR REPLACE FUNCTION mandant.tenant_filter()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_tenant_filter'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.tenant_filter() IS
'The USING side of tenant tables'' policies: the tenant of the transaction, NULL (no rows) without one; MD001 instead with mandant.strict_context on, except for trusted backends.';

CREATE OR REPLACE FUNCTION mandant.row_in_tenant(tenant uuid, tbl text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_row_in_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.row_in_tenant(uuid, text) IS
'The WITH CHECK of tenant tables'' policies: true for a row of the transaction''s tenant; MD001 with no tenant, 42501 naming the table (tbl, its name as text) and both tenants for another tenant''s row.';

CREATE OR REPLACE FUNCTION mandant.gate_call(op text, tenant uuid, args jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_gate_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.gate_call(text, uuid, jsonb) IS
'The gate of mandant''s privileged operations (what mandant.add_member(), mandant.enable_audit() and the other public functions call): checks that the calling role may run op, then runs it. Executable by everyone; it decides.';

CREATE OR REPLACE FUNCTION mandant.gate_check(op text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_gate_check'
LANGUAGE C STRICT;

COMMENT ON FUNCTION mandant.gate_check(text) IS
'The gate''s check alone, for the operations that run in a function of their own (mandant.create_tenant(), mandant.audit_seal(), mandant.outbox_claim(), ...): raises 42501, naming the role to grant, unless the calling role may run op. Executable by everyone; it decides.';

CREATE OR REPLACE FUNCTION mandant.gate_caller_member_of(role name)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_gate_caller_member_of'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.gate_caller_member_of(name) IS
'Internal: whether the role that passed the gate for the running operation has the privileges of role.';

CREATE OR REPLACE FUNCTION mandant.plan_restore_builtin()
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

CREATE OR REPLACE FUNCTION mandant.op_create_tenant(
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

CREATE OR REPLACE FUNCTION mandant.create_tenant(
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

CREATE OR REPLACE FUNCTION mandant.check_tenant_enterable(tenant uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_tenant_enterable'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_tenant_enterable(uuid) IS
'Internal: MD002 or MD003 unless the tenant can be entered.';

CREATE OR REPLACE FUNCTION mandant.run_as_table_owner(tbl regclass, tenant uuid, query text, rows jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_run_as_table_owner'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.run_as_table_owner(regclass, uuid, text, jsonb) IS
'Internal: run query ($1 tenant, $2 rows) as the owner of tbl inside a security-restricted operation, outside any tenant, with the owner''s forced row level security lifted; returns its first jsonb value or the number of rows it processed.';

CREATE OR REPLACE FUNCTION mandant.delete_tenant_rows(tbl regclass, tenant uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_delete_tenant_rows'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.delete_tenant_rows(regclass, uuid) IS
'Internal to delete_tenant: delete tenant''s rows of the tenant table tbl as run_as_table_owner does, in batches of 10,000; mandant''s triggers write no audit, outbox or quota work for them.';

CREATE OR REPLACE FUNCTION mandant.tenant_row_count(tbl regclass, tenant_column name, tenant uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_tenant_row_count'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.tenant_row_count(regclass, name, uuid) IS
'Internal: how many rows of tbl belong to tenant, counted without running any code of the table''s owner.';

CREATE OR REPLACE FUNCTION mandant.delete_tenant_row(tenant uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_delete_tenant_row'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.delete_tenant_row(uuid) IS
'Internal to delete_tenant: delete the row of mandant.tenant inside a security-restricted operation, so that the tenant tables'' foreign key checks run their owners'' code restricted.';

CREATE OR REPLACE FUNCTION mandant.alter_tenant_column_default(tbl regclass, tenant_column name, action text)
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

CREATE OR REPLACE FUNCTION mandant.check_table_target(tbl regclass, function_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_table_target'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_table_target(regclass, text) IS
'Raise unless tbl is a permanent application table the current user owns (22004, 42809, 0A000 or 42501, naming function_name).';

CREATE OR REPLACE FUNCTION mandant.tenant_policy_is_current(tbl regclass, tenant_column name)
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

CREATE OR REPLACE FUNCTION mandant.enable_tenancy(tbl regclass, tenant_column name DEFAULT 'tenant_id',
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

CREATE OR REPLACE FUNCTION mandant.disable_tenancy(tbl regclass)
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

CREATE OR REPLACE FUNCTION mandant.registry_tenant_table(tenant uuid, args jsonb, caller text)
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

CREATE OR REPLACE FUNCTION mandant.registry_forget_tenant_table(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	DELETE FROM mandant.tenant_table r WHERE r.relid = (args ->> 'table')::oid;
	SELECT NULL::jsonb;
$$;

CREATE OR REPLACE FUNCTION mandant.tenancy_lint()
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
	  AND t.relid NOT IN (SELECT u::oid FROM mandant.tenant_tables_unregistered() u)

	UNION ALL
	SELECT 'error', 'policy_unregistered', u::text,
		   format('table %s has mandant''s tenant policy but is not registered', u),
		   format('Call mandant.enable_tenancy(%L) again: Citus re-creates a table it converts, and until then deleting, exporting and moving a tenant are refused.', u::text)
	FROM mandant.tenant_tables_unregistered() u

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
		   CASE WHEN mandant.citus_distribution_column(t.relid) IS NULL
				THEN 'Recreate it AS RESTRICTIVE (ALTER cannot change that), so that it can only narrow tenant_isolation.'
				ELSE 'Drop it and narrow access in the queries or a security_invoker view: Citus creates restrictive policies on the shards as permissive.' END
	FROM tenant_rel t
	JOIN pg_policy p ON p.polrelid = t.relid
	WHERE p.polpermissive AND p.polname <> 'tenant_isolation'

	UNION ALL
	SELECT 'error', 'policy_restrictive_on_citus', t.name || '.' || quote_ident(p.polname),
		   format('restrictive policy %s on distributed table %s is permissive on its shards',
				  quote_ident(p.polname), t.name),
		   'Citus 13 creates every policy on the shards as PERMISSIVE, where it is OR-ed with tenant_isolation: drop it, and narrow access in the queries or a security_invoker view.'
	FROM tenant_rel t
	JOIN pg_policy p ON p.polrelid = t.relid
	WHERE NOT p.polpermissive AND mandant.citus_distribution_column(t.relid) IS NOT NULL

	UNION ALL
	SELECT 'error', 'citus_twin_executable', p.oid::regprocedure::text || ' ' || quote_ident(r.rolname),
		   format('%s, which mandant alone attaches to distributed tables, is executable by role %s',
				  p.oid::regprocedure, quote_ident(r.rolname)),
		   format('REVOKE EXECUTE ON FUNCTION %s FROM %I on every node (run_command_on_all_nodes); grant it only for the length of a shard move (README, "Scale out").',
				  p.oid::regprocedure, r.rolname)
	FROM pg_proc p
	CROSS JOIN pg_roles r
	WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE '%\_on\_shards'
	  AND NOT r.rolsuper AND r.rolname !~ '^pg_' AND has_function_privilege(r.oid, p.oid, 'EXECUTE')

	UNION ALL
	SELECT 'warning', 'tenant_fk_missing', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s does not reference mandant.tenant', quote_ident(t.tenant_column), t.name),
		   format('Call mandant.enable_tenancy(%L), which adds the foreign key.', t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND to_regclass('pg_catalog.pg_dist_partition') IS NULL	-- no such key on Citus (enable_tenancy)
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
	JOIN pg_class tc ON tc.oid = t.relid
	JOIN pg_roles o ON o.oid = p.proowner
	WHERE p.prosecdef
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid)
	GROUP BY p.oid
	/* what the hint asks: the owner is held to the tables' policies and the
	   function insists on a tenant (the routes of the HTTP gateway) */
	HAVING NOT (bool_and(NOT o.rolsuper AND NOT o.rolbypassrls AND tc.relrowsecurity
						 AND (tc.relforcerowsecurity OR NOT pg_has_role(p.proowner, tc.relowner, 'USAGE')))
				AND min(p.prosrc) ~ 'mandant\.require_tenant\s*\(')

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

CREATE OR REPLACE FUNCTION mandant.audit_event_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_event_guard'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_event_guard() IS
'Trigger on the shards of mandant.audit_event on Citus (mandant.citus_setup()): an event inserted through Citus is held to what mandant.audit_log() writes in the writer''s context, and gets this node''s transaction id and its hash.';

CREATE OR REPLACE FUNCTION mandant.check_excluded_columns(tbl regclass, exclude_columns text[])
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	excluded	text[];
	unknown		text;
BEGIN
	SELECT COALESCE(array_agg(DISTINCT c ORDER BY c), '{}') INTO excluded
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
	RETURN excluded;
END
$$;

COMMENT ON FUNCTION mandant.check_excluded_columns(regclass, text[]) IS
'Internal: the distinct, sorted excluded columns of a table; 42703 when one does not exist.';

CREATE OR REPLACE FUNCTION mandant.check_primary_key(tbl regclass, why text, function_name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary) THEN
		RAISE EXCEPTION 'table % has no primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = why,
				  HINT = format('Add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (id), then call %s() again.', tbl, function_name);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_primary_key(regclass, text, text) IS
'Internal: 55000 unless the table has a primary key.';

CREATE OR REPLACE FUNCTION mandant.attach_trigger(tbl regclass, name text, statement text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	existing	text;
	fn			text;
	twin		text;
	unsafe		text;
BEGIN
	/*
	 * On a table that Citus distributes, the trigger fires on the shards,
	 * on the workers: it calls the twin of the function that only mandant
	 * may attach (97_citus.sql), and Citus must be told to take it.
	 */
	IF mandant.citus_distribution_column(tbl) IS NOT NULL THEN
		fn := substring(statement FROM 'EXECUTE FUNCTION (mandant\.[a-z_]+)\(');
		/* the quota trigger only marks the table: the coordinator counts (quota.c) */
		twin := CASE WHEN fn = 'mandant.quota_trigger' THEN fn ELSE fn || '_on_shards' END;
		IF to_regproc(twin) IS NULL THEN
			RAISE EXCEPTION '% is not supported on distributed tables yet', substring(fn FROM '^mandant\.(.*)$')
				USING ERRCODE = 'feature_not_supported',
					  DETAIL = format('Citus distributes %s; mandant cannot yet store what this trigger writes beside the table''s shards.', tbl),
					  HINT = 'README, "Scale out", lists what works on distributed tables.';
		END IF;
		statement := replace(statement, fn || '(', twin || '(');
		unsafe := current_setting('citus.enable_unsafe_triggers');
		PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
	END IF;
	SELECT pg_get_triggerdef(t.oid) INTO existing
	FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = name;
	IF existing IS DISTINCT FROM statement THEN
		/*
		 * One statement, also on Citus: a DROP and a CREATE would be two
		 * DDL commands on placements that the caller's checks read over
		 * another connection, which Citus refuses.
		 */
		IF existing IS NOT NULL THEN
			statement := regexp_replace(statement, '^CREATE TRIGGER ', 'CREATE OR REPLACE TRIGGER ');
		END IF;
		EXECUTE statement;
	END IF;
	IF unsafe IS NOT NULL THEN
		PERFORM set_config('citus.enable_unsafe_triggers', unsafe, true);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.attach_trigger(regclass, text, text) IS
'Internal: create one of mandant''s triggers on a table, or replace it when its definition changed.';

CREATE OR REPLACE FUNCTION mandant.detach_trigger(tbl regclass, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	unsafe		text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = name) THEN
		IF mandant.citus_distribution_column(tbl) IS NOT NULL THEN
			unsafe := current_setting('citus.enable_unsafe_triggers');
			PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
		END IF;
		EXECUTE format('DROP TRIGGER %I ON %s', name, tbl);
		IF unsafe IS NOT NULL THEN
			PERFORM set_config('citus.enable_unsafe_triggers', unsafe, true);
		END IF;
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.detach_trigger(regclass, text) IS
'Internal: drop one of mandant''s triggers from a table, if it exists.';

CREATE OR REPLACE FUNCTION mandant.enable_audit(tbl regclass, category text DEFAULT NULL,
									 exclude_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_audit');
	PERFORM mandant.gate_call('attach_audit', NULL,
							  jsonb_build_object('table', tbl::oid, 'category', category,
												 'excludeColumns', to_jsonb(exclude_columns)));
END
$$;

COMMENT ON FUNCTION mandant.enable_audit(regclass, text, text[]) IS
'Audit every insert, update and delete of tbl (which needs a primary key) into mandant.audit_event. category defaults to the schema name; exclude_columns never appear in any event. Idempotent; the table owner only.';

CREATE OR REPLACE FUNCTION mandant.registry_attach_audit(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl			regclass := (args ->> 'table')::oid::regclass;
	category	text := args ->> 'category';
	excluded	text[];
BEGIN
	PERFORM mandant.check_primary_key(tbl, 'Audit events name the row they are about by its primary key.',
									  'mandant.enable_audit');
	/* on Citus, a table's events are kept in the shard of mandant.audit_event beside its own */
	PERFORM mandant.check_kept_beside(tbl, 'mandant.audit_event', 'changes', 'or leave it unaudited');
	IF category IS NOT NULL AND category !~ '^[a-z][a-z0-9_.:-]{0,99}$' THEN
		RAISE EXCEPTION 'invalid audit category "%"', category
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A category has 1 to 100 characters: a-z first, then a-z, 0-9, ''_'', ''.'', '':'' or ''-''.',
				  HINT = 'Use a lower-case name such as ''risk'' or ''billing'', or NULL for the schema name.';
	END IF;
	excluded := mandant.check_excluded_columns(tbl, ARRAY(SELECT jsonb_array_elements_text(
		CASE jsonb_typeof(args -> 'excludeColumns') WHEN 'array' THEN args -> 'excludeColumns' ELSE '[]' END)));
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.audit_table AS r (relid, category, exclude_columns, enabled_by)
	VALUES (tbl, category, excluded, caller)
	ON CONFLICT (relid) DO UPDATE SET category = EXCLUDED.category, exclude_columns = EXCLUDED.exclude_columns,
		enabled_at = EXCLUDED.enabled_at, enabled_by = EXCLUDED.enabled_by
	WHERE (r.category, r.exclude_columns) IS DISTINCT FROM (EXCLUDED.category, EXCLUDED.exclude_columns);
	PERFORM mandant.attach_trigger(tbl, 'mandant_audit',
		format('CREATE TRIGGER mandant_audit AFTER INSERT OR DELETE OR UPDATE ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger(%s)',
			   tbl,
			   (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
				FROM unnest(ARRAY[COALESCE(category, '')] || excluded) WITH ORDINALITY u (a, o))));
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.registry_detach_audit(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'mandant_audit');
	DELETE FROM mandant.audit_table r WHERE r.relid = tbl;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.disable_audit(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_audit');
	PERFORM mandant.gate_call('detach_audit', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_audit(regclass) IS
'Stop auditing tbl (its past events stay). The table owner only.';

CREATE OR REPLACE FUNCTION mandant.audit_seal_events(events regclass, seals regclass, previous bigint, horizon bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e			record;
	last_tenant	uuid;
	chain		bytea;
	seq			bigint;
	tenants		uuid[] := '{}';
	seqs		bigint[] := '{}';
	event_ids	bigint[] := '{}';
	chains		bytea[] := '{}';
BEGIN
	FOR e IN EXECUTE format(
		'SELECT a.id, a.tenant_id, a.hash FROM %s a
		 WHERE a.txid >= $1 AND a.txid < $2
		   AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.tenant_id = a.tenant_id AND s.event_id = a.id)
		 ORDER BY a.tenant_id, a.id', events, seals) USING previous, horizon
	LOOP
		IF last_tenant IS DISTINCT FROM e.tenant_id THEN
			EXECUTE format('SELECT s.chain, s.seq FROM %s s WHERE s.tenant_id = $1 ORDER BY s.seq DESC LIMIT 1', seals)
				INTO chain, seq USING e.tenant_id;
			IF seq IS NULL THEN
				chain := ''::bytea;
				seq := 0;
			END IF;
			last_tenant := e.tenant_id;
		END IF;
		chain := sha256(chain || e.hash);
		seq := seq + 1;
		tenants := tenants || e.tenant_id;
		seqs := seqs || seq;
		event_ids := event_ids || e.id;
		chains := chains || chain;
	END LOOP;
	/* one statement for the run, not one planned per event */
	EXECUTE format('INSERT INTO %s (tenant_id, seq, event_id, chain)
					SELECT * FROM unnest($1, $2, $3, $4)', seals)
		USING tenants, seqs, event_ids, chains;
	RETURN cardinality(seqs);
END
$$;

COMMENT ON FUNCTION mandant.audit_seal_events(regclass, regclass, bigint, bigint) IS
'Internal: chain the events of one audit table (or shard) in a window of transaction ids into its seal table (or colocated shard); how many.';

CREATE OR REPLACE FUNCTION mandant.audit_seal_node()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pairs		text[][] := ARRAY[['mandant.audit_event', 'mandant.audit_seal']];
	horizon		bigint;
	previous	bigint;
	sealed		bigint := 0;
BEGIN
	IF mandant.citus_distribution_column('mandant.audit_event') IS NOT NULL THEN
		/* mandant's own writes to the shards it keeps, as Citus's own rebalancer does */
		PERFORM set_config('citus.enable_manual_changes_to_shards', 'on', true);
		/* a run over its own connection must not wait forever on its caller's locks */
		PERFORM set_config('lock_timeout', '30s', true);
		EXECUTE 'SELECT COALESCE(array_agg(ARRAY[pg_catalog.shard_name(''mandant.audit_event'', e.shardid),
												  pg_catalog.shard_name(''mandant.audit_seal'', s.shardid)] ORDER BY e.shardid),
								  ''{}'')
				 FROM pg_catalog.pg_dist_shard e
				 JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = ''mandant.audit_seal''::regclass
					  AND s.shardminvalue = e.shardminvalue AND s.shardmaxvalue = e.shardmaxvalue
				 WHERE e.logicalrelid = ''mandant.audit_event''::regclass
				   AND EXISTS (SELECT FROM pg_catalog.pg_dist_placement p
							   WHERE p.shardid = e.shardid
								 AND p.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g))'
			INTO pairs;
	END IF;
	FOR i IN 1 .. COALESCE(array_length(pairs, 1), 0) LOOP
		EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', pairs[i][2]::regclass);
	END LOOP;
	horizon := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
	SELECT r.horizon INTO previous FROM mandant.audit_seal_run r ORDER BY r.run_id DESC LIMIT 1;
	/* Restored into another cluster, whose transaction ids are lower: look at everything. */
	IF previous IS NULL OR previous > horizon THEN
		previous := 0;
	END IF;
	FOR i IN 1 .. COALESCE(array_length(pairs, 1), 0) LOOP
		sealed := sealed + mandant.audit_seal_events(pairs[i][1]::regclass, pairs[i][2]::regclass, previous, horizon);
	END LOOP;
	INSERT INTO mandant.audit_seal_run (horizon, events) VALUES (horizon, sealed);
	RETURN sealed;
END
$$;

COMMENT ON FUNCTION mandant.audit_seal_node() IS
'Internal: seal on this node the audit events of every transaction that ended since its last run; how many.';

CREATE OR REPLACE FUNCTION mandant.op_audit_seal()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sealed		bigint;
	failure		text;
BEGIN
	IF mandant.citus_distribution_column('mandant.audit_event') IS NULL THEN
		RETURN mandant.audit_seal_node();
	END IF;
	EXECUTE 'SELECT sum(r.result::bigint) FILTER (WHERE r.success), min(r.result) FILTER (WHERE NOT r.success)
			 FROM pg_catalog.run_command_on_all_nodes(''SELECT mandant.audit_seal_node()'') r'
		INTO sealed, failure;
	/* run_command_on_all_nodes skips inactive nodes: none of them may hold events */
	IF failure IS NULL THEN
		EXECUTE 'SELECT string_agg(DISTINCT n.nodename || '':'' || n.nodeport, '', '')
				 FROM pg_catalog.pg_dist_shard s
				 JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
				 JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid
				 WHERE s.logicalrelid = ''mandant.audit_event''::regclass AND NOT n.isactive'
			INTO failure;
		failure := 'inactive nodes hold audit events: ' || failure;
	END IF;
	IF failure IS NOT NULL THEN
		RAISE EXCEPTION 'audit_seal() failed on a node'
			USING ERRCODE = 'connection_failure',
				  DETAIL = failure,
				  HINT = 'The nodes that answered kept their seals; run mandant.audit_seal() again when every node is up.';
	END IF;
	RETURN COALESCE(sealed, 0);
END
$$;

COMMENT ON FUNCTION mandant.op_audit_seal() IS
'Internal: the body of mandant.audit_seal(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.audit_seal()
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('audit_seal');
	RETURN mandant.op_audit_seal();
END
$$;

COMMENT ON FUNCTION mandant.audit_seal() IS
'Chain the events of every transaction that has ended since the last run into mandant.audit_seal, per tenant; returns how many. Does not block writers. mandant_admin only; run it periodically.';

CREATE OR REPLACE FUNCTION mandant.audit_walk_chain(chain_of uuid, after_seq bigint, after_chain bytea,
										 OUT ok boolean, OUT checked bigint, OUT first_bad_id bigint,
										 OUT last_seq bigint, OUT last_event_id bigint, OUT last_chain bytea)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s	record;
	e	mandant.audit_event;
BEGIN
	ok := true;
	checked := 0;
	last_seq := after_seq;
	last_chain := after_chain;
	FOR s IN
		SELECT * FROM mandant.audit_seal a WHERE a.tenant_id = chain_of AND a.seq > after_seq ORDER BY a.seq
	LOOP
		checked := checked + 1;
		SELECT * INTO e FROM mandant.audit_event a WHERE a.tenant_id = chain_of AND a.id = s.event_id;
		IF NOT FOUND OR s.seq <> after_seq + checked
			OR e.hash IS DISTINCT FROM mandant.audit_event_hash(e)
			OR s.chain IS DISTINCT FROM sha256(last_chain || e.hash) THEN
			ok := false;
			first_bad_id := s.event_id;
			RETURN;
		END IF;
		last_seq := s.seq;
		last_event_id := s.event_id;
		last_chain := s.chain;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.audit_walk_chain(uuid, bigint, bytea) IS
'Internal: re-derive a tenant''s seals after a known seal from its chain value; the first that fails, or the last that passed.';

CREATE OR REPLACE FUNCTION mandant.audit_bad_checkpoint(chain_of uuid, latest_only boolean)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c	mandant.audit_checkpoint;
	s	mandant.audit_seal;
	r	mandant.audit_event;
BEGIN
	/* one table at a time: on Citus the records are in the platform's shard, elsewhere than the tenant's */
	FOR c IN
		SELECT * FROM (SELECT * FROM mandant.audit_checkpoint x WHERE x.tenant_id = chain_of
					   ORDER BY x.seq DESC LIMIT CASE WHEN latest_only THEN 1 END) x
		ORDER BY x.seq
	LOOP
		SELECT * INTO s FROM mandant.audit_seal a WHERE a.tenant_id = chain_of AND a.seq = c.seq;
		SELECT * INTO r FROM mandant.audit_event e
		WHERE e.tenant_id = '00000000-0000-0000-0000-000000000000' AND e.id = c.record_id;
		IF s.event_id IS DISTINCT FROM c.event_id OR s.chain IS DISTINCT FROM c.chain
		   OR r.hash IS DISTINCT FROM mandant.audit_event_hash(r)
		   OR r.action IS DISTINCT FROM 'audit.verified' OR r.entity_id IS DISTINCT FROM chain_of::text
		   OR r.changes IS DISTINCT FROM jsonb_build_object('seq', c.seq, 'eventId', c.event_id,
															'chain', encode(c.chain, 'hex'), 'fromSeq', c.from_seq) THEN
			RETURN c.event_id;
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.audit_bad_checkpoint(uuid, boolean) IS
'Internal: the event id of the first checkpoint of a tenant that its seal row or its platform record contradicts, or NULL.';

CREATE OR REPLACE FUNCTION mandant.audit_verify_chain(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	chain_of	constant uuid := COALESCE(tenant, '00000000-0000-0000-0000-000000000000');
	w			record;
	e			mandant.audit_event;
	n			bigint;
	bad			bigint;
BEGIN
	SELECT * INTO w FROM mandant.audit_walk_chain(chain_of, 0, ''::bytea);
	n := w.checked;
	IF NOT w.ok THEN
		RETURN jsonb_build_object('ok', false, 'checked', n, 'firstBadId', w.first_bad_id);
	END IF;

	FOR e IN
		SELECT * FROM mandant.audit_event a
		WHERE a.tenant_id = chain_of
		  AND NOT EXISTS (SELECT 1 FROM mandant.audit_seal x WHERE x.tenant_id = a.tenant_id AND x.event_id = a.id)
		ORDER BY a.id
	LOOP
		n := n + 1;
		IF e.hash IS DISTINCT FROM mandant.audit_event_hash(e) THEN
			RETURN jsonb_build_object('ok', false, 'checked', n, 'firstBadId', e.id);
		END IF;
	END LOOP;

	bad := mandant.audit_bad_checkpoint(chain_of, false);
	RETURN jsonb_build_object('ok', bad IS NULL, 'checked', n, 'firstBadId', bad);
END
$$;

CREATE OR REPLACE FUNCTION mandant.audit_verify(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (r ->> 'ok')::boolean, (r ->> 'checked')::bigint, (r ->> 'firstBadId')::bigint
	FROM mandant.gate_call('audit_verify', tenant, '{}') AS r
$$;

COMMENT ON FUNCTION mandant.audit_verify(uuid) IS
'Recompute the hashes and the chain of a tenant''s audit events (NULL: the platform''s), and check every checkpoint against them: (ok, checked, first_bad_id). The current tenant, or any tenant for mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.audit_verify_from_checkpoint(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	chain_of	constant uuid := COALESCE(tenant, '00000000-0000-0000-0000-000000000000');
	c			mandant.audit_checkpoint;
	w			record;
	bad			bigint;
	payload		jsonb;
	record_id	bigint;
BEGIN
	IF tenant IS NOT NULL THEN
		PERFORM FROM mandant.tenant t WHERE t.id = tenant FOR KEY SHARE;
	END IF;
	SELECT * INTO c FROM mandant.audit_checkpoint x WHERE x.tenant_id = chain_of ORDER BY x.seq DESC LIMIT 1;
	IF NOT FOUND THEN
		c.seq := 0;
		c.chain := ''::bytea;
	ELSE
		bad := mandant.audit_bad_checkpoint(chain_of, true);
		IF bad IS NOT NULL THEN
			RETURN jsonb_build_object('ok', false, 'checked', 0, 'firstBadId', bad,
									  'fromSeq', c.seq, 'toSeq', NULL, 'chain', NULL);
		END IF;
	END IF;

	SELECT * INTO w FROM mandant.audit_walk_chain(chain_of, c.seq, c.chain);
	IF w.ok AND w.last_seq > c.seq THEN
		payload := jsonb_build_object('seq', w.last_seq, 'eventId', w.last_event_id,
									  'chain', encode(w.last_chain, 'hex'), 'fromSeq', c.seq);
		record_id := mandant.audit_log_for(NULL, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
										   'platform', 'audit.verified', 'audit_checkpoint', chain_of::text, payload);
		INSERT INTO mandant.audit_checkpoint (tenant_id, seq, event_id, chain, from_seq, record_id, verified_by)
		VALUES (chain_of, w.last_seq, w.last_event_id, w.last_chain, c.seq, record_id, caller)
		ON CONFLICT (tenant_id, seq) DO NOTHING;
	END IF;
	RETURN jsonb_build_object('ok', w.ok, 'checked', w.checked, 'firstBadId', w.first_bad_id,
							  'fromSeq', c.seq, 'toSeq', w.last_seq, 'chain', encode(w.last_chain, 'hex'));
END
$$;

COMMENT ON FUNCTION mandant.audit_verify_from_checkpoint(uuid, jsonb, text) IS
'Internal: a privileged operation, run by mandant.gate_call() after it checked the caller.';

CREATE OR REPLACE FUNCTION mandant.audit_verify_since_checkpoint(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint, from_seq bigint, to_seq bigint, chain bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (r ->> 'ok')::boolean, (r ->> 'checked')::bigint, (r ->> 'firstBadId')::bigint,
		   (r ->> 'fromSeq')::bigint, (r ->> 'toSeq')::bigint, decode(r ->> 'chain', 'hex')
	FROM mandant.gate_call('audit_verify_since_checkpoint', tenant, '{}') AS r
$$;

COMMENT ON FUNCTION mandant.audit_verify_since_checkpoint(uuid) IS
'Verify a tenant''s audit chain (NULL: the platform''s) from its last checkpoint: re-check the checkpoint, then the seals after it (from_seq+1 .. to_seq; checked of them); when they pass, record to_seq as the next checkpoint (and as a platform event audit.verified). chain is the verified head, to keep elsewhere. Events not sealed yet wait for the next seal run; mandant.audit_verify() checks everything. The current tenant, or any tenant for mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.op_audit_events(tenant uuid, since timestamptz DEFAULT '-infinity',
										entity_type text DEFAULT NULL, entity_id text DEFAULT NULL,
										max_rows integer DEFAULT 1000)
RETURNS SETOF mandant.audit_event
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	/* PL/pgSQL: Citus plans no SQL function's parameters */
	RETURN QUERY
	SELECT a.* FROM mandant.audit_event a
	WHERE a.tenant_id = COALESCE(op_audit_events.tenant, '00000000-0000-0000-0000-000000000000')
	  AND a.occurred_at >= op_audit_events.since
	  AND (op_audit_events.entity_type IS NULL OR a.entity_type = op_audit_events.entity_type)
	  AND (op_audit_events.entity_id IS NULL OR a.entity_id = op_audit_events.entity_id)
	ORDER BY a.id DESC
	LIMIT LEAST(GREATEST(op_audit_events.max_rows, 0), 10000);
END
$$;

COMMENT ON FUNCTION mandant.op_audit_events(uuid, timestamptz, text, text, integer) IS
'Internal: the body of mandant.audit_events(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.audit_events(tenant uuid, since timestamptz DEFAULT '-infinity',
									 entity_type text DEFAULT NULL, entity_id text DEFAULT NULL,
									 max_rows integer DEFAULT 1000)
RETURNS SETOF mandant.audit_event
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM mandant.gate_check('audit_events');
	RETURN QUERY SELECT * FROM mandant.op_audit_events(tenant, since, entity_type, entity_id, max_rows);
END
$$;

COMMENT ON FUNCTION mandant.audit_events(uuid, timestamptz, text, text, integer) IS
'A tenant''s audit events (NULL: platform events), newest first, at most 10000. mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.audit_log_erasure(tenant uuid, actor uuid, request_id text, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_audit_log_erasure'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log_erasure(uuid, uuid, text, jsonb) IS
'Internal: write the platform''s record of a tenant''s deletion (platform, tenant.deleted); on Citus as the role that erased the tenant''s shards.';

CREATE OR REPLACE FUNCTION mandant.check_guard(machine text, owner regrole, guard regprocedure)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_guard'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_guard(text, regrole, regprocedure) IS
'Internal to add_transition: raise unless guard may run as owner for machine (a permanent function (jsonb, jsonb) returning boolean, owned by a role with owner''s privileges, executable by owner).';

CREATE OR REPLACE FUNCTION mandant.create_state_machine(name text, initial_states text[],
											 frozen_states text[] DEFAULT '{}',
											 states text[] DEFAULT NULL,
											 transition_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_state_machine', NULL,
		jsonb_build_object('machine', name, 'initialStates', to_jsonb(initial_states),
						   'frozenStates', to_jsonb(frozen_states), 'states', to_jsonb(states),
						   'transitionColumns', to_jsonb(transition_columns)));
$$;

COMMENT ON FUNCTION mandant.create_state_machine(text, text[], text[], text[], text[]) IS
'Declare a state machine: its initial and frozen states, optionally further states, and the columns a transition out of a frozen state may change. The caller owns it.';

CREATE OR REPLACE FUNCTION mandant.text_array(value jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE jsonb_typeof(value)
		   WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(value))
		   WHEN 'null' THEN NULL
		   ELSE ARRAY[value #>> '{}'] END
$$;

COMMENT ON FUNCTION mandant.text_array(jsonb) IS
'Internal: the text[] of a JSON array (of the gate''s arguments).';

CREATE OR REPLACE FUNCTION mandant.machine_create(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_create>>
DECLARE
	name				text := args ->> 'machine';
	initial_states		text[] := mandant.text_array(args -> 'initialStates');
	frozen_states		text[] := COALESCE(mandant.text_array(args -> 'frozenStates'), '{}');
	transition_columns	text[] := mandant.text_array(args -> 'transitionColumns');
	all_states			text[];
	owner				regrole := (SELECT r.oid FROM pg_roles r WHERE r.rolname = caller)::regrole;
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
	all_states := ARRAY(SELECT DISTINCT s FROM unnest(COALESCE(mandant.text_array(args -> 'states'), '{}')
													  || initial_states || frozen_states) s ORDER BY s);
	PERFORM mandant.check_state_names(initial_states, 'initial_states');
	PERFORM mandant.check_state_names(frozen_states, 'frozen_states');
	PERFORM mandant.check_state_names(all_states, 'states');
	IF EXISTS (SELECT 1 FROM unnest(COALESCE(transition_columns, '{}')) c WHERE c IS NULL OR c = '') THEN
		RAISE EXCEPTION 'transition columns must be column names'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('transition_columns is %L.', transition_columns),
				  HINT = 'Name the columns a transition out of a frozen state may set, e.g. ''{approved_by,approved_at}''.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine_create.name) THEN
		RAISE EXCEPTION 'state machine "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('mandant.state_machine has a row named %L.', name),
				  HINT = 'Change it with mandant.add_state() and mandant.add_transition(), or pick another name.';
	END IF;

	INSERT INTO mandant.state_machine (name, transition_columns, owner)
	VALUES (name, COALESCE(transition_columns, '{}'), owner);
	INSERT INTO mandant.state_machine_state (machine, state, initial, frozen)
	SELECT name, s, s = ANY (initial_states), s = ANY (frozen_states)
	FROM unnest(all_states) s;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.add_state(machine text, state text, initial boolean DEFAULT false,
								  frozen boolean DEFAULT false)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('add_state', NULL,
		jsonb_build_object('machine', machine, 'state', state, 'initial', initial, 'frozen', frozen));
$$;

COMMENT ON FUNCTION mandant.add_state(text, text, boolean, boolean) IS
'Declare one more state of a machine. Its owner or mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.machine_add_state(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_add_state>>
DECLARE
	machine	text := args ->> 'machine';
	state	text := args ->> 'state';
BEGIN
	PERFORM mandant.check_state_names(ARRAY[state], 'state');
	IF EXISTS (SELECT 1 FROM mandant.state_machine_state x
			   WHERE x.machine = machine_add_state.machine AND x.state = machine_add_state.state) THEN
		RAISE EXCEPTION 'state machine "%" already has state "%"', machine, state
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('mandant.state_machine_state has %L for %L.', state, machine),
				  HINT = 'Pick another name; states are never redefined in place.';
	END IF;
	INSERT INTO mandant.state_machine_state (machine, state, initial, frozen)
	VALUES (machine, state, COALESCE((args ->> 'initial')::boolean, false),
			COALESCE((args ->> 'frozen')::boolean, false));
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.add_transition(machine text, from_state text, to_state text,
									   required_scope text DEFAULT NULL,
									   guard regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('add_transition', NULL,
		jsonb_build_object('machine', machine, 'from', from_state, 'to', to_state,
						   'requiredScope', required_scope, 'guard', guard::oid));
$$;

COMMENT ON FUNCTION mandant.add_transition(text, text, text, text, regprocedure) IS
'Declare a transition; the caller must then hold required_scope, and guard(old jsonb, new jsonb) must return true. The guard runs as the machine''s owner, who must be allowed to execute it, and must be owned by a role with the owner''s privileges. Its owner or mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.machine_add_transition(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_add_transition>>
DECLARE
	machine			text := args ->> 'machine';
	from_state		text := args ->> 'from';
	to_state		text := args ->> 'to';
	required_scope	text := args ->> 'requiredScope';
	guard			regprocedure := (args ->> 'guard')::oid::regprocedure;
	owner			regrole := (SELECT m.owner FROM mandant.state_machine m WHERE m.name = machine);
BEGIN
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
	IF guard IS NOT NULL THEN
		PERFORM mandant.check_guard(machine, owner, guard);
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.state_transition t
			   WHERE t.machine = machine_add_transition.machine AND t.from_state = machine_add_transition.from_state
				 AND t.to_state = machine_add_transition.to_state) THEN
		RAISE EXCEPTION 'transition from "%" to "%" already exists', from_state, to_state
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('State machine %L already declares it.', machine),
				  HINT = 'Remove it with mandant.remove_transition() first to change its scope or guard.';
	END IF;
	INSERT INTO mandant.state_transition (machine, from_state, to_state, required_scope, guard)
	VALUES (machine, from_state, to_state, required_scope, guard);
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.remove_transition(machine text, from_state text, to_state text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('remove_transition', NULL,
		jsonb_build_object('machine', machine, 'from', from_state, 'to', to_state));
$$;

COMMENT ON FUNCTION mandant.remove_transition(text, text, text) IS
'Remove a declared transition; every session obeys the change from its next statement. Its owner or mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.machine_remove_transition(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_remove_transition>>
DECLARE
	machine		text := args ->> 'machine';
	from_state	text := args ->> 'from';
	to_state	text := args ->> 'to';
BEGIN
	DELETE FROM mandant.state_transition t
	WHERE t.machine = machine_remove_transition.machine AND t.from_state = machine_remove_transition.from_state
	  AND t.to_state = machine_remove_transition.to_state;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'transition from "%" to "%" does not exist', from_state, to_state
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('State machine %L does not declare it.', machine),
				  HINT = format('See SELECT * FROM mandant.state_transition WHERE machine = %L.', machine);
	END IF;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.drop_state_machine(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('drop_state_machine', NULL, jsonb_build_object('machine', name));
$$;

COMMENT ON FUNCTION mandant.drop_state_machine(text) IS
'Drop an unused state machine with its states and transitions. Its owner or mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.machine_drop(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_drop>>
DECLARE
	name	text := args ->> 'machine';
	used_by	text;
BEGIN
	SELECT string_agg(r.relid::text, ', ' ORDER BY r.relid::text) INTO used_by
	FROM mandant.state_machine_table r WHERE r.machine = machine_drop.name;
	IF used_by IS NOT NULL THEN
		RAISE EXCEPTION 'state machine "%" is in use', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Tables bound to it: %s.', used_by),
				  HINT = 'Call mandant.disable_state_machine() on them first.';
	END IF;
	DELETE FROM mandant.state_machine m WHERE m.name = machine_drop.name;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.enable_state_machine(tbl regclass, machine text, "column" name DEFAULT 'status',
											 log_transitions boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stray text;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_state_machine');
	PERFORM mandant.check_state_column(tbl, machine, "column");
	/* on Citus, a table's transitions are kept in the log's shard beside its own */
	IF COALESCE(log_transitions, true) THEN
		PERFORM mandant.check_kept_beside(tbl, 'mandant.state_transition_log', 'transitions',
			format('or bind it with mandant.enable_state_machine(%L, %L, %L, log_transitions => false)', tbl::text, machine, "column"));
	END IF;
	/* the states as a value, so that the query is the same on a distributed table */
	EXECUTE format('SELECT %I FROM %s t WHERE %I IS NOT NULL AND %I <> ALL ($1) LIMIT 1',
				   "column", tbl, "column", "column")
		INTO stray USING ARRAY(SELECT x.state FROM mandant.state_machine_state x WHERE x.machine = enable_state_machine.machine);
	IF stray IS NOT NULL THEN
		RAISE EXCEPTION 'table % has rows in state "%", which state machine "%" does not declare', tbl, stray, machine
			USING ERRCODE = 'check_violation',
				  DETAIL = format('Column %I holds %L.', "column", stray),
				  HINT = 'Declare the state with mandant.add_state(), or fix the rows first.';
	END IF;
	PERFORM mandant.gate_call('bind_state_machine', NULL,
		jsonb_build_object('table', tbl::oid, 'machine', machine, 'column', "column",
						   'log', COALESCE(log_transitions, true)));
END
$$;

COMMENT ON FUNCTION mandant.enable_state_machine(regclass, text, name, boolean) IS
'Bind a table to a state machine through a text column: a C BEFORE INSERT OR UPDATE trigger enforces initial states, declared transitions, scopes, guards and frozen states (MD010). Transitions are recorded by the audit trail when the table is audited, else in mandant.state_transition_log unless log_transitions is false. Idempotent; the table owner, who must also own the machine (or be a member of mandant_admin).';

CREATE OR REPLACE FUNCTION mandant.check_state_column(tbl regclass, machine text, "column" name)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coltype regtype;
BEGIN
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
END
$$;

COMMENT ON FUNCTION mandant.check_state_column(regclass, text, name) IS
'Internal: raise unless the machine exists and the column is a text or varchar column of the table.';

CREATE OR REPLACE FUNCTION mandant.registry_bind_state_machine(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl		regclass := (args ->> 'table')::oid::regclass;
	machine	text := args ->> 'machine';
	col		name := args ->> 'column';
BEGIN
	PERFORM mandant.check_state_column(tbl, machine, col);
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.state_machine_table AS r (relid, machine, state_column)
	VALUES (tbl, machine, col)
	ON CONFLICT (relid) DO UPDATE SET machine = EXCLUDED.machine, state_column = EXCLUDED.state_column
	WHERE (r.machine, r.state_column) IS DISTINCT FROM (EXCLUDED.machine, EXCLUDED.state_column);
	PERFORM mandant.attach_trigger(tbl, 'zz_mandant_state_machine',
		format('CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger(%L, %L, %L)',
			   tbl, machine, col,
			   CASE WHEN COALESCE((args ->> 'log')::boolean, true) THEN 'log' ELSE 'nolog' END));
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.disable_state_machine(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_state_machine');
	PERFORM mandant.gate_call('unbind_state_machine', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_state_machine(regclass) IS
'Unbind a table from its state machine. The table owner only.';

CREATE OR REPLACE FUNCTION mandant.registry_unbind_state_machine(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'zz_mandant_state_machine');
	DELETE FROM mandant.state_machine_table r WHERE r.relid = tbl;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.emit_erasure(tenant uuid, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_emit_erasure'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.emit_erasure(uuid, jsonb) IS
'Internal: announce a tenant''s deletion (platform.tenant.deleted); on Citus as the role that erased its shards, for mandant.delete_tenant().';

CREATE OR REPLACE FUNCTION mandant.outbox_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_outbox_guard'
LANGUAGE C;

COMMENT ON FUNCTION mandant.outbox_guard() IS
'Internal: on Citus, the BEFORE INSERT trigger of mandant.outbox''s shards: numbers events routed to their tenant''s shard and holds a role that is no superuser to what mandant.emit() writes in its context (attached by mandant.citus_setup()).';

CREATE OR REPLACE FUNCTION mandant.enable_outbox(tbl regclass, domain text, entity text DEFAULT NULL,
									  exclude_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_outbox');
	PERFORM mandant.gate_call('attach_outbox', NULL,
							  jsonb_build_object('table', tbl::oid, 'domain', domain, 'entity', entity,
												 'excludeColumns', to_jsonb(exclude_columns)));
END
$$;

COMMENT ON FUNCTION mandant.enable_outbox(regclass, text, text, text[]) IS
'Publish every insert, update and delete of tbl as {domain}.{entity}.created|updated|deleted events (payload: the row with camelCase keys, without exclude_columns). entity defaults to the table name; the domain platform is mandant''s own. Idempotent; the table owner only.';

CREATE OR REPLACE FUNCTION mandant.registry_attach_outbox(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl			regclass := (args ->> 'table')::oid::regclass;
	domain		text := args ->> 'domain';
	entity		text := COALESCE(args ->> 'entity', (SELECT c.relname FROM pg_class c WHERE c.oid = tbl));
	excluded	text[];
BEGIN
	IF domain IS NULL OR domain !~ '^[a-z][a-z0-9_]{0,62}$' OR entity !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid event domain or entity: %.%', COALESCE(domain, 'NULL'), entity
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Topics are domain.entity.action; domain and entity are lower-case words (a-z first, then a-z, 0-9, ''_'').',
				  HINT = 'Pass e.g. mandant.enable_outbox(''app.site'', ''risk'', ''site'').';
	END IF;
	IF domain = 'platform' THEN
		RAISE EXCEPTION 'event domain "platform" is reserved'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'platform.* events come from mandant and trusted backends only.',
				  HINT = 'Name the domain after your application, e.g. ''risk''.';
	END IF;
	PERFORM mandant.check_primary_key(tbl, 'Outbox events name their aggregate by the primary key, and are delivered in order per aggregate.',
									  'mandant.enable_outbox');
	/* on Citus, a table's events are kept in the shard of mandant.outbox beside its own */
	PERFORM mandant.check_kept_beside(tbl, 'mandant.outbox', 'events', 'or publish no events for it');
	excluded := mandant.check_excluded_columns(tbl, mandant.text_array(args -> 'excludeColumns'));
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.outbox_table AS r (relid, domain, entity, exclude_columns, enabled_by)
	VALUES (tbl, domain, entity, excluded, caller)
	ON CONFLICT (relid) DO UPDATE SET domain = EXCLUDED.domain, entity = EXCLUDED.entity,
		exclude_columns = EXCLUDED.exclude_columns, enabled_at = EXCLUDED.enabled_at, enabled_by = EXCLUDED.enabled_by
	WHERE (r.domain, r.entity, r.exclude_columns) IS DISTINCT FROM (EXCLUDED.domain, EXCLUDED.entity, EXCLUDED.exclude_columns);
	PERFORM mandant.attach_trigger(tbl, 'mandant_outbox',
		format('CREATE TRIGGER mandant_outbox AFTER INSERT OR DELETE OR UPDATE ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger(%s)',
			   tbl,
			   (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
				FROM unnest(ARRAY[domain, entity] || excluded) WITH ORDINALITY u (a, o))));
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.disable_outbox(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_outbox');
	PERFORM mandant.gate_call('detach_outbox', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_outbox(regclass) IS
'Stop publishing events for tbl (events already written stay). The table owner only.';

CREATE OR REPLACE FUNCTION mandant.registry_detach_outbox(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'mandant_outbox');
	DELETE FROM mandant.outbox_table r WHERE r.relid = tbl;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.op_outbox_claim(consumer text, max integer DEFAULT 100,
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
	picked		bigint[];
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

	IF mandant.citus_distribution_column('mandant.outbox') IS NOT NULL THEN
		/*
		 * Citus locks no rows for a query over many shards (FOR UPDATE):
		 * the candidates are read without locks, and the updates take each
		 * one only if it is still claimable once its row is locked, so no
		 * two consumers lease one event; a second consumer waits for the
		 * first one's rows instead of skipping them.  The oldest come
		 * first by time: ids carry the node that numbered them.  The
		 * envelope is built here, as Citus evaluates no stable function of
		 * a column on the shards of an UPDATE.
		 */
		SELECT array_agg(c.id) INTO picked FROM (
			SELECT c.id FROM mandant.outbox_claimable c ORDER BY c.created_at, c.id LIMIT max) c;
		IF picked IS NULL THEN
			RETURN;
		END IF;
		UPDATE mandant.outbox o
		SET dead_at = now(), locked_until = NULL,
			last_error = 'the lease of ' || o.locked_by || ' expired after attempt ' || o.attempts::text
		WHERE o.id = ANY (picked) AND o.attempts >= max_attempts
		  AND o.published_at IS NULL AND o.dead_at IS NULL
		  AND (o.locked_until IS NULL OR o.locked_until <= now());
		RETURN QUERY
		WITH leased AS (
			UPDATE mandant.outbox o
			SET locked_until = now() + lease, locked_by = consumer, attempts = o.attempts + 1
			WHERE o.id = ANY (picked) AND o.attempts < max_attempts
			  AND o.published_at IS NULL AND o.dead_at IS NULL AND o.available_at <= now()
			  AND (o.locked_until IS NULL OR o.locked_until <= now())
			RETURNING o.id, o.event_id, o.topic, o.tenant_id, o.aggregate_id, o.attempts, o.created_at,
					  o.payload, o.headers
		)
		SELECT l.id, l.event_id, l.topic, l.tenant_id, l.aggregate_id, l.attempts,
			   jsonb_build_object('eventId', l.event_id, 'type', l.topic, 'tenantId', l.tenant_id,
								  'timestamp', to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
								  'payload', l.payload),
			   l.headers
		FROM leased l;
		RETURN;
	END IF;

	RETURN QUERY
	WITH candidate AS (
		SELECT c.id FROM mandant.outbox_claimable c
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

COMMENT ON FUNCTION mandant.op_outbox_claim(text, integer, interval) IS
'Internal: the body of mandant.outbox_claim(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_claim(consumer text, max integer DEFAULT 100,
									 lease interval DEFAULT '30 seconds')
RETURNS TABLE (id bigint, event_id uuid, topic text, tenant_id uuid, aggregate_id text,
			   attempts integer, envelope jsonb, headers jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_claim');
	RETURN QUERY SELECT * FROM mandant.op_outbox_claim(consumer, max, lease);
END
$$;

COMMENT ON FUNCTION mandant.outbox_claim(text, integer, interval) IS
'Lease up to max pending events (oldest first, FOR UPDATE SKIP LOCKED, never past an older unpublished event of the same aggregate) to consumer for lease. Returns each with its envelope {eventId, type, tenantId, timestamp, payload}. mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_outbox_ack(ids bigint[])
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acked	bigint;
BEGIN
	UPDATE mandant.outbox o
	SET published_at = now(), locked_until = NULL
	WHERE o.id = ANY (ids) AND o.published_at IS NULL AND o.dead_at IS NULL
	  AND o.locked_until IS NOT NULL;
	GET DIAGNOSTICS acked = ROW_COUNT;
	RETURN acked;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_ack(bigint[]) IS
'Internal: the body of mandant.outbox_ack(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_ack(ids bigint[])
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_ack');
	RETURN mandant.op_outbox_ack(ids);
END
$$;

COMMENT ON FUNCTION mandant.outbox_ack(bigint[]) IS
'Mark leased events published; returns how many were (unknown, unleased or already published ids are ignored). mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_outbox_nack(id bigint, error text, consumer text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e			mandant.outbox;
	max_attempts constant integer := current_setting('mandant.outbox_max_attempts')::integer;
	retry_at	timestamptz;
	dead		timestamptz;
BEGIN
	/*
	 * Read without a lock (Citus locks no row it reads over many shards);
	 * the UPDATE below takes the row only if its lease is still the one
	 * read here.
	 */
	SELECT * INTO e FROM mandant.outbox o WHERE o.id = op_outbox_nack.id;
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
	/* computed here: Citus sends the shards no stable function in a CASE */
	retry_at := now() + make_interval(secs => LEAST(60, 2 ^ LEAST(e.attempts - 1, 6)));
	IF e.attempts >= max_attempts THEN
		dead := now();
	END IF;
	UPDATE mandant.outbox o
	SET locked_until = NULL, last_error = left(COALESCE(error, '(no error given)'), 2000),
		available_at = retry_at, dead_at = dead
	WHERE o.id = op_outbox_nack.id AND o.attempts = e.attempts AND o.locked_until = e.locked_until
	  AND o.locked_until > now() AND o.published_at IS NULL AND o.dead_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % is not leased%', id, COALESCE(' by ' || consumer, '')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('The lease of %s on event %s ended while it was rejected.', e.locked_by, id),
				  HINT = 'Only the consumer holding a lease can reject the event; claim it again.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_nack(bigint, text, text) IS
'Internal: the body of mandant.outbox_nack(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_nack(id bigint, error text, consumer text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_nack');
	PERFORM mandant.op_outbox_nack(id, error, consumer);
END
$$;

COMMENT ON FUNCTION mandant.outbox_nack(bigint, text, text) IS
'Reject a leased event: it is retried after 1, 2, 4 ... 60 seconds, and dead after mandant.outbox_max_attempts attempts. With consumer, the lease must be that consumer''s. mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_outbox_replay(id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE mandant.outbox o
	SET published_at = NULL, dead_at = NULL, locked_until = NULL, locked_by = NULL,
		attempts = 0, available_at = now()
	WHERE o.id = op_outbox_replay.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % does not exist', id
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('No row of mandant.outbox has id %s (published events may have been purged).', id),
				  HINT = 'Look the event up in mandant.outbox first.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_replay(bigint) IS
'Internal: the body of mandant.outbox_replay(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_replay(id bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_replay');
	PERFORM mandant.op_outbox_replay(id);
END
$$;

COMMENT ON FUNCTION mandant.outbox_replay(bigint) IS
'Deliver an event again (a dead one, or a published one): pending now, attempts reset. mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_outbox_skip(id bigint, reason text)
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
		/* no format(): Citus evaluates no stable function of a column on the shards of an UPDATE */
		last_error = 'skipped by ' || session_user::text || ': ' || reason || ' (last error: ' ||
			COALESCE(o.last_error, '') || ')'
	WHERE o.id = op_outbox_skip.id AND o.dead_at IS NOT NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % is not dead', id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Only dead events can be skipped; event %s is missing or still deliverable.', id),
				  HINT = 'Dead events have dead_at set; see mandant.outbox_stats().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_skip(bigint, text) IS
'Internal: the body of mandant.outbox_skip(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_skip(id bigint, reason text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_skip');
	PERFORM mandant.op_outbox_skip(id, reason);
END
$$;

COMMENT ON FUNCTION mandant.outbox_skip(bigint, text) IS
'Give up a dead event (it counts as published, with the reason recorded), releasing the later events of its aggregate. mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_outbox_purge(older_than interval)
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

COMMENT ON FUNCTION mandant.op_outbox_purge(interval) IS
'Internal: the body of mandant.outbox_purge(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_purge(older_than interval)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_purge');
	RETURN mandant.op_outbox_purge(older_than);
END
$$;

COMMENT ON FUNCTION mandant.outbox_purge(interval) IS
'Delete events published longer ago than older_than; returns how many. mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_outbox_stats()
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

COMMENT ON FUNCTION mandant.op_outbox_stats() IS
'Internal: the body of mandant.outbox_stats(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.outbox_stats()
RETURNS TABLE (pending bigint, leased bigint, dead bigint, oldest_pending_age interval)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_stats');
	RETURN QUERY SELECT * FROM mandant.op_outbox_stats();
END
$$;

COMMENT ON FUNCTION mandant.outbox_stats() IS
'Unpublished events: pending (including backing off), leased, dead, and the age of the oldest one not dead. mandant_service and mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.config_apply(tenant uuid, service text, key text, value jsonb,
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
	PERFORM pg_notify('mandant_config', rev::text);
	RETURN version;
END
$$;

COMMENT ON FUNCTION mandant.config_apply(uuid, text, text, jsonb, text, bigint, text) IS
'Internal: applies a configuration change for mandant.config_write(), which checks the caller first.';

CREATE OR REPLACE FUNCTION mandant.refresh(refresh_token text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
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

CREATE OR REPLACE FUNCTION mandant.logout(access_token text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
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

CREATE OR REPLACE FUNCTION mandant.identity_revoke_user_tokens(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	IF account = mandant.current_user_id() THEN
		PERFORM mandant.revoke_tokens_of(account, 'signed out everywhere');
		PERFORM mandant.audit_log_for(mandant.current_tenant(), account, NULLIF(current_setting('app.request_id'), ''),
									  'identity', 'tokens.revoked', 'user', account::text, '{}');
	ELSE
		PERFORM mandant.revoke_tokens_of(account, 'revoked');
		PERFORM mandant.record_event(NULL, 'identity', 'tokens.revoked', 'user', account::text,
									 jsonb_build_object('by', caller));
	END IF;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.revoke_user_tokens(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('revoke_user_tokens', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.revoke_user_tokens(uuid) IS
'Revoke every token of a user: the signed-in user for themselves, trusted backends and mandant_admin for anyone.';

CREATE OR REPLACE FUNCTION mandant.purge_tokens()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('purge_tokens', NULL, '{}'); $$;

COMMENT ON FUNCTION mandant.purge_tokens() IS
'Delete expired denylist entries, refresh tokens and empty sessions; schedule it daily.';

CREATE OR REPLACE FUNCTION mandant.login_failed(keys text[], email text, account uuid, tenant uuid,
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
	IF action = 'service_token.failed' THEN
		RAISE EXCEPTION 'invalid client credentials'
			USING ERRCODE = 'MD050',
				  DETAIL = 'The client id or the client secret is wrong, or the service account is disabled.',
				  HINT = 'Check both and try again; repeated failures lock further attempts for 15 minutes.';
	END IF;
	RAISE EXCEPTION 'invalid credentials'
		USING ERRCODE = 'MD050',
			  DETAIL = 'The e-mail address or the password is wrong, or the account is disabled.',
			  HINT = 'Check both and try again; repeated failures lock further attempts for 15 minutes.';
END
$$;

COMMENT ON FUNCTION mandant.login_failed(text[], text, uuid, uuid, inet, text, text, text) IS
'Internal: count and record a failed login (surviving the rollback), then raise MD050 or MD054.';

CREATE OR REPLACE FUNCTION mandant.login_address(client_ip inet)
RETURNS inet
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN client_ip IS NOT NULL AND (mandant.gate_caller_member_of('mandant_gateway')
												OR mandant.gate_caller_member_of('mandant_service')
												OR mandant.gate_caller_member_of('mandant_admin'))
				THEN client_ip ELSE inet_client_addr() END
$$;

COMMENT ON FUNCTION mandant.login_address(inet) IS
'Internal: where a login attempt comes from: client_ip when a trusted front end passed it, else the connection''s address.';

CREATE OR REPLACE FUNCTION mandant.login_keys(account text, address inet)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY['pair:' || account || '|' || a.origin, 'ip:' || a.origin, 'account:' || account]
	FROM (SELECT CASE WHEN family(address) = 6 THEN host(network(set_masklen(address, 64))) || '/64'
					  ELSE host(address) END AS origin) a
$$;

COMMENT ON FUNCTION mandant.login_keys(text, inet) IS
'Internal: the rate limit keys of a login attempt: (account, address), address (IPv6: its /64), account; NULL address keys when the address is unknown.';

CREATE OR REPLACE FUNCTION mandant.login_guard_keys(keys text[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.login_guard(keys[1:1], current_setting('mandant.login_lockout_pair')::integer, '15 minutes');
	SELECT mandant.login_guard(keys[2:2], current_setting('mandant.login_lockout_address')::integer, '15 minutes');
	SELECT mandant.login_guard(keys[3:3], current_setting('mandant.login_lockout_account')::integer, '15 minutes');
$$;

COMMENT ON FUNCTION mandant.login_guard_keys(text[]) IS
'Internal: MD040 after mandant.login_lockout_pair (10) failures of an account from one address, mandant.login_lockout_address (50) from one address or mandant.login_lockout_account (100) of an account, within 15 minutes.';

CREATE OR REPLACE FUNCTION mandant.login(email text, password text, totp_code text DEFAULT NULL,
							  client_ip inet DEFAULT NULL, tenant_slug text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('login', NULL,
		jsonb_build_object('email', email, 'password', password, 'totpCode', totp_code,
						   'clientIp', client_ip, 'tenantSlug', tenant_slug))
$$;

COMMENT ON FUNCTION mandant.login(text, text, text, inet, text) IS
'Log in: {accessToken, refreshToken, tokenType, expiresIn, tenant, role, user, tenants}. MD050 for a wrong e-mail, password or a disabled account alike (one bcrypt always runs); MD054 when the one-time code is missing or wrong; MD040 after 10 failures of the account from one address, 50 from one address or 100 of the account within 15 minutes. client_ip counts only when a trusted front end (mandant_gateway, mandant_service, mandant_admin) passes it. The tenant: tenant_slug, else the first by name.';

CREATE OR REPLACE FUNCTION mandant.identity_login(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	email		text := args ->> 'email';
	password	text := args ->> 'password';
	totp_code	text := args ->> 'totpCode';
	client_ip	inet := (args ->> 'clientIp')::inet;
	tenant_slug	text := args ->> 'tenantSlug';
	address		text := lower(btrim(email));
	keys		text[];
	account		mandant.users;
	matches		boolean;
	step		bigint;
	chosen		uuid;
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
	client_ip := mandant.login_address(client_ip);
	keys := mandant.login_keys(address, client_ip);
	PERFORM mandant.login_guard_keys(keys);

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
		SELECT t.id INTO chosen
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.slug = lower(tenant_slug);
		IF chosen IS NULL THEN
			RAISE EXCEPTION 'not a member of tenant "%"', tenant_slug
				USING ERRCODE = 'MD055',
					  DETAIL = 'The account has no membership in a tenant of that slug, or no tenant has it.',
					  HINT = 'Check the slug for typos, or log in without tenant_slug: the answer lists the tenants of the account.';
		END IF;
	ELSE
		SELECT t.id INTO chosen
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.status IN ('active', 'pending')
		ORDER BY t.name, t.slug LIMIT 1;
	END IF;
	IF chosen IS NOT NULL THEN
		PERFORM mandant.check_tenant_enterable(chosen);
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
	PERFORM mandant.login_reset(keys[1], '15 minutes');
	RETURN answer;
END
$$;

CREATE OR REPLACE FUNCTION mandant.change_password(old_password text, new_password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
	keys	text[];
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	keys := mandant.login_keys(lower(account.email), mandant.login_address(NULL));
	PERFORM mandant.login_guard_keys(keys);
	IF NOT mandant.password_matches(old_password, account.password_hash) THEN
		PERFORM mandant.login_failed(keys, lower(account.email),
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

CREATE OR REPLACE FUNCTION mandant.totp_attempt(me uuid, sealed bytea, code text, after_step bigint,
									 detail text, hint text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keys	text[] := ARRAY['mfa:' || me];
	step	bigint;
BEGIN
	PERFORM mandant.login_guard(keys, current_setting('mandant.login_lockout_pair')::integer, '15 minutes');
	step := mandant.totp_match(sealed, me, btrim(code), after_step);
	IF step IS NULL THEN
		PERFORM mandant.login_failed_count(keys, '15 minutes');
		RAISE EXCEPTION 'wrong one-time code'
			USING ERRCODE = 'MD054', DETAIL = detail, HINT = hint;
	END IF;
	RETURN step;
END
$$;

COMMENT ON FUNCTION mandant.totp_attempt(uuid, bytea, text, bigint, text, text) IS
'Internal: the step a signed-in user''s one-time code matches, else MD054; wrong codes are counted and locked out like failed logins (MD040).';

CREATE OR REPLACE FUNCTION mandant.identity_totp_enroll(tenant uuid, args jsonb, caller text)
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

CREATE OR REPLACE FUNCTION mandant.totp_enroll()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('totp_enroll', NULL, '{}'); $$;

COMMENT ON FUNCTION mandant.totp_enroll() IS
'Start two-factor authentication for the signed-in user: a new secret (base32) and its otpauth:// URI; confirm with mandant.totp_confirm(code).';

CREATE OR REPLACE FUNCTION mandant.identity_totp_confirm(tenant uuid, args jsonb, caller text)
RETURNS jsonb
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
	step := mandant.totp_attempt(me, account.totp_secret, args ->> 'code', NULL,
		'The code does not match the enrolled secret (the current 30-second step, or one either side).',
		'Check the device''s clock and enter the current code.');
	UPDATE mandant.users u SET totp_state = 'on', totp_last_step = step, updated_at = now() WHERE u.id = me;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'mfa.enabled', 'user', me::text, '{}');
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.totp_confirm(code text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('totp_confirm', NULL, jsonb_build_object('code', code)); $$;

COMMENT ON FUNCTION mandant.totp_confirm(text) IS
'Turn two-factor authentication on with a code of the enrolled secret.';

CREATE OR REPLACE FUNCTION mandant.identity_totp_disable(tenant uuid, args jsonb, caller text)
RETURNS jsonb
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
	PERFORM mandant.totp_attempt(me, account.totp_secret, args ->> 'code', account.totp_last_step,
		'Disabling needs a current code that was not used before.',
		'Enter the next code of the authenticator app.');
	UPDATE mandant.users u SET totp_state = 'off', totp_secret = NULL, totp_last_step = NULL, updated_at = now()
	WHERE u.id = me;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'mfa.disabled', 'user', me::text, '{}');
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.totp_disable(code text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('totp_disable', NULL, jsonb_build_object('code', code)); $$;

COMMENT ON FUNCTION mandant.totp_disable(text) IS
'Turn two-factor authentication off; needs a current, unused code (wrong codes count like failed logins: MD040 after 10 within 15 minutes).';

CREATE OR REPLACE FUNCTION mandant.service_token(client_id text, client_secret text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	account	mandant.service_account;
	keys	text[] := mandant.login_keys('client:' || COALESCE(left(client_id, 100), ''), mandant.login_address(NULL));
	ttl		integer := mandant.ttl_seconds('mandant.access_token_ttl');
	issued	bigint := floor(extract(epoch FROM clock_timestamp()));
	slug	text;
BEGIN
	PERFORM mandant.login_guard_keys(keys);
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

CREATE OR REPLACE FUNCTION mandant.create_service_account(name text, scopes text[], tenant uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_service_account', tenant,
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes)));
$$;

COMMENT ON FUNCTION mandant.create_service_account(text, text[], uuid) IS
'Create a service account: {id, clientId, clientSecret, scopes}. The secret is shown once (stored as SHA-256). Tenant accounts by the tenant''s administrators; platform accounts (scope internal allowed) by mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.disable_service_account(id uuid, tenant uuid DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('disable_service_account', tenant, jsonb_build_object('id', id)); $$;

COMMENT ON FUNCTION mandant.disable_service_account(uuid, uuid) IS
'Disable a service account; its tokens stop working at once.';

CREATE OR REPLACE FUNCTION mandant.identity_create_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	address	text := mandant.check_email(args ->> 'email');
	name	text := btrim(args ->> 'displayName');
	new_id	uuid;
	vouched	boolean := mandant.gate_caller_member_of('mandant_admin')
					   OR mandant.gate_caller_member_of('mandant_service');
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
	INSERT INTO mandant.users (email, display_name, password_hash, email_confirmed_at)
	VALUES (address, name, mandant.password_hash(args ->> 'password'), CASE WHEN vouched THEN now() END)
	RETURNING id INTO new_id;
	PERFORM mandant.record_event(tenant, 'identity', 'user.created', 'user', new_id::text,
								  jsonb_build_object('email', address, 'by', caller));
	/* The platform vouches for the address: the owner named by a tenant joins it now. */
	IF vouched THEN
		PERFORM mandant.join_owned_tenants(new_id);
	END IF;
	RETURN to_jsonb(new_id);
END
$$;

CREATE OR REPLACE FUNCTION mandant.join_owned_tenants(account uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	joined uuid;
BEGIN
	FOR joined IN
		SELECT t.id FROM mandant.tenant t, mandant.users u
		WHERE u.id = account AND u.email_confirmed_at IS NOT NULL
		  AND lower(t.owner_email) = lower(u.email) AND t.status IN ('pending', 'active', 'suspended')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.role = 'owner')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.user_id = account)
		ORDER BY t.id
		FOR UPDATE OF t
	LOOP
		PERFORM mandant.consume(joined, 'users', 1);
		INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
		VALUES (joined, account, 'owner', 'owner_email');
		PERFORM mandant.record_event(joined, 'identity', 'member.added', 'user', account::text,
									 jsonb_build_object('role', 'owner', 'by', 'owner_email'));
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.join_owned_tenants(uuid) IS
'Internal: a user whose e-mail is confirmed becomes the owner of the tenants that name it as owner_email and have no owner.';

CREATE OR REPLACE FUNCTION mandant.identity_confirm_user_email(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET email_confirmed_at = now(), updated_at = now()
	WHERE u.id = account AND u.email_confirmed_at IS NULL;
	IF FOUND THEN
		PERFORM mandant.record_event(NULL, 'identity', 'email.confirmed', 'user', account::text,
									 jsonb_build_object('by', caller));
	END IF;
	PERFORM mandant.join_owned_tenants(account);
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.check_role_definition(role_name text, role_scopes text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
END
$$;

COMMENT ON FUNCTION mandant.check_role_definition(text, text[]) IS
'Internal: raise 23505 for a system role''s name, 22023 for an invalid role name or scopes of a tenant role.';

CREATE OR REPLACE FUNCTION mandant.identity_create_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name	text := args ->> 'name';
	role_scopes	text[] := ARRAY(SELECT jsonb_array_elements_text(args -> 'scopes'));
BEGIN
	PERFORM mandant.check_role_definition(role_name, role_scopes);
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

CREATE OR REPLACE FUNCTION mandant.create_user(email text, password text, display_name text)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (mandant.gate_call('create_user', mandant.current_tenant(),
		jsonb_build_object('email', email, 'password', password, 'displayName', display_name)) #>> '{}')::uuid
$$;

COMMENT ON FUNCTION mandant.create_user(text, text, text) IS
'Create a user (password: at least 12 characters, at most 72 bytes, not the e-mail; bcrypt cost 12). For trusted backends, mandant_admin, and tenant administrators (then add them with add_member). Returns the id.';

CREATE OR REPLACE FUNCTION mandant.add_member(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('add_member', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.add_member(uuid, uuid, text) IS
'Add a user to a tenant in a role. For the tenant''s administrators inside the tenant, trusted backends there and mandant_admin; the owner role only by owners.';

CREATE OR REPLACE FUNCTION mandant.set_member_role(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('set_member_role', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.set_member_role(uuid, uuid, text) IS
'Change a member''s role (the tenant keeps at least one owner; owners change owners). Tokens issued for the old role stop working.';

CREATE OR REPLACE FUNCTION mandant.remove_member(tenant uuid, user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('remove_member', tenant, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.remove_member(uuid, uuid) IS
'Remove a member (not the last owner); their sessions in the tenant end.';

CREATE OR REPLACE FUNCTION mandant.create_role(name text, scopes text[], description text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_role', mandant.current_tenant(),
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes), 'description', description));
$$;

COMMENT ON FUNCTION mandant.create_role(text, text[], text) IS
'Add a role to the current tenant with a subset of read, write, delete, admin.';

CREATE OR REPLACE FUNCTION mandant.drop_role(name text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('drop_role', mandant.current_tenant(), jsonb_build_object('name', name)); $$;

COMMENT ON FUNCTION mandant.drop_role(text) IS
'Drop a role of the current tenant that nobody holds.';

CREATE OR REPLACE FUNCTION mandant.disable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('disable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.disable_user(uuid) IS
'Disable a user everywhere and revoke all their tokens. For trusted backends and mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.enable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('enable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.enable_user(uuid) IS
'Enable a disabled user again (their old tokens stay revoked).';

CREATE OR REPLACE FUNCTION mandant.reset_password(user_id uuid, new_password text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('reset_password', NULL, jsonb_build_object('userId', user_id, 'password', new_password)); $$;

COMMENT ON FUNCTION mandant.reset_password(uuid, text) IS
'Set a user''s password (the reset flow of a trusted backend, or mandant_admin); revokes all their tokens.';

CREATE OR REPLACE FUNCTION mandant.confirm_user_email(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('confirm_user_email', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.confirm_user_email(uuid) IS
'Vouch for a user''s e-mail address (after the trusted backend verified it): the user becomes owner of the tenants that name the address as owner_email and have no owner. Trusted backends and mandant_admin only; users created by them are confirmed already.';

CREATE OR REPLACE FUNCTION mandant.count_rows(tenant uuid, resource text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_count_rows'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.count_rows(uuid, text) IS
'Internal: how many rows of a tenant the tables under quota for resource hold.';

CREATE OR REPLACE FUNCTION mandant.enable_quota(tbl regclass, resource text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_quota');
	PERFORM mandant.gate_call('attach_quota', NULL, jsonb_build_object('table', tbl::oid, 'resource', resource));
END
$$;

COMMENT ON FUNCTION mandant.enable_quota(regclass, text) IS
'Count the rows of a tenant table against a resource of each tenant''s plan (C trigger; the insert past the limit fails with MD030, also under concurrency). Not for a resource that is charged (mandant.charge). Idempotent; the table owner only.';

CREATE OR REPLACE FUNCTION mandant.registry_attach_quota(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<registry_attach_quota>>
DECLARE
	tbl				regclass := (args ->> 'table')::oid::regclass;
	resource		text := args ->> 'resource';
	tenant_column	name;
	other			record;
BEGIN
	SELECT r.tenant_column INTO tenant_column FROM mandant.tenant_table r WHERE r.relid = tbl;
	IF tenant_column IS NULL THEN
		RAISE EXCEPTION 'table % is not a tenant table', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Quotas count rows per tenant, and the table has no registered tenant column.',
				  HINT = format('Call mandant.enable_tenancy(%L) first.', tbl::text);
	END IF;
	PERFORM mandant.check_resource(resource);
	/*
	 * On Citus the coordinator counts a statement's rows for the
	 * transaction's tenant, which the policy on the tenant column holds
	 * every row to; that column must place the rows, so that no update
	 * moves one to another tenant (Citus refuses those).
	 */
	IF mandant.citus_distribution_column(tbl) IS DISTINCT FROM tenant_column
		AND mandant.citus_distribution_column(tbl) IS NOT NULL THEN
		RAISE EXCEPTION 'table % is distributed by another column than its tenant column %', tbl, tenant_column
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = format('Citus distributes it by %s; quotas count its rows per tenant.', mandant.citus_distribution_column(tbl)),
				  HINT = format('Distribute it by %I.', tenant_column);
	END IF;
	/*
	 * Nor a partition of a distributed table alone: rows that an UPDATE of
	 * the partition key, or a cascade, moves into it on the workers pass
	 * the coordinator's count by (quota.c counts the statements it runs).
	 */
	IF mandant.citus_distribution_column(tbl) IS NOT NULL
		AND (SELECT c.relispartition FROM pg_class c WHERE c.oid = tbl) THEN
		RAISE EXCEPTION 'partition % of a distributed table cannot count against a quota alone', tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'On Citus the coordinator counts the rows of the statements it runs; rows moved into a partition on the workers (an UPDATE of the partition key, a cascade) would not be counted.',
				  HINT = format('Call mandant.enable_quota() on the partitioned table %s.', pg_partition_root(tbl));
	END IF;
	IF NOT EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = registry_attach_quota.resource)
		AND EXISTS (SELECT 1 FROM mandant.tenant_usage u WHERE u.resource = registry_attach_quota.resource) THEN
		RAISE EXCEPTION 'resource "%" is charged, not counted', resource
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Tenants were charged %s with mandant.charge(); counting rows would replace what they were charged.', resource),
				  HINT = 'Count rows against a resource of their own: add one to mandant.plan.limits.';
	END IF;
	/* A counter is fed by its owners' tables only: rows another owner
	   wrote (or pre-filled) would otherwise count against every tenant. */
	SELECT q.relid, c.relowner::regrole AS owner INTO other
	FROM mandant.quota_table q JOIN pg_class c ON c.oid = q.relid
	WHERE q.resource = registry_attach_quota.resource AND q.relid <> tbl
	  AND NOT mandant.gate_caller_member_of(c.relowner::regrole::name)
	ORDER BY q.relid::text LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'resource "%" is counted by tables of another owner', resource
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('%s, owned by %s, counts rows against %s.', other.relid, other.owner, resource),
				  HINT = 'Count your rows against a resource of your own: add one to mandant.plan.limits.';
	END IF;
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.quota_table AS q (relid, resource, tenant_column)
	VALUES (tbl, resource, tenant_column)
	ON CONFLICT (relid) DO UPDATE SET resource = EXCLUDED.resource, tenant_column = EXCLUDED.tenant_column
	WHERE (q.resource, q.tenant_column) IS DISTINCT FROM (EXCLUDED.resource, EXCLUDED.tenant_column);
	PERFORM mandant.attach_trigger(tbl, 'mandant_quota',
		format('CREATE TRIGGER mandant_quota AFTER INSERT OR DELETE OR UPDATE OF %I ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.quota_trigger(%L, %L)',
			   tenant_column, tbl, resource, tenant_column));
	/* on Citus the coordinator forgets the counters of a truncated table (quota.c) */
	IF mandant.citus_distribution_column(tbl) IS NULL THEN
		PERFORM mandant.attach_trigger(tbl, 'mandant_quota_truncate',
			format('CREATE TRIGGER mandant_quota_truncate AFTER TRUNCATE ON %s '
				   'FOR EACH STATEMENT EXECUTE FUNCTION mandant.quota_truncated(%L)', tbl, resource));
	END IF;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.disable_quota(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_quota');
	PERFORM mandant.gate_call('detach_quota', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_quota(regclass) IS
'Stop counting a table''s rows. The table owner only.';

CREATE OR REPLACE FUNCTION mandant.registry_detach_quota(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'mandant_quota');
	PERFORM mandant.detach_trigger(tbl, 'mandant_quota_truncate');
	DELETE FROM mandant.quota_table q WHERE q.relid = tbl;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.op_set_quota(tenant uuid, resource text, "limit" bigint,
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
	WHERE u.tenant_id = tenant AND u.resource = op_set_quota.resource;
	PERFORM mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'quota.changed', 'tenant', tenant::text,
								  jsonb_build_object('resource', resource, 'limit', "limit",
													 'effectiveAt', COALESCE(effective_at, now()), 'reason', reason));
	RETURN change_id;
END
$$;

COMMENT ON FUNCTION mandant.op_set_quota(uuid, text, bigint, timestamptz, text) IS
'Internal: the body of mandant.set_quota(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.set_quota(tenant uuid, resource text, "limit" bigint,
								  effective_at timestamptz DEFAULT now(), reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('set_quota');
	RETURN mandant.op_set_quota(tenant, resource, "limit", effective_at, reason);
END
$$;

COMMENT ON FUNCTION mandant.set_quota(uuid, text, bigint, timestamptz, text) IS
'Override a tenant''s limit of a resource from effective_at on (NULL limit: unlimited); kept in mandant.quota_change. mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_change_plan(tenant uuid, plan_key text, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old_plan text := (mandant.lock_tenant(tenant)).plan_key;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.key = op_change_plan.plan_key) THEN
		RAISE EXCEPTION 'plan "%" does not exist', plan_key
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('No row of mandant.plan has key %L.', plan_key),
				  HINT = format('Use one of: %s.', (SELECT string_agg(p.key, ', ' ORDER BY p.key) FROM mandant.plan p));
	END IF;
	PERFORM mandant.require_reason(reason, 'change a plan', 'The reason is recorded in the audit trail.',
								   'Say why, e.g. ''upgrade ordered by the customer''.');
	UPDATE mandant.tenant t SET plan_key = op_change_plan.plan_key, updated_at = now() WHERE t.id = tenant;
	UPDATE mandant.tenant_usage u SET limit_until = '-infinity' WHERE u.tenant_id = tenant;
	PERFORM mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'plan.changed', 'tenant', tenant::text,
								  jsonb_build_object('from', old_plan, 'to', plan_key, 'reason', reason));
	PERFORM mandant.emit_for(NULL, 'platform.tenant.plan_changed', tenant::text,
							 jsonb_build_object('tenantId', tenant, 'from', old_plan, 'to', plan_key));
END
$$;

COMMENT ON FUNCTION mandant.op_change_plan(uuid, text, text) IS
'Internal: the body of mandant.change_plan(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.change_plan(tenant uuid, plan_key text, reason text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('change_plan');
	PERFORM mandant.op_change_plan(tenant, plan_key, reason);
END
$$;

COMMENT ON FUNCTION mandant.change_plan(uuid, text, text) IS
'Move a tenant to another plan; its limits change at once (usage above a lower limit stays, new rows are refused). mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.usage_of(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(jsonb_agg(jsonb_build_object('resource', x.resource, 'used', x.used, 'limit', x."limit")
							  ORDER BY x.resource), '[]')
	FROM (SELECT r.resource,
				 COALESCE((SELECT u.used FROM mandant.tenant_usage u WHERE u.tenant_id = usage_of.tenant AND u.resource = r.resource),
						  CASE WHEN EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = r.resource)
							   THEN mandant.count_rows(usage_of.tenant, r.resource) ELSE 0 END) AS used,
				 mandant.effective_limit(usage_of.tenant, r.resource) AS "limit"
		  FROM (SELECT DISTINCT k AS resource FROM mandant.plan p, jsonb_object_keys(p.limits) k) r) x
$$;

CREATE OR REPLACE FUNCTION mandant.usage(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (resource text, used bigint, "limit" bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT r.resource, r.used, r."limit"
	FROM jsonb_to_recordset(mandant.gate_call('usage', tenant, '{}')) AS r (resource text, used bigint, "limit" bigint)
	ORDER BY r.resource
$$;

COMMENT ON FUNCTION mandant.usage(uuid) IS
'What a tenant uses of each resource and its limit (NULL: unlimited). The current tenant, or any for mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.op_usage_reconcile()
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

COMMENT ON FUNCTION mandant.op_usage_reconcile() IS
'Internal: the body of mandant.usage_reconcile(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.usage_reconcile()
RETURNS TABLE (tenant_id uuid, resource text, recorded bigint, actual bigint)
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('usage_reconcile');
	RETURN QUERY SELECT * FROM mandant.op_usage_reconcile();
END
$$;

COMMENT ON FUNCTION mandant.usage_reconcile() IS
'Recount the rows behind every usage counter, fix the counters that drifted and report them. mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.after_tenant_created(tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.op_complete_tenant_provisioning(operation_id uuid)
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

CREATE OR REPLACE FUNCTION mandant.complete_tenant_provisioning(operation_id uuid)
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

CREATE OR REPLACE FUNCTION mandant.op_fail_tenant_provisioning(operation_id uuid, reason text)
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

CREATE OR REPLACE FUNCTION mandant.fail_tenant_provisioning(operation_id uuid, reason text)
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

CREATE OR REPLACE FUNCTION mandant.op_suspend_tenant(tenant uuid, reason text)
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

CREATE OR REPLACE FUNCTION mandant.suspend_tenant(tenant uuid, reason text)
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

CREATE OR REPLACE FUNCTION mandant.op_resume_tenant(tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.resume_tenant(tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.tenant_tables_unregistered()
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

CREATE OR REPLACE FUNCTION mandant.check_tenant_tables_registered()
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

CREATE OR REPLACE FUNCTION mandant.tenant_tables()
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

CREATE OR REPLACE FUNCTION mandant.check_tenant_references()
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

CREATE OR REPLACE FUNCTION mandant.op_delete_tenant(tenant uuid, confirm_slug text)
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

CREATE OR REPLACE FUNCTION mandant.delete_tenant(tenant uuid, confirm_slug text)
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

CREATE OR REPLACE FUNCTION mandant.op_export_tenant(tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.export_tenant(tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.import_rows(tbl regclass, tenant_column name, tenant uuid, rows jsonb)
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

CREATE OR REPLACE FUNCTION mandant.import_sequences(tbl regclass, tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.check_imported_references(tbl regclass, tenant_column name, tenant uuid)
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

CREATE OR REPLACE FUNCTION mandant.op_import_tenant_begin(tenant jsonb, tables jsonb)
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

CREATE OR REPLACE FUNCTION mandant.op_import_tenant_items(tenant uuid, kind text, items jsonb)
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

CREATE OR REPLACE FUNCTION mandant.op_import_tenant_finish(tenant uuid, tables regclass[], skipped text[])
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

CREATE OR REPLACE FUNCTION mandant.op_import_tenant(export jsonb)
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

CREATE OR REPLACE FUNCTION mandant.import_tenant(export jsonb)
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

CREATE OR REPLACE FUNCTION mandant.op_export_tenant_stream(tenant uuid)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'mandant_op_export_tenant_stream'
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100000;

COMMENT ON FUNCTION mandant.op_export_tenant_stream(uuid) IS
'Internal: the body of mandant.export_tenant_stream(), which checks its caller first (mandant.gate_check).';

CREATE OR REPLACE FUNCTION mandant.export_tenant_stream(tenant uuid)
RETURNS SETOF text
LANGUAGE sql
ROWS 100000
AS $$
	SELECT mandant.gate_check('export_tenant');
	SELECT mandant.op_export_tenant_stream(tenant);
$$;

COMMENT ON FUNCTION mandant.export_tenant_stream(uuid) IS
'A tenant as JSON lines (format mandant.tenant-stream, version 1), in memory that does not grow with the tenant: a header (the tenant, its tables), every row of every tenant table, roles, members (e-mail, name, role: never password hashes or secrets), configuration with its history, quota changes, charged usage, the audit trail with its seals, and a trailer with the number of lines and their SHA-256; each row holds up to 1,000 lines joined by newlines. Write it with COPY (SELECT mandant.export_tenant_stream(id)) TO STDOUT; import it with COPY mandant.tenant_import FROM STDIN. mandant_admin only.';

CREATE OR REPLACE FUNCTION mandant.op_tenant_import_open()
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_op_tenant_import_open'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION mandant.op_tenant_import_open() IS
'Internal: start the import of one tenant stream for the running statement (mandant.tenant_import''s first trigger, after the gate).';

CREATE OR REPLACE FUNCTION mandant.tenant_import_open()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.gate_check('import_tenant');
	PERFORM mandant.op_tenant_import_open();
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.tenant_import_open() IS
'Internal: BEFORE STATEMENT trigger of mandant.tenant_import: check the caller (the gate''s rule of import_tenant) and start the import.';

CREATE OR REPLACE FUNCTION mandant.tenant_import_line()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_tenant_import_line'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION mandant.tenant_import_line() IS
'Internal: BEFORE row trigger of mandant.tenant_import (takes one line of a tenant stream, keeps it out of the table) and its AFTER STATEMENT trigger (finishes the import).';

CREATE OR REPLACE FUNCTION mandant.forget_tables(tables oid[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM mandant.tenant_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.audit_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.state_machine_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.outbox_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.quota_table r WHERE r.relid::oid = ANY (tables);
END
$$;

COMMENT ON FUNCTION mandant.forget_tables(oid[]) IS
'Internal: remove tables from every registry of mandant.';

CREATE OR REPLACE FUNCTION mandant.forget_missing_tables()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.forget_tables(ARRAY(
		SELECT x.relid FROM (SELECT relid::oid FROM mandant.tenant_table
							 UNION SELECT relid::oid FROM mandant.audit_table
							 UNION SELECT relid::oid FROM mandant.state_machine_table
							 UNION SELECT relid::oid FROM mandant.outbox_table
							 UNION SELECT relid::oid FROM mandant.quota_table) x
		WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.relid)));
$$;

COMMENT ON FUNCTION mandant.forget_missing_tables() IS
'Internal: remove registry rows of relations that no longer exist.';

CREATE OR REPLACE FUNCTION mandant.forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.forget_tables(ARRAY(
		SELECT o.objid FROM pg_event_trigger_dropped_objects() o
		WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0));
END
$$;

COMMENT ON FUNCTION mandant.forget_dropped_tables() IS
'Event trigger: unregister dropped tables from every registry of mandant (tenant tables, audited, outbox, state machine and quota tables).';

CREATE OR REPLACE FUNCTION mandant.camel_case(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_camel_case'
LANGUAGE C IMMUTABLE STRICT;

COMMENT ON FUNCTION mandant.camel_case(text) IS
'Internal: the camelCase JSON name of an argument or column (note_id: noteId), the dispatcher''s own rule (httproute.c).';

CREATE OR REPLACE FUNCTION mandant.http_routes_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_http_routes_changed'
LANGUAGE C;

COMMENT ON FUNCTION mandant.http_routes_changed() IS
'Internal: statement trigger of mandant.http_route; every backend reloads its routes after commit.';

CREATE OR REPLACE FUNCTION mandant.http_route(method text, path text, function regprocedure,
								   required_scope text DEFAULT NULL, public boolean DEFAULT false,
								   paginated boolean DEFAULT false, summary text DEFAULT NULL,
								   envelope boolean DEFAULT true)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('http_route', NULL, jsonb_build_object(
		'function', function::oid, 'method', method, 'path', path,
		'requiredScope', required_scope, 'public', public, 'paginated', paginated,
		'summary', summary, 'envelope', envelope));
$$;

COMMENT ON FUNCTION mandant.http_route(text, text, regprocedure, text, boolean, boolean, text, boolean) IS
'Route method and path (e.g. ''/v1/notes/{noteId}'') of the HTTP gateway to function: its arguments come by camelCase name from path, query and JSON body; the call needs a token with required_scope unless public; a paginated function returns a set; without envelope the answer is the function''s JSON as it is. Replaces the route of the same method and path. Grants EXECUTE on the function to mandant_gateway. The function''s owner or mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.drop_http_route(method text, path text)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN r.function IS NULL THEN false
				ELSE (mandant.gate_call('drop_http_route', NULL, jsonb_build_object(
						  'function', r.function::oid, 'method', r.method, 'path', r.path)) ->> 'dropped')::boolean
		   END
	FROM (SELECT NULL) n
	LEFT JOIN mandant.http_route r ON r.method = drop_http_route.method AND r.path = drop_http_route.path;
$$;

COMMENT ON FUNCTION mandant.drop_http_route(text, text) IS
'Remove the route of method and path; returns whether there was one. Revokes EXECUTE on its function from mandant_gateway when no other route calls it. The function''s owner or mandant_admin.';

CREATE OR REPLACE FUNCTION mandant.registry_http_route(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fn			regprocedure := (args ->> 'function')::oid::regprocedure;
	method		text := upper(args ->> 'method');
	path		text := args ->> 'path';
	scope		text := args ->> 'requiredScope';
	is_public	boolean := COALESCE((args ->> 'public')::boolean, false);
	paginated	boolean := COALESCE((args ->> 'paginated')::boolean, false);
	envelope	boolean := COALESCE((args ->> 'envelope')::boolean, true);
	p			pg_proc;
	in_names	text[];
	param		text;
	other		text;
	other_owner	text;
BEGIN
	SELECT * INTO p FROM pg_proc WHERE oid = fn;
	IF p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
		OR (p.pronamespace = 'mandant'::regnamespace AND NOT has_function_privilege('public', fn, 'EXECUTE')) THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'System functions and mandant''s internal functions are not served over HTTP.',
				  HINT = 'Route a function of your application, or one of mandant''s public functions.';
	END IF;
	IF NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
		RAISE EXCEPTION 'role "%" may not execute function %', caller, fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A route lets the gateway call the function; you may route only what you may call.',
				  HINT = format('Ask the owner of %s to grant you EXECUTE, or to route it.', fn);
	END IF;
	IF p.provariadic <> 0 OR p.pronargs > 64 THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'It is variadic or takes more than 64 arguments.',
				  HINT = 'Route a function with at most 64 named arguments.';
	END IF;
	SELECT array_agg(n ORDER BY i) INTO in_names
	FROM unnest(COALESCE(p.proargnames, array_fill(''::text, ARRAY[p.pronargs])),
				COALESCE(p.proargmodes, array_fill('i'::"char", ARRAY[p.pronargs]))) WITH ORDINALITY AS a(n, m, i)
	WHERE m IN ('i', 'b');
	IF p.pronargs > 0 AND (in_names IS NULL OR '' = ANY (in_names)
		OR EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) t(oid) JOIN pg_type y ON y.oid = t.oid
				   WHERE y.typtype = 'p')) THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'Every argument must have a name and a concrete type (no polymorphic or pseudo-types).',
				  HINT = 'Name the arguments: the gateway maps camelCase keys to them.';
	END IF;
	IF p.prokind <> 'f' OR (p.prorettype = 'record'::regtype
		AND NOT COALESCE(p.proargmodes && ARRAY['o', 'b', 't']::"char"[], false)) THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'It is a procedure, an aggregate or a window function, or it returns record without naming its columns.',
				  HINT = 'Route a plain function; give a function returning record OUT parameters or RETURNS TABLE.';
	END IF;
	IF ARRAY['access_token', 'refresh_token'] && in_names
		AND NOT pg_has_role(caller, 'mandant_admin', 'USAGE') THEN
		RAISE EXCEPTION 'function % takes the request''s credentials', fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The gateway fills access_token and refresh_token with the bearer token and the refresh cookie of whoever calls the route.',
				  HINT = 'Only a platform administrator (mandant_admin) routes such a function.';
	END IF;
	IF paginated AND NOT p.proretset THEN
		RAISE EXCEPTION 'function % returns no set', fn
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A paginated route pages through the rows its function returns.',
				  HINT = 'Route a set-returning function, or pass paginated => false.';
	END IF;
	IF is_public AND scope IS NOT NULL THEN
		RAISE EXCEPTION 'a public route requires no scope'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The route was given public => true and required_scope => %L.', scope),
				  HINT = 'Drop one of them: public routes are called without a token.';
	END IF;
	IF path !~ '^(/([A-Za-z0-9._~-]+|\{[a-z][A-Za-z0-9]*\}))+$' THEN
		RAISE EXCEPTION 'invalid route path "%"', path
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A path is one or more /segments of letters, digits and ._~- or {parameter} in camelCase.',
				  HINT = 'Write e.g. ''/v1/notes/{noteId}''.';
	END IF;
	FOR param IN SELECT m[1] FROM regexp_matches(path, '\{([A-Za-z0-9]+)\}', 'g') AS m
	LOOP
		/* the dispatcher's match: an argument's camelCase name, or its own */
		IF NOT EXISTS (SELECT 1 FROM unnest(in_names) n WHERE param IN (n, mandant.camel_case(n))) THEN
			RAISE EXCEPTION 'path parameter "%" is not an argument of function %', param, fn
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('The function''s arguments are %s.', COALESCE(array_to_string(in_names, ', '), 'none')),
					  HINT = 'Name each {parameter} after an argument, in camelCase (note_id: {noteId}).';
		END IF;
	END LOOP;
	IF (SELECT count(*) FROM regexp_matches(path, '\{([A-Za-z0-9]+)\}', 'g'))
		<> (SELECT count(DISTINCT m[1]) FROM regexp_matches(path, '\{([A-Za-z0-9]+)\}', 'g') AS m) THEN
		RAISE EXCEPTION 'path "%" names a parameter twice', path
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Each {parameter} fills one argument.',
				  HINT = 'Name every parameter once.';
	END IF;

	/*
	 * Another role's route: a route of the same method that matches a path
	 * this one matches (the same path, or one that differs only where
	 * either has a {parameter}) belongs to the owner of its function (or,
	 * if that is gone, to the role that created it); only that owner and
	 * mandant_admin may replace or shadow it.
	 */
	SELECT r.method || ' ' || r.path, COALESCE(o.rolname, r.created_by) INTO other, other_owner
	FROM mandant.http_route r
	LEFT JOIN pg_proc f ON f.oid = r.function
	LEFT JOIN pg_roles o ON o.oid = f.proowner
	WHERE r.method = upper(args ->> 'method')
	  AND NOT pg_has_role(caller, 'mandant_admin', 'USAGE')
	  AND NOT COALESCE((SELECT pg_has_role(caller, x.oid, 'USAGE') FROM pg_roles x
						WHERE x.rolname = COALESCE(o.rolname, r.created_by)), false)
	  AND array_length(string_to_array(r.path, '/'), 1)
		  = array_length(string_to_array(args ->> 'path', '/'), 1)
	  AND NOT EXISTS (SELECT 1 FROM unnest(string_to_array(r.path, '/'),
										   string_to_array(args ->> 'path', '/')) AS s(a, b)
					  WHERE a <> b AND a NOT LIKE '{%}' AND b NOT LIKE '{%}')
	LIMIT 1;
	IF other IS NOT NULL THEN
		RAISE EXCEPTION 'route % belongs to role "%"', other, other_owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('%s %s would replace it or take requests meant for it.', method, path),
				  HINT = 'Choose another path, or ask its owner or a platform administrator.';
	END IF;

	/* a builtin route that is replaced becomes the database's own (pg_dump keeps it) */
	INSERT INTO mandant.http_route AS r (method, path, function, required_scope, public, paginated,
										 summary, envelope, created_by)
	VALUES (method, path, fn, scope, is_public, paginated, args ->> 'summary', envelope, caller)
	ON CONFLICT ON CONSTRAINT http_route_pkey DO UPDATE
	SET function = EXCLUDED.function, required_scope = EXCLUDED.required_scope,
		public = EXCLUDED.public, paginated = EXCLUDED.paginated, summary = EXCLUDED.summary,
		envelope = EXCLUDED.envelope, builtin = false,
		created_at = EXCLUDED.created_at, created_by = EXCLUDED.created_by;
	PERFORM mandant.http_route_grants();
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION mandant.registry_drop_http_route(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped	boolean;
BEGIN
	DELETE FROM mandant.http_route r
	WHERE r.method = args ->> 'method' AND r.path = args ->> 'path'
	  AND r.function = (args ->> 'function')::oid::regprocedure;
	dropped := FOUND;
	PERFORM mandant.http_route_grants();
	RETURN jsonb_build_object('dropped', dropped);
END
$$;

CREATE OR REPLACE FUNCTION mandant.http_route_grants()
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g	record;
BEGIN
	FOR g IN
		SELECT DISTINCT 'function' AS kind, r.function::oid AS object FROM mandant.http_route r
		UNION
		SELECT DISTINCT 'schema', p.pronamespace FROM mandant.http_route r JOIN pg_proc p ON p.oid = r.function
	LOOP
		CONTINUE WHEN EXISTS (SELECT 1 FROM mandant.http_route_grant x WHERE (x.kind, x.object) = (g.kind, g.object));
		IF g.kind = 'function' AND NOT has_function_privilege('mandant_gateway', g.object, 'EXECUTE') THEN
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO mandant_gateway', g.object::regprocedure);
			INSERT INTO mandant.http_route_grant (kind, object) VALUES (g.kind, g.object);
		ELSIF g.kind = 'schema' AND NOT has_schema_privilege('mandant_gateway', g.object, 'USAGE') THEN
			EXECUTE format('GRANT USAGE ON SCHEMA %s TO mandant_gateway', g.object::regnamespace);
			INSERT INTO mandant.http_route_grant (kind, object) VALUES (g.kind, g.object);
		END IF;
	END LOOP;
	FOR g IN
		DELETE FROM mandant.http_route_grant x
		WHERE NOT EXISTS (SELECT 1 FROM mandant.http_route r JOIN pg_proc p ON p.oid = r.function
						  WHERE CASE x.kind WHEN 'function' THEN r.function::oid ELSE p.pronamespace END = x.object)
		RETURNING x.kind, x.object
	LOOP
		IF g.kind = 'function' AND EXISTS (SELECT 1 FROM pg_proc WHERE oid = g.object) THEN
			EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM mandant_gateway', g.object::regprocedure);
		ELSIF g.kind = 'schema' AND EXISTS (SELECT 1 FROM pg_namespace WHERE oid = g.object) THEN
			EXECUTE format('REVOKE USAGE ON SCHEMA %s FROM mandant_gateway', g.object::regnamespace);
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.http_route_grants() IS
'Internal: grant mandant_gateway EXECUTE on routed functions and USAGE on their schemas; revoke what only dropped routes needed.';

CREATE OR REPLACE FUNCTION mandant.http_call(request jsonb, request_body text DEFAULT NULL,
								  OUT status integer, OUT headers jsonb, OUT body text,
								  OUT route text, OUT tenant_id uuid)
RETURNS record
AS 'MODULE_PATHNAME', 'mandant_http_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.http_call(jsonb, text) IS
'Answer one HTTP request (method, path, query, host, tenant, token, cookie, requestId, traceId, clientIp; body as text) in one statement: route, tenant, token, scope, arguments, call, envelope. Outside a transaction block; not as a trusted role. mandant_gateway only.';

CREATE OR REPLACE FUNCTION mandant.api_logout(access_token text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.logout(access_token);
	SELECT jsonb_build_object('loggedOut', true, 'refreshToken', NULL::text);
$$;

COMMENT ON FUNCTION mandant.api_logout(text) IS
'POST /api/v1/auth/logout: revoke the access token and its session (mandant.logout); the gateway clears the refresh cookie.';

CREATE OR REPLACE FUNCTION mandant.api_me()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.current_user_id();
	here	uuid := mandant.current_tenant();
	u		mandant.users;
	t		mandant.tenant;
BEGIN
	IF me IS NULL AND here IS NULL THEN
		RAISE EXCEPTION 'nobody is signed in'
			USING ERRCODE = 'MD051',
				  DETAIL = 'The transaction has neither a user nor a tenant.',
				  HINT = 'Call mandant.authenticate(access_token) first.';
	END IF;
	SELECT * INTO u FROM mandant.users x WHERE x.id = me;
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = here;
	RETURN jsonb_build_object(
		'user', CASE WHEN me IS NULL THEN NULL
					 ELSE jsonb_build_object('id', u.id, 'email', u.email, 'displayName', u.display_name,
											 'mfa', u.totp_state = 'on') END,
		'tenant', CASE WHEN here IS NULL THEN NULL
					   ELSE jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name, 'status', t.status) END,
		'role', (SELECT m.role FROM mandant.membership m WHERE m.tenant_id = here AND m.user_id = me),
		'scopes', to_jsonb(mandant.current_scopes()));
END
$$;

COMMENT ON FUNCTION mandant.api_me() IS
'GET /api/v1/auth/me: the signed-in user (none for a service account), the tenant, the role and the scopes of the transaction''s context.';

CREATE OR REPLACE FUNCTION mandant.api_sign_up(slug text, name text, email text, password text,
									display_name text, client_ip inet DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	account	uuid;
	tenant	uuid;
	t		mandant.tenant;
BEGIN
	PERFORM mandant.rate_limit('sign_up:' || COALESCE(host(client_ip), 'unknown'),
							   COALESCE(current_setting('mandant.sign_ups_per_address', true), '5')::integer,
							   '1 hour');
	PERFORM mandant.check_tenant_slug(slug);
	/* not through the gate: nobody vouches for the address */
	account := mandant.identity_create_user(NULL, jsonb_build_object(
		'email', email, 'password', password, 'displayName', display_name), 'sign_up') #>> '{}';
	tenant := mandant.op_create_tenant(slug, name, email);
	PERFORM mandant.consume(tenant, 'users', 1);
	INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
	VALUES (tenant, account, 'owner', 'sign_up');
	PERFORM mandant.record_event(tenant, 'identity', 'member.added', 'user', account::text,
								 jsonb_build_object('role', 'owner', 'by', 'sign_up'));
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
	RETURN jsonb_build_object(
		'tenant', jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name, 'status', t.status),
		'user', jsonb_build_object('id', account, 'email', email));
END
$$;

COMMENT ON FUNCTION mandant.api_sign_up(text, text, text, text, text, inet) IS
'POST /api/v1/tenants: self-service sign-up, a new account that owns a new tenant (through the provisioning saga; the address stays unconfirmed); at most mandant.sign_ups_per_address (default 5) per hour from one address (MD040). Anyone.';

CREATE OR REPLACE FUNCTION mandant.api_add_member(user_id uuid, role text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.add_member(mandant.require_tenant(), user_id, role);
	SELECT jsonb_build_object('userId', user_id, 'role', role);
$$;

COMMENT ON FUNCTION mandant.api_add_member(uuid, text) IS
'POST /api/v1/members: make a user a member of the current tenant (mandant.add_member).';

CREATE OR REPLACE FUNCTION mandant.api_set_member_role(user_id uuid, role text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.set_member_role(mandant.require_tenant(), user_id, role);
	SELECT jsonb_build_object('userId', user_id, 'role', role);
$$;

COMMENT ON FUNCTION mandant.api_set_member_role(uuid, text) IS
'PATCH /api/v1/members/{userId}: change a member''s role in the current tenant (mandant.set_member_role).';

CREATE OR REPLACE FUNCTION mandant.api_remove_member(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.remove_member(mandant.require_tenant(), user_id); $$;

COMMENT ON FUNCTION mandant.api_remove_member(uuid) IS
'DELETE /api/v1/members/{userId}: remove a member from the current tenant (mandant.remove_member).';

CREATE OR REPLACE FUNCTION mandant.api_config_get(service text, key text,
									   OUT value jsonb, OUT version bigint, OUT scope text)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	SELECT c.value, c.version, c.scope INTO value, version, scope
	FROM mandant.config_get_all(service) c WHERE c.key = api_config_get.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'configuration key %.% is not set', service, key
			USING ERRCODE = 'no_data_found',
				  DETAIL = 'Neither the tenant nor the platform set it.',
				  HINT = 'Set it with PUT, or use the default of your service.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.api_config_get(text, text) IS
'GET /api/v1/config/{service}/{key}: the value the current tenant sees, its version (for If-Match) and whether it is the tenant''s or global; 404 when unset.';

CREATE OR REPLACE FUNCTION mandant.api_config_put(service text, key text, value jsonb, reason text,
									   expected_version bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_build_object('version', mandant.config_set(service, key, value, reason, expected_version));
$$;

COMMENT ON FUNCTION mandant.api_config_put(text, text, jsonb, text, bigint) IS
'PUT /api/v1/config/{service}/{key}: set the current tenant''s value (mandant.config_set); If-Match gives expected_version, a stale one is 409 VERSION_CONFLICT.';

CREATE OR REPLACE FUNCTION mandant.api_audit(since timestamptz DEFAULT '-infinity', entity_type text DEFAULT NULL,
								  entity_id text DEFAULT NULL, action text DEFAULT NULL)
RETURNS TABLE (id bigint, occurred_at timestamptz, category text, action text, entity_type text,
			   entity_id text, actor_user_id uuid, request_id text, changes jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.id, a.occurred_at, a.category, a.action, a.entity_type, a.entity_id, a.actor_user_id,
		   a.request_id, a.changes
	FROM mandant.audit_event a
	WHERE a.tenant_id = mandant.require_tenant()
	  AND a.occurred_at >= api_audit.since
	  AND (api_audit.entity_type IS NULL OR a.entity_type = api_audit.entity_type)
	  AND (api_audit.entity_id IS NULL OR a.entity_id = api_audit.entity_id)
	  AND (api_audit.action IS NULL OR a.action = api_audit.action)
	ORDER BY a.id DESC
$$;

COMMENT ON FUNCTION mandant.api_audit(timestamptz, text, text, text) IS
'GET /api/v1/audit: the current tenant''s audit events, newest first, filtered by time, entity and action (row level security keeps them the tenant''s own).';

CREATE OR REPLACE FUNCTION mandant.api_require_platform_worker()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF mandant.current_tenant() IS NOT NULL OR mandant.current_user_id() IS NOT NULL
		OR NOT mandant.has_scope('internal') THEN
		RAISE EXCEPTION 'permission denied for the outbox'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The token is for %s with scopes %s.',
								  CASE WHEN mandant.current_user_id() IS NOT NULL THEN 'a user'
									   WHEN mandant.current_tenant() IS NOT NULL THEN 'a tenant''s service account'
									   ELSE 'a platform service account' END,
								  mandant.current_scopes()),
				  HINT = 'Use the token of a service account of no tenant with scope internal (mandant.create_service_account(name, ''{internal}'')).';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.api_require_platform_worker() IS
'Internal: refuse unless the context is a platform service account''s token with scope internal.';

CREATE OR REPLACE FUNCTION mandant.api_outbox_claim(consumer text, max integer DEFAULT 100,
										 lease interval DEFAULT '30 seconds')
RETURNS TABLE (id bigint, event_id uuid, topic text, tenant_id uuid, aggregate_id text,
			   attempts integer, envelope jsonb, headers jsonb)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.api_require_platform_worker();
	RETURN QUERY SELECT * FROM mandant.op_outbox_claim(consumer, max, lease);
END
$$;

COMMENT ON FUNCTION mandant.api_outbox_claim(text, integer, interval) IS
'POST /internal/v1/outbox/claim: lease pending events for a consumer (mandant.outbox_claim); a platform service account with scope internal only.';

CREATE OR REPLACE FUNCTION mandant.api_outbox_ack(ids bigint[])
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.api_require_platform_worker();
	RETURN jsonb_build_object('acknowledged', mandant.op_outbox_ack(ids));
END
$$;

COMMENT ON FUNCTION mandant.api_outbox_ack(bigint[]) IS
'POST /internal/v1/outbox/ack: mark claimed events delivered (mandant.outbox_ack); a platform service account with scope internal only.';

CREATE OR REPLACE FUNCTION mandant.openapi_type(t regtype)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN y.typcategory = 'A' THEN jsonb_build_object('type', 'array', 'items', mandant.openapi_type(y.typelem))
		WHEN b.oid IN ('int2'::regtype, 'int4'::regtype) THEN '{"type": "integer", "format": "int32"}'
		WHEN b.oid = 'int8'::regtype THEN '{"type": "integer", "format": "int64"}'
		WHEN b.typcategory = 'N' THEN '{"type": "number"}'
		WHEN b.oid = 'bool'::regtype THEN '{"type": "boolean"}'
		WHEN b.oid IN ('json'::regtype, 'jsonb'::regtype) THEN '{}'
		WHEN b.oid = 'uuid'::regtype THEN '{"type": "string", "format": "uuid"}'
		WHEN b.oid IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN '{"type": "string", "format": "date-time"}'
		WHEN b.oid = 'date'::regtype THEN '{"type": "string", "format": "date"}'
		WHEN b.oid = 'interval'::regtype THEN '{"type": "string", "format": "duration"}'
		ELSE '{"type": "string"}'
	END::jsonb
	FROM pg_type y JOIN pg_type b ON b.oid = CASE WHEN y.typtype = 'd' THEN y.typbasetype ELSE y.oid END
	WHERE y.oid = t
$$;

COMMENT ON FUNCTION mandant.openapi_type(regtype) IS
'Internal: the JSON schema of a type''s values in the gateway''s requests and answers.';

CREATE OR REPLACE FUNCTION mandant.openapi()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	paths		jsonb := '{}';
	r			record;
	op			jsonb;
	params		jsonb;
	props		jsonb;
	required	text[];
	a			record;
	in_path		text[];
	is_write	boolean;
BEGIN
	FOR r IN
		SELECT h.*, p.proname, p.pronargs, p.pronargdefaults,
			   ARRAY(SELECT t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS x(t, i) ORDER BY i) AS types,
			   COALESCE(p.proargnames, '{}') AS names, p.proargmodes AS modes,
			   obj_description(p.oid, 'pg_proc') AS comment
		FROM mandant.http_route h JOIN pg_proc p ON p.oid = h.function
		ORDER BY h.path, h.method
	LOOP
		in_path := ARRAY(SELECT m[1] FROM regexp_matches(r.path, '\{([A-Za-z0-9]+)\}', 'g') AS m);
		is_write := r.method IN ('POST', 'PUT', 'PATCH');
		params := '[]';
		props := '{}';
		required := '{}';
		FOR a IN
			SELECT q.n AS name, mandant.camel_case(q.n) AS camel, r.types[q.k]::regtype AS type,
				   q.k > r.pronargs - r.pronargdefaults AS has_default
			FROM (SELECT u.n, row_number() OVER (ORDER BY u.i) AS k
				  FROM unnest(r.names, COALESCE(r.modes, array_fill('i'::"char", ARRAY[cardinality(r.names)])))
					   WITH ORDINALITY AS u(n, m, i)
				  WHERE u.m IN ('i', 'b')) q
			WHERE q.n NOT IN ('client_ip', 'tenant_slug', 'access_token', 'refresh_token')
		LOOP
			IF a.camel = ANY (in_path) THEN
				params := params || jsonb_build_object('name', a.camel, 'in', 'path', 'required', true,
													   'schema', mandant.openapi_type(a.type));
			ELSIF is_write THEN
				props := props || jsonb_build_object(a.camel, mandant.openapi_type(a.type));
				IF NOT a.has_default THEN
					required := required || a.camel;
				END IF;
			ELSE
				params := params || jsonb_build_object('name', a.camel, 'in', 'query', 'required', NOT a.has_default,
													   'schema', mandant.openapi_type(a.type));
			END IF;
		END LOOP;
		IF r.paginated THEN
			params := params
				|| '{"name": "page", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}}'
				|| '{"name": "pageSize", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100}}';
		END IF;
		op := jsonb_build_object(
			'operationId', lower(r.method) || regexp_replace(r.path, '[^A-Za-z0-9]+', '_', 'g'),
			'summary', COALESCE(r.summary, substring(r.comment FROM '^[^.]*'), r.proname),
			'parameters', params,
			'responses', jsonb_build_object(
				'200', jsonb_build_object('description', 'Success',
					'content', jsonb_build_object('application/json', jsonb_build_object('schema',
						CASE WHEN NOT r.envelope THEN '{"type": "object"}'::jsonb
							 WHEN r.paginated THEN '{"$ref": "#/components/schemas/Page"}'::jsonb
							 ELSE '{"$ref": "#/components/schemas/Success"}'::jsonb END))),
				'4XX', '{"description": "Refused: the request, the token or the data (error.code says which)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}'::jsonb,
				'default', '{"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}'::jsonb));
		IF is_write THEN
			op := op || jsonb_build_object('requestBody', jsonb_build_object('required', cardinality(required) > 0,
				'content', jsonb_build_object('application/json', jsonb_build_object('schema',
					jsonb_build_object('type', 'object', 'additionalProperties', false, 'properties', props)
					|| CASE WHEN cardinality(required) > 0 THEN jsonb_build_object('required', to_jsonb(required))
							ELSE '{}' END))));
		END IF;
		IF r.public THEN
			op := op || '{"security": []}';
		ELSE
			/* OpenAPI 3.1 lets any scheme name the scopes it needs */
			op := op || jsonb_build_object('security', jsonb_build_array(jsonb_build_object('bearer',
						   CASE WHEN r.required_scope IS NULL THEN '[]'::jsonb
								ELSE jsonb_build_array(r.required_scope) END)))
				|| CASE WHEN r.required_scope IS NULL THEN '{}'
						ELSE jsonb_build_object('x-required-scope', r.required_scope) END;
		END IF;
		paths := jsonb_set(paths, ARRAY[r.path], COALESCE(paths -> r.path, '{}') || jsonb_build_object(lower(r.method), op));
	END LOOP;
	RETURN jsonb_build_object(
		'openapi', '3.1.0',
		'info', jsonb_build_object('title', 'mandant', 'version',
								   (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'mandant'),
								   'description', 'The HTTP API of mandant and of the application routes registered with mandant.http_route.'),
		'servers', '[{"url": "/"}]'::jsonb,
		'paths', paths,
		'components', jsonb_build_object(
			'securitySchemes', '{"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}'::jsonb,
			'schemas', jsonb_build_object(
				'Meta', '{"type": "object", "required": ["timestamp", "requestId"], "properties": {"timestamp": {"type": "string", "format": "date-time"}, "requestId": {"type": "string"}}}'::jsonb,
				'Success', '{"type": "object", "required": ["success", "data", "meta"], "properties": {"success": {"const": true}, "data": {}, "meta": {"$ref": "#/components/schemas/Meta"}}}'::jsonb,
				'Page', '{"type": "object", "required": ["success", "data", "pagination", "meta"], "properties": {"success": {"const": true}, "data": {"type": "array"}, "pagination": {"type": "object", "required": ["page", "pageSize", "total", "totalPages"], "properties": {"page": {"type": "integer"}, "pageSize": {"type": "integer"}, "total": {"type": "integer"}, "totalPages": {"type": "integer"}}}, "meta": {"$ref": "#/components/schemas/Meta"}}}'::jsonb,
				'Error', '{"type": "object", "required": ["success", "error", "meta"], "properties": {"success": {"const": false}, "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}, "hint": {"type": "string"}}}, "meta": {"$ref": "#/components/schemas/Meta"}}}'::jsonb)));
END
$$;

COMMENT ON FUNCTION mandant.openapi() IS
'GET /api/v1/openapi.json: the OpenAPI 3.1 document of every route of mandant.http_route (parameters and bodies with their types, scopes, summaries, envelope and error schemas).';

CREATE OR REPLACE FUNCTION mandant.citus_setup()
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

COMMENT ON FUNCTION mandant.citus_setup() IS
'On a Citus coordinator (in the metadata), as a superuser: makes mandant''s shared tables reference tables, so that tenant tables can be distributed by tenant_id. Idempotent.';

CREATE OR REPLACE FUNCTION mandant.citus_distribution_column(tbl regclass)
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

CREATE OR REPLACE FUNCTION mandant.check_kept_beside(tbl regclass, target regclass, what text, otherwise text)
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

CREATE OR REPLACE FUNCTION mandant.citus_truncate_local_history(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_citus_truncate_local_history'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.citus_truncate_local_history(regclass) IS
'Internal: remove the rows that stay in the coordinator''s own relation of one of mandant''s distributed history tables (for citus_setup()).';

CREATE OR REPLACE FUNCTION mandant.erasing_history_of()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_erasing_history_of'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.erasing_history_of() IS
'The tenant whose history mandant.delete_tenant() is erasing right now in this backend, else NULL (the row level policy of the distributed transition log).';

CREATE OR REPLACE FUNCTION mandant.state_machine_trigger_on_shards()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_state_machine_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.state_machine_trigger_on_shards() IS
'Internal: mandant.state_machine_trigger() as mandant.enable_state_machine() attaches it to a table that Citus distributes.';

CREATE OR REPLACE FUNCTION mandant.audit_trigger_on_shards()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_trigger_on_shards() IS
'Internal: mandant.audit_trigger() as mandant.enable_audit() attaches it to a table that Citus distributes.';

CREATE OR REPLACE FUNCTION mandant.outbox_trigger_on_shards()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_outbox_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.outbox_trigger_on_shards() IS
'Internal: mandant.outbox_trigger() as mandant.enable_outbox() attaches it to a table that Citus distributes.';

CREATE OR REPLACE FUNCTION mandant.citus_require_transaction_block(function text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_citus_require_transaction_block'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.citus_require_transaction_block(text) IS
'Internal: on Citus, refuses (25P01) an export outside a transaction block, where the shards would be read without the owner''s tenant context.';

/* ---- comments of functions that changed ---- */

COMMENT ON FUNCTION mandant.emit(text, text, jsonb) IS
'Write a custom event (topic domain.entity.action, lower case) for the tenant of the transaction; returns its event id. The domain platform is reserved to trusted backends.';

COMMENT ON FUNCTION mandant.rate_limit(text, integer, interval) IS
'Count one event for key; MD040 when max events already happened within per (sliding window, shared by all connections, not undone by rollback). Returns how many remain. Keys belong to the tenant of the transaction; without a tenant, to the platform (trusted backends and the gateway only).';

COMMENT ON FUNCTION mandant.charge(text, bigint) IS
'Count amount of a resource that is not rows (e.g. storage_bytes) against the current tenant''s limit (MD030 past it); a negative amount gives back; resources that tables count are refused (22023). Trusted backends (mandant_service) and mandant_admin only: a negative charge frees quota.';

COMMENT ON FUNCTION mandant.erase_tenant_history(uuid) IS
'Internal: delete a tenant''s rows from mandant''s append-only tables and its outbox events (for delete_tenant).';

/* ---- rights of functions ---- */

REVOKE ALL ON FUNCTION mandant.gate_caller_member_of(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.op_create_tenant(text, text, text, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_create_tenant(text, text, text, text, uuid) TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.lock_tenant(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.run_as_table_owner(regclass, uuid, text, jsonb),
	mandant.delete_tenant_rows(regclass, uuid), mandant.delete_tenant_row(uuid), mandant.tenant_row_count(regclass, name, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.audit_append_only() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.audit_event_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.attach_trigger(regclass, text, text), mandant.detach_trigger(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.op_audit_seal(), mandant.audit_seal_node(),
	mandant.audit_seal_events(regclass, regclass, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_audit_seal() TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.audit_walk_chain(uuid, bigint, bytea), mandant.audit_bad_checkpoint(uuid, boolean),
	mandant.audit_verify_from_checkpoint(uuid, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.op_audit_events(uuid, timestamptz, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_audit_events(uuid, timestamptz, text, text, integer) TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.audit_log_erasure(uuid, uuid, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.state_machines_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.check_guard(text, regrole, regprocedure) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.emit_erasure(uuid, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.outbox_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.jwt_sign(jsonb), mandant.jwt_verify(text),
	mandant.issue_tokens(mandant.users, uuid, uuid), mandant.revoke_tokens_of(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.login_address(inet), mandant.login_keys(text, inet),
	mandant.login_guard_keys(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.login_guard(text[], integer, interval),
	mandant.login_failed_count(text[], interval), mandant.login_reset(text, interval),
	mandant.defer_write(jsonb), mandant.deferred_apply(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.totp_attempt(uuid, bytea, text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.secret_seal(bytea, uuid), mandant.totp_match(bytea, uuid, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.join_owned_tenants(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.quota_table_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.op_set_quota(uuid, text, bigint, timestamptz, text), mandant.op_change_plan(uuid, text, text),
	mandant.op_usage_reconcile() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_set_quota(uuid, text, bigint, timestamptz, text), mandant.op_change_plan(uuid, text, text),
	mandant.op_usage_reconcile() TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.check_tenant_tables_registered() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.check_tenant_references() FROM PUBLIC;
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
REVOKE ALL ON FUNCTION mandant.op_export_tenant_stream(uuid), mandant.op_tenant_import_open(),
	mandant.tenant_import_open(), mandant.tenant_import_line() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_export_tenant_stream(uuid), mandant.op_tenant_import_open() TO mandant_admin;
REVOKE ALL ON FUNCTION mandant.forget_tables(oid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.forget_missing_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.http_routes_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.http_route_grants() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.http_call(jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.http_call(jsonb, text) TO mandant_gateway;
REVOKE ALL ON FUNCTION mandant.citus_setup() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.citus_truncate_local_history(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.state_machine_trigger_on_shards() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.audit_trigger_on_shards() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.outbox_trigger_on_shards() FROM PUBLIC;
REVOKE ALL ON FUNCTION mandant.citus_require_transaction_block(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION
	mandant.plan_restore_builtin(), mandant.check_excluded_columns(regclass, text[]),
	mandant.check_primary_key(regclass, text, text), mandant.check_state_names(text[], text),
	mandant.text_array(jsonb), mandant.check_email(text), mandant.require_user(),
	mandant.ttl_seconds(text), mandant.actor_role(uuid), mandant.check_role(uuid, text),
	mandant.check_owner_change(uuid, text, text), mandant.keep_an_owner(uuid),
	mandant.check_role_definition(text, text[]),
	mandant.check_user_exists(uuid), mandant.check_tenant_enterable(uuid),
	mandant.check_resource(text), mandant.effective_limit(uuid, text),
	mandant.check_limit(uuid, text, bigint), mandant.tenant_payload(mandant.tenant),
	mandant.tenant_tables(), mandant.random_bytes(integer), mandant.random_token(integer),
	mandant.base32_encode(bytea), mandant.api_require_platform_worker(),
	mandant.openapi_type(regtype), mandant.camel_case(text)
FROM PUBLIC;


/* ---- functions that 0.2.0 no longer has ---- */

DROP FUNCTION mandant.identity_call(text, uuid, jsonb);
DROP FUNCTION mandant.check_tenant_access(uuid, text);
DROP FUNCTION mandant.machine_for_change(text);
DROP FUNCTION mandant.enable_tenancy(regclass, name);

/*
 * ---- mandant.charge checks its caller itself (the gate's rule service) ----
 *
 * It is executable by everyone with the default rights, as in a fresh
 * installation; 0.1.0 granted it to mandant_service and mandant_admin.
 * Nothing of mandant depends on it; an application's function whose body
 * depends on it (BEGIN ATOMIC) stops the update here, without CASCADE.
 */
DROP FUNCTION mandant.charge(text, bigint);

CREATE FUNCTION mandant.charge(resource text, amount bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_charge'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.charge(text, bigint) IS
'Count amount of a resource that is not rows (e.g. storage_bytes) against the current tenant''s limit (MD030 past it); a negative amount gives back; resources that tables count are refused (22023). Trusted backends (mandant_service) and mandant_admin only: a negative charge frees quota.';

/* ---- rights and comments given in bulk by the install script ---- */

DO $revoke$
DECLARE
	fn regprocedure;
BEGIN
	FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE 'identity\_%'
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn,
					   'Internal: an identity operation, run by mandant.gate_call() after it checked the caller.');
	END LOOP;
END
$revoke$;

DO $revoke$
DECLARE
	fn regprocedure;
BEGIN
	FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'mandant'::regnamespace
				AND (p.proname LIKE 'registry\_%' OR p.proname LIKE 'machine\_%'
					 OR p.proname IN ('audit_verify_chain', 'usage_of'))
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn,
					   'Internal: a privileged operation, run by mandant.gate_call() after it checked the caller.');
	END LOOP;
END
$revoke$;

/* ---- registrations that 0.2.0 would refuse: gone relations, temporary tables ---- */

SELECT mandant.forget_missing_tables();
SELECT mandant.forget_tables(ARRAY(
	SELECT c.oid FROM pg_catalog.pg_class c
	WHERE c.relpersistence = 't'
	  AND c.oid IN (SELECT relid FROM mandant.tenant_table UNION SELECT relid FROM mandant.quota_table
					UNION SELECT relid FROM mandant.state_machine_table)));

/* ---- registrations of relations that are not tables (0.1.0 took views) ---- */

SELECT mandant.forget_tables(ARRAY(
	SELECT c.oid FROM pg_catalog.pg_class c
	WHERE c.relkind NOT IN ('r', 'p')
	  AND c.oid IN (SELECT relid FROM mandant.tenant_table UNION SELECT relid FROM mandant.quota_table
					UNION SELECT relid FROM mandant.state_machine_table)));

/*
 * The built-in machine of mandant.tenant as 0.2.0 defines it: 0.1.0 let
 * any role change it, and a guard planted there would run as its owner
 * at every suspension.
 */
UPDATE mandant.state_machine SET transition_columns = '{status_reason,updated_at}',
	owner = CURRENT_USER::regrole
WHERE name = 'mandant_tenant';
DELETE FROM mandant.state_transition WHERE machine = 'mandant_tenant';
DELETE FROM mandant.state_machine_state WHERE machine = 'mandant_tenant';
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

/*
 * Tenant tables' policies read through mandant.tenant_filter() (strict
 * mode) and check written rows with mandant.row_in_tenant(), whose
 * refusal names the table and both tenants; a policy still in 0.1.0's
 * form gets both.
 * Policies that drifted otherwise are left alone: tenancy_lint reports
 * them.
 */
DO $policies$
DECLARE
	t record;
BEGIN
	/* deparsed names are qualified as the comparison expects */
	PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
	FOR t IN SELECT r.relid::regclass AS tbl, r.tenant_column
			 FROM mandant.tenant_table r
			 JOIN pg_catalog.pg_policy p ON p.polrelid = r.relid AND p.polname = 'tenant_isolation'
			 WHERE pg_catalog.pg_get_expr(p.polqual, p.polrelid)
				   = pg_catalog.format('(%I = mandant.current_tenant())', r.tenant_column)
			   AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
				   = pg_catalog.format('(%I = mandant.require_tenant())', r.tenant_column)
	LOOP
		EXECUTE pg_catalog.format('ALTER POLICY tenant_isolation ON %s USING (%I = mandant.tenant_filter()) '
								  'WITH CHECK (mandant.row_in_tenant(%I, %L::text))',
								  t.tbl, t.tenant_column, t.tenant_column, t.tbl::text);
	END LOOP;
END
$policies$;

/* ---- no tenant may carry the platform's id (its audit chain is the platform's) ---- */

ALTER TABLE mandant.tenant ADD CONSTRAINT tenant_id_not_platform
	CHECK (id <> '00000000-0000-0000-0000-000000000000');

/* ---- tenant streams: the table COPY imports into (it keeps nothing) ---- */

CREATE TABLE mandant.tenant_import (
	line		text,
	CONSTRAINT tenant_import_keeps_nothing CHECK (false) NO INHERIT
);

COMMENT ON TABLE mandant.tenant_import IS
'Import a tenant from the lines of mandant.export_tenant_stream(): COPY mandant.tenant_import FROM STDIN. One statement imports one tenant, all or nothing: foreign keys and the audit chain are checked at the end, and a stream cut short or changed on the way is refused. The table keeps no rows. mandant_admin only.';

CREATE TRIGGER a_open BEFORE INSERT ON mandant.tenant_import
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.tenant_import_open();
CREATE TRIGGER b_line BEFORE INSERT ON mandant.tenant_import
	FOR EACH ROW EXECUTE FUNCTION mandant.tenant_import_line();
CREATE TRIGGER c_finish AFTER INSERT ON mandant.tenant_import
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.tenant_import_line();
-- They fire in replica mode too: an import is never skipped silently, and a
-- table owner's trigger that fires during an import's writes (replica mode)
-- cannot start another import unchecked.
ALTER TABLE mandant.tenant_import ENABLE ALWAYS TRIGGER a_open;
ALTER TABLE mandant.tenant_import ENABLE ALWAYS TRIGGER b_line;
ALTER TABLE mandant.tenant_import ENABLE ALWAYS TRIGGER c_finish;

REVOKE ALL ON mandant.tenant_import FROM PUBLIC;
GRANT INSERT ON mandant.tenant_import TO PUBLIC;		-- the gate refuses with its hint

/* ---- routes of the HTTP gateway: every backend reloads them after a change ---- */

CREATE TRIGGER http_routes_changed
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.http_route
FOR EACH STATEMENT EXECUTE FUNCTION mandant.http_routes_changed();

/* The routes that come with the extension (builtin: pg_dump leaves them out). */
INSERT INTO mandant.http_route (method, path, function, required_scope, public, paginated, summary,
								envelope, builtin, created_by) VALUES
	('POST', '/api/v1/auth/login', 'mandant.login(text,text,text,inet,text)', NULL, true, false,
	 'Sign in with e-mail and password (and a one-time code); the refresh token comes as a cookie', true, true, 'mandant'),
	('POST', '/api/v1/auth/refresh', 'mandant.refresh(text)', NULL, true, false,
	 'New tokens for the refresh cookie, which is rotated', true, true, 'mandant'),
	('POST', '/api/v1/auth/token', 'mandant.service_token(text,text)', NULL, true, false,
	 'A service account''s access token for its client id and secret', true, true, 'mandant'),
	('POST', '/api/v1/auth/logout', 'mandant.api_logout(text)', NULL, false, false,
	 'Sign out: the token and its session stop working, the cookie is cleared', true, true, 'mandant'),
	('GET', '/api/v1/auth/me', 'mandant.api_me()', NULL, false, false,
	 'The signed-in user, tenant, role and scopes', true, true, 'mandant'),
	('POST', '/api/v1/auth/totp/enroll', 'mandant.totp_enroll()', NULL, false, false,
	 'Start enrolling a second factor (TOTP)', true, true, 'mandant'),
	('POST', '/api/v1/auth/totp/confirm', 'mandant.totp_confirm(text)', NULL, false, false,
	 'Confirm the second factor with a one-time code', true, true, 'mandant'),
	('POST', '/api/v1/tenants', 'mandant.api_sign_up(text,text,text,text,text,inet)', NULL, true, false,
	 'Sign up: a new account that owns a new tenant', true, true, 'mandant'),
	('GET', '/api/v1/members', 'mandant.list_members()', 'read', false, true,
	 'The members of the tenant', true, true, 'mandant'),
	('POST', '/api/v1/members', 'mandant.api_add_member(uuid,text)', 'admin', false, false,
	 'Add a member', true, true, 'mandant'),
	('PATCH', '/api/v1/members/{userId}', 'mandant.api_set_member_role(uuid,text)', 'admin', false, false,
	 'Change a member''s role', true, true, 'mandant'),
	('DELETE', '/api/v1/members/{userId}', 'mandant.api_remove_member(uuid)', 'admin', false, false,
	 'Remove a member', true, true, 'mandant'),
	('GET', '/api/v1/config/{service}/{key}', 'mandant.api_config_get(text,text)', 'read', false, false,
	 'A configuration value, its version and scope', true, true, 'mandant'),
	('PUT', '/api/v1/config/{service}/{key}', 'mandant.api_config_put(text,text,jsonb,text,bigint)', 'admin', false, false,
	 'Set a configuration value (If-Match: the version it replaces)', true, true, 'mandant'),
	('GET', '/api/v1/audit', 'mandant.api_audit(timestamptz,text,text,text)', 'admin', false, true,
	 'The tenant''s audit events, newest first', true, true, 'mandant'),
	('POST', '/internal/v1/outbox/claim', 'mandant.api_outbox_claim(text,integer,interval)', 'internal', false, false,
	 'Lease pending outbox events (platform workers)', true, true, 'mandant'),
	('POST', '/internal/v1/outbox/ack', 'mandant.api_outbox_ack(bigint[])', 'internal', false, false,
	 'Mark leased events delivered (platform workers)', true, true, 'mandant'),
	('GET', '/.well-known/jwks.json', 'mandant.jwks()', NULL, true, false,
	 'The public keys that verify access tokens (JWKS)', false, true, 'mandant'),
	('GET', '/api/v1/openapi.json', 'mandant.openapi()', NULL, true, false,
	 'This document', false, true, 'mandant');
