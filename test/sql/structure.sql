-- Structure, checked with pgTAP: objects, signatures, volatility, rights,
-- policies, and the SQLSTATEs of the main refusals.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\pset tuples_only on
\pset format unaligned

CREATE SCHEMA tap;
CREATE TABLE tap.doc (id int NOT NULL, body text);
SELECT mandant.enable_tenancy('tap.doc', add_column => true);

SELECT plan(195);

-- Schema, roles
SELECT has_schema('mandant');
SELECT has_role('mandant_admin');
SELECT has_role('mandant_service');
SELECT has_role('mandant_gateway');
SELECT is(rolcanlogin, false, rolname || ' is NOLOGIN')
FROM pg_roles WHERE rolname IN ('mandant_admin', 'mandant_service', 'mandant_gateway') ORDER BY rolname;
SELECT is(rolbypassrls OR rolsuper, false, rolname || ' bypasses nothing')
FROM pg_roles WHERE rolname IN ('mandant_admin', 'mandant_service', 'mandant_gateway') ORDER BY rolname;

-- Tables
SELECT has_table('mandant', 'tenant', 'table mandant.tenant exists');
SELECT has_table('mandant', 'plan', 'table mandant.plan exists');
SELECT has_table('mandant', 'tenant_table', 'table mandant.tenant_table exists');
SELECT has_table('mandant', 'reserved_slug', 'table mandant.reserved_slug exists');
SELECT col_is_pk('mandant', 'tenant', 'id', 'tenant.id is the primary key');
SELECT col_is_unique('mandant', 'tenant', 'slug', 'tenant.slug is unique');
SELECT col_is_unique('mandant', 'tenant', 'operation_id', 'tenant.operation_id is unique');
SELECT fk_ok('mandant', 'tenant', 'plan_key', 'mandant', 'plan', 'key');
SELECT results_eq('SELECT key FROM mandant.plan WHERE builtin ORDER BY key',
				  ARRAY['enterprise', 'free', 'pro', 'starter'], 'the four plans are seeded');

-- Functions and their signatures
SELECT has_function('mandant', 'set_tenant', ARRAY['uuid']);
SELECT has_function('mandant', 'set_scopes', ARRAY['text[]']);
SELECT has_function('mandant', 'current_tenant', '{}'::name[]);
SELECT has_function('mandant', 'current_user_id', '{}'::name[]);
SELECT has_function('mandant', 'current_scopes', '{}'::name[]);
SELECT has_function('mandant', 'has_scope', ARRAY['text']);
SELECT has_function('mandant', 'require_tenant', '{}'::name[]);
SELECT has_function('mandant', 'create_tenant', ARRAY['text', 'text', 'text', 'text', 'uuid']);
SELECT has_function('mandant', 'enable_tenancy', ARRAY['regclass', 'name', 'boolean']);
SELECT has_function('mandant', 'disable_tenancy', ARRAY['regclass']);
SELECT has_function('mandant', 'tenancy_lint', '{}'::name[]);
SELECT function_returns('mandant', 'create_tenant', ARRAY['text', 'text', 'text', 'text', 'uuid'], 'uuid');
SELECT function_returns('mandant', 'current_scopes', '{}'::name[], 'text[]');

-- The context getters are C, STABLE and PARALLEL SAFE
SELECT function_lang_is('mandant', f, '{}'::name[], 'c') FROM unnest(ARRAY['current_tenant', 'current_user_id', 'current_scopes', 'require_tenant']) f;
SELECT volatility_is('mandant', f, '{}'::name[], 'stable') FROM unnest(ARRAY['current_tenant', 'current_user_id', 'current_scopes', 'require_tenant']) f;
SELECT is(proparallel, 's', proname || ' is PARALLEL SAFE')
FROM pg_proc WHERE pronamespace = 'mandant'::regnamespace
  AND proname IN ('current_tenant', 'current_user_id', 'current_scopes', 'require_tenant', 'has_scope')
ORDER BY proname;
SELECT is(proparallel, 'u', proname || ' is PARALLEL UNSAFE (it changes settings)')
FROM pg_proc WHERE pronamespace = 'mandant'::regnamespace AND proname IN ('set_tenant', 'set_scopes')
ORDER BY proname;

-- SECURITY DEFINER functions pin search_path; every function has a comment
SELECT is_definer('mandant', 'op_create_tenant', ARRAY['text', 'text', 'text', 'text', 'uuid']);
SELECT isnt_definer('mandant', 'enable_tenancy', ARRAY['regclass', 'name', 'boolean']);
SELECT is_empty($$SELECT oid::regprocedure FROM pg_proc
				  WHERE pronamespace = 'mandant'::regnamespace AND prosecdef
					AND NOT coalesce(proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp']$$,
				'every SECURITY DEFINER function sets search_path = pg_catalog, pg_temp');
SELECT is_empty($$SELECT oid::regprocedure FROM pg_proc
				  WHERE pronamespace = 'mandant'::regnamespace AND obj_description(oid, 'pg_proc') IS NULL$$,
				'every function in schema mandant has a comment');

-- Rights
SELECT function_privs_are('mandant', 'op_create_tenant', ARRAY['text', 'text', 'text', 'text', 'uuid'],
						  'mandant_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('mandant', 'op_create_tenant', ARRAY['text', 'text', 'text', 'text', 'uuid'],
						  'mandant_service', '{}'::text[]);
SELECT function_privs_are('mandant', 'forget_dropped_tables', '{}'::name[], 'mandant_service', '{}'::text[]);
SELECT table_privs_are('mandant', 'tenant', 'mandant_admin', ARRAY['SELECT']);
SELECT table_privs_are('mandant', 'plan', 'mandant_service', ARRAY['SELECT']);
SELECT ok(NOT has_column_privilege('mandant_gateway', 'mandant.tenant', 'id', 'REFERENCES'),
		  'only mandant references mandant.tenant(id) (enable_tenancy adds the key)');
SELECT ok(NOT has_table_privilege('mandant_gateway', 'mandant.tenant', 'INSERT, UPDATE, DELETE, TRUNCATE'),
		  'nobody writes mandant.tenant directly');

-- Policies
SELECT policies_are('mandant', 'tenant', ARRAY['tenant_self', 'tenant_platform']);
SELECT policy_roles_are('mandant', 'tenant', 'tenant_platform', ARRAY['mandant_admin', 'mandant_service']);
SELECT policies_are('mandant', 'tenant_table', ARRAY['tenant_table_read']);
SELECT policies_are('tap', 'doc', ARRAY['tenant_isolation']);
SELECT policy_cmd_is('tap', 'doc', 'tenant_isolation', 'all', 'tenant_isolation covers every command');
SELECT is(polroles, '{0}', 'tenant_isolation applies to every role (PUBLIC)')
FROM pg_policy WHERE polrelid = 'tap.doc'::regclass AND polname = 'tenant_isolation';
SELECT col_not_null('tap', 'doc', 'tenant_id', 'tap.doc.tenant_id is NOT NULL');
SELECT col_type_is('tap', 'doc', 'tenant_id', 'uuid', 'tap.doc.tenant_id is a uuid');
SELECT col_default_is('tap', 'doc', 'tenant_id', 'mandant.current_tenant()', 'tap.doc.tenant_id defaults to the context');
SELECT fk_ok('tap', 'doc', 'tenant_id', 'mandant', 'tenant', 'id');
SELECT ok((SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'tap.doc'::regclass),
		  'tap.doc has row level security enabled and forced');

-- Audit trail
SELECT has_table('mandant', 'audit_event', 'table mandant.audit_event exists');
SELECT has_table('mandant', 'audit_seal', 'table mandant.audit_seal exists');
SELECT has_function('mandant', 'enable_audit', ARRAY['regclass', 'text', 'text[]']);
SELECT has_function('mandant', 'disable_audit', ARRAY['regclass']);
SELECT has_function('mandant', 'audit_log', ARRAY['text', 'text', 'text', 'text', 'jsonb']);
SELECT has_function('mandant', 'audit_seal', '{}'::name[]);
SELECT has_function('mandant', 'audit_verify', ARRAY['uuid']);
SELECT has_table('mandant', 'audit_checkpoint', 'table mandant.audit_checkpoint exists');
SELECT has_function('mandant', 'audit_verify_since_checkpoint', ARRAY['uuid']);
SELECT table_privs_are('mandant', 'audit_checkpoint', 'mandant_admin', ARRAY['SELECT']);
SELECT function_lang_is('mandant', 'audit_trigger', '{}'::name[], 'c');
SELECT function_lang_is('mandant', 'audit_log', ARRAY['text', 'text', 'text', 'text', 'jsonb'], 'c');
SELECT function_privs_are('mandant', 'op_audit_seal', '{}'::name[], 'mandant_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('mandant', 'op_audit_events', ARRAY['uuid', 'timestamp with time zone', 'text', 'text', 'integer'],
						  'mandant_service', '{}'::text[]);
SELECT table_privs_are('mandant', 'audit_event', 'mandant_admin', ARRAY['SELECT']);
SELECT policies_are('mandant', 'audit_event', ARRAY['tenant_isolation']);
SELECT trigger_is('mandant', 'audit_event', 'append_only', 'mandant', 'audit_append_only');
SELECT is(tgenabled, 'A', 'the append-only guard of ' || tgrelid::regclass || ' fires always')
FROM pg_trigger WHERE tgname = 'append_only' ORDER BY tgrelid::regclass::text;

-- Status machines
SELECT has_function('mandant', 'create_state_machine', ARRAY['text', 'text[]', 'text[]', 'text[]', 'text[]']);
SELECT has_function('mandant', 'add_transition', ARRAY['text', 'text', 'text', 'text', 'regprocedure']);
SELECT has_function('mandant', 'remove_transition', ARRAY['text', 'text', 'text']);
SELECT has_function('mandant', 'enable_state_machine', ARRAY['regclass', 'text', 'name', 'boolean']);
SELECT has_function('mandant', 'disable_state_machine', ARRAY['regclass']);
SELECT has_function('mandant', 'next_states', ARRAY['text', 'text']);
SELECT function_returns('mandant', 'next_states', ARRAY['text', 'text'], 'text[]');
SELECT function_lang_is('mandant', 'state_machine_trigger', '{}'::name[], 'c');
SELECT policies_are('mandant', 'state_transition_log', ARRAY['tenant_isolation']);
SELECT trigger_is('mandant', 'state_transition', 'reload', 'mandant', 'state_machines_changed');

-- Outbox
SELECT has_function('mandant', 'enable_outbox', ARRAY['regclass', 'text', 'text', 'text[]']);
SELECT has_function('mandant', 'emit', ARRAY['text', 'text', 'jsonb']);
SELECT has_function('mandant', 'outbox_claim', ARRAY['text', 'integer', 'interval']);
SELECT function_lang_is('mandant', 'outbox_trigger', '{}'::name[], 'c');
SELECT function_privs_are('mandant', 'op_outbox_claim', ARRAY['text', 'integer', 'interval'], 'mandant_service', ARRAY['EXECUTE']);
SELECT function_privs_are('mandant', 'op_outbox_claim', ARRAY['text', 'integer', 'interval'], 'mandant_gateway', '{}'::text[]);
SELECT policies_are('mandant', 'outbox', ARRAY['tenant_isolation']);

-- Configuration
SELECT has_function('mandant', 'config_set', ARRAY['text', 'text', 'jsonb', 'text', 'bigint']);
SELECT function_returns('mandant', 'config_set', ARRAY['text', 'text', 'jsonb', 'text', 'bigint'], 'bigint');
SELECT has_function('mandant', 'config_get', ARRAY['text', 'text']);
SELECT function_returns('mandant', 'config_get', ARRAY['text', 'text'], 'jsonb');
SELECT has_function('mandant', 'config_get_all', ARRAY['text']);
SELECT has_function('mandant', 'config_delete', ARRAY['text', 'text', 'text', 'bigint']);
SELECT has_function('mandant', 'config_rollback', ARRAY['text', 'text', 'bigint', 'text']);
SELECT has_function('mandant', 'config_changes', ARRAY['bigint']);
SELECT has_function('mandant', 'config_revision', '{}'::name[]);
SELECT isnt_definer('mandant', 'config_set', ARRAY['text', 'text', 'jsonb', 'text', 'bigint']);
SELECT is_definer('mandant', 'config_apply', ARRAY['uuid', 'text', 'text', 'jsonb', 'text', 'bigint', 'text']);
SELECT function_privs_are('mandant', 'config_apply', ARRAY['uuid', 'text', 'text', 'jsonb', 'text', 'bigint', 'text'],
						  'mandant_admin', '{}'::text[]);
SELECT policies_are('mandant', 'config_entry', ARRAY['tenant_or_global']);
SELECT policies_are('mandant', 'config_history', ARRAY['tenant_or_global']);
SELECT trigger_is('mandant', 'config_history', 'append_only', 'mandant', 'audit_append_only');

-- Identity
SELECT has_table('mandant', t, 'table mandant.' || t || ' exists')
FROM unnest(ARRAY['users', 'role', 'membership', 'service_account', 'refresh_family', 'refresh_token',
				  'revoked_jti', 'login_attempt']) t ORDER BY t;
SELECT has_function('mandant', 'login', ARRAY['text', 'text', 'text', 'inet', 'text']);
SELECT function_returns('mandant', 'login', ARRAY['text', 'text', 'text', 'inet', 'text'], 'jsonb');
SELECT has_function('mandant', 'authenticate', ARRAY['text']);
SELECT function_lang_is('mandant', 'authenticate', ARRAY['text'], 'c');
SELECT has_function('mandant', 'refresh', ARRAY['text']);
SELECT has_function('mandant', 'logout', ARRAY['text']);
SELECT has_function('mandant', 'revoke_user_tokens', ARRAY['uuid']);
SELECT has_function('mandant', 'jwks', '{}'::name[]);
SELECT has_function('mandant', 'set_user', ARRAY['uuid']);
SELECT function_lang_is('mandant', 'set_user', ARRAY['uuid'], 'c');
SELECT has_function('mandant', 'rate_limit', ARRAY['text', 'integer', 'interval']);
SELECT has_function('mandant', 'totp_enroll', '{}'::name[]);
SELECT has_function('mandant', 'totp_confirm', ARRAY['text']);
SELECT has_function('mandant', 'totp_disable', ARRAY['text']);
SELECT has_function('mandant', 'create_user', ARRAY['text', 'text', 'text']);
SELECT has_function('mandant', 'add_member', ARRAY['uuid', 'uuid', 'text']);
SELECT has_function('mandant', 'set_member_role', ARRAY['uuid', 'uuid', 'text']);
SELECT has_function('mandant', 'remove_member', ARRAY['uuid', 'uuid']);
SELECT has_function('mandant', 'disable_user', ARRAY['uuid']);
SELECT has_function('mandant', 'change_password', ARRAY['text', 'text']);
SELECT has_function('mandant', 'reset_password', ARRAY['uuid', 'text']);
SELECT has_function('mandant', 'list_members', '{}'::name[]);
SELECT has_function('mandant', 'create_service_account', ARRAY['text', 'text[]', 'uuid']);
SELECT has_function('mandant', 'service_token', ARRAY['text', 'text']);
SELECT function_privs_are('mandant', 'jwt_sign', ARRAY['jsonb'], r, '{}'::text[])
FROM unnest(ARRAY['mandant_admin', 'mandant_gateway', 'mandant_service']) r ORDER BY r;
SELECT is(count(*), 0::bigint, 'no role but the owner may run an identity operation directly')
FROM pg_proc p
WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE 'identity\_%' AND p.proname <> 'identity_call'
  AND (has_function_privilege('mandant_gateway', p.oid, 'EXECUTE') OR has_function_privilege('mandant_admin', p.oid, 'EXECUTE'));
SELECT ok(NOT has_table_privilege('mandant_gateway', 'mandant.users', 'SELECT, INSERT, UPDATE, DELETE'),
		  'applications cannot touch mandant.users');
SELECT ok(NOT has_column_privilege('mandant_admin', 'mandant.users', 'password_hash', 'SELECT')
		  AND NOT has_column_privilege('mandant_admin', 'mandant.users', 'totp_secret', 'SELECT')
		  AND NOT has_column_privilege('mandant_admin', 'mandant.service_account', 'secret_hash', 'SELECT'),
		  'not even platform administrators read password hashes and secrets');
SELECT results_eq('SELECT name, scopes FROM mandant.role WHERE tenant_id IS NULL ORDER BY name',
				  $$VALUES ('admin', '{read,write,delete,admin}'::text[]), ('agent', '{read,write}'), ('manager', '{read,write}'),
						   ('owner', '{read,write,delete,admin}'), ('viewer', '{read}')$$,
				  'the system roles and their scopes');

-- Tenant lifecycle, plans, quotas
SELECT has_function('mandant', 'suspend_tenant', ARRAY['uuid', 'text']);
SELECT has_function('mandant', 'resume_tenant', ARRAY['uuid']);
SELECT has_function('mandant', 'delete_tenant', ARRAY['uuid', 'text']);
SELECT function_returns('mandant', 'delete_tenant', ARRAY['uuid', 'text'], 'jsonb');
SELECT has_function('mandant', 'export_tenant', ARRAY['uuid']);
SELECT has_function('mandant', 'import_tenant', ARRAY['jsonb']);
SELECT has_function('mandant', 'complete_tenant_provisioning', ARRAY['uuid']);
SELECT has_function('mandant', 'fail_tenant_provisioning', ARRAY['uuid', 'text']);
SELECT has_function('mandant', 'change_plan', ARRAY['uuid', 'text', 'text']);
SELECT has_function('mandant', 'set_quota', ARRAY['uuid', 'text', 'bigint', 'timestamp with time zone', 'text']);
SELECT has_function('mandant', 'enable_quota', ARRAY['regclass', 'text']);
SELECT has_function('mandant', 'charge', ARRAY['text', 'bigint']);
SELECT has_function('mandant', 'usage', ARRAY['uuid']);
SELECT has_function('mandant', 'usage_reconcile', '{}'::name[]);
SELECT function_lang_is('mandant', 'quota_trigger', '{}'::name[], 'c');
SELECT function_lang_is('mandant', 'charge', ARRAY['text', 'bigint'], 'c');
SELECT function_privs_are('mandant', 'op_delete_tenant', ARRAY['uuid', 'text'], 'mandant_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('mandant', f, a, 'mandant_service', '{}'::text[])
FROM (VALUES ('op_delete_tenant', ARRAY['uuid', 'text']), ('op_export_tenant', ARRAY['uuid']), ('op_import_tenant', ARRAY['jsonb']),
			 ('op_set_quota', ARRAY['uuid', 'text', 'bigint', 'timestamp with time zone', 'text'])) v (f, a) ORDER BY f;
SELECT trigger_is('mandant', 'tenant', 'zz_mandant_state_machine', 'mandant', 'state_machine_trigger');
SELECT hasnt_trigger('mandant', 'membership', 'mandant_quota', 'no trigger on mandant''s own tables fires during pg_restore');
SELECT results_eq($$SELECT key, limits ->> 'users', limits ->> 'records', limits ->> 'storage_bytes'
					FROM mandant.plan WHERE builtin ORDER BY limits ->> 'storage_bytes' IS NULL, (limits ->> 'storage_bytes')::bigint$$,
				  $$VALUES ('free', '2', '5', '1073741824'), ('starter', '5', '25', '10737418240'),
						   ('pro', '20', '100', '53687091200'), ('enterprise', NULL, NULL, '536870912000')$$,
				  'the plans of the seeds: 2/5/20/unlimited users, 5/25/100/unlimited records, 1/10/50/500 GB');

-- Backups: a dumped table's sequences are dumped with it, or a restored
-- database hands out ids that are taken.
SELECT is_empty($$
	SELECT s.oid::regclass::text FROM pg_extension e
	JOIN pg_depend d ON d.refobjid = ANY (e.extconfig) AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
	JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
	WHERE e.extname = 'mandant' AND NOT s.oid = ANY (e.extconfig)$$,
	'every sequence behind a dumped table of mandant is dumped too');

-- Refusals and their SQLSTATEs
SELECT throws_ok('SELECT mandant.require_tenant()', 'MD001', 'no tenant is set');
SELECT throws_ok($$SELECT mandant.set_tenant('00000000-0000-4000-8000-000000000000')$$, 'MD002');
SELECT throws_ok($$SET app.current_tenant = '00000000-0000-4000-8000-000000000000'$$, '42501',
				 'permission denied to set parameter "app.current_tenant"');
SELECT throws_ok($$SELECT mandant.create_tenant('www', 'W', 'o@w.test')$$, '22023');
SELECT throws_ok($$SELECT mandant.enable_tenancy('pg_class')$$, '42501');

SELECT * FROM finish();

DROP SCHEMA tap CASCADE;
