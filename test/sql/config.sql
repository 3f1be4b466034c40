-- Versioned configuration: compare-and-set, tenant over global, history,
-- rollback, changes since a revision, secrets, notifications.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'cfg-acme', 'Acme', 'o@acme.test'),
	('b0000000-0000-4000-8000-00000000000b', 'cfg-globex', 'Globex', 'o@globex.test');
SELECT mandant.config_revision() AS start \gset

-- A platform administrator sets global values (no tenant).
SET ROLE regress_admin;
SELECT mandant.config_set('mailer', 'smtp.host', '"smtp.platform.example"', 'initial relay') AS version;
SELECT mandant.config_set('mailer', 'batch.size', '50', 'default batch') AS version;
SELECT mandant.config_set('mailer', 'smtp.password', '{"secretRef": "vault:mailer/smtp"}', 'relay credentials') AS version;

-- A trusted backend sets acme's own value; acme sees it over the global
-- one, globex sees the global one.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SET LOCAL app.request_id = 'req-cfg-1';
SELECT mandant.config_set('mailer', 'smtp.host', '"smtp.acme.example"', 'own relay') AS version;
SELECT mandant.config_get('mailer', 'smtp.host') AS acme_host, mandant.config_get('mailer', 'batch.size') AS batch,
	   mandant.config_get('mailer', 'nothing.here') AS missing;
SELECT key, value, version, scope FROM mandant.config_get_all('mailer') ORDER BY key;
COMMIT;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT mandant.config_get('mailer', 'smtp.host') AS globex_host;
COMMIT;
-- JSON null is a value (it overrides the global one); SQL NULL is "not set".
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT mandant.config_set('mailer', 'smtp.host', 'null', 'globex sends no mail') AS version;
SELECT mandant.config_get('mailer', 'smtp.host') IS NULL AS sql_null,
	   mandant.config_get('mailer', 'smtp.host') = 'null'::jsonb AS json_null,
	   mandant.config_get(NULL, 'smtp.host') IS NULL AS null_service;
ROLLBACK;

-- Compare-and-set: versions grow by one per key.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.config_set('mailer', 'smtp.host', '"smtp2.acme.example"', 'second relay', 1) AS version;
SELECT mandant.config_set('mailer', 'smtp.host', '"smtp3.acme.example"', 'third relay', 2) AS version;
-- Rollback writes a new version with the old value.
SELECT mandant.config_rollback('mailer', 'smtp.host', 1, 'third relay broken') AS version;
SELECT mandant.config_get('mailer', 'smtp.host') AS after_rollback;
-- Deleting the tenant's value falls back to the global one.
SELECT mandant.config_delete('mailer', 'smtp.host', 'back to the platform relay', 4) AS version;
SELECT mandant.config_get('mailer', 'smtp.host') AS after_delete;
-- ... and setting it again continues the versions.
SELECT mandant.config_set('mailer', 'smtp.host', '"smtp4.acme.example"', 'own relay again', 5) AS version;
-- History: who, when, old, new, reason, request id.
SELECT revision - :start AS rev, version, old_value, new_value, reason, changed_by, request_id
FROM mandant.config_history WHERE tenant_id = 'a0000000-0000-4000-8000-00000000000a' AND revision > :start
ORDER BY revision;
-- Changes since a revision: every entry changed later, with its value
-- (the tenant's and the global ones).
SELECT tenant_id IS NOT NULL AS tenant, service, key, value, version, revision - :start AS rev, deleted
FROM mandant.config_changes(:start + 2) ORDER BY revision;
SELECT mandant.config_revision() - :start AS revisions_so_far;
COMMIT;

-- (notifications are shown by the isolation spec config_revision)
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.config_set('mailer', 'batch.size', '100', 'bigger batches for acme') AS version;
COMMIT;

-- Invalid input: a stale version
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SAVEPOINT s;
SELECT mandant.config_set('mailer', 'smtp.host', '"stale"', 'race', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: a plain secret
SELECT mandant.config_set('mailer', 'smtp.Password', '"hunter2"', 'oops');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('billing', 'stripe_api_key', '{"secretRef": "vault:stripe", "value": "sk_live"}', 'oops');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('auth', 'jwt.private_key', '"-----BEGIN"', 'oops');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('auth', 'session.token_ttl', '900', 'not a secret value but a secret-looking key');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: service, key, reason, value
SELECT mandant.config_set('', 'k', '1', 'r');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('mailer', '', '1', 'r');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('mailer', 'smtp host', '1', 'r');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('mailer', repeat('k', 201), '1', 'r');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('mailer', 'smtp.port', '25', '  ');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('mailer', 'smtp.port', NULL, 'no value');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_set('mailer', 'smtp.port', 'twenty-five', 'not JSON');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: rollback to a version that never existed, delete of a missing key
SELECT mandant.config_rollback('mailer', 'smtp.host', 42, 'wishful');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.config_delete('mailer', 'never.set', 'cleanup');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: a tenant session writing a global value, an end user
-- without scope admin
SELECT mandant.config_set('mailer', 'smtp.host', '"hijack"', 'no tenant set');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SET LOCAL ROLE regress_user;
SELECT mandant.config_set('mailer', 'smtp.host', '"hijack"', 'end user without scope admin');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE regress_user;
SELECT mandant.config_write('mailer', 'smtp.host', '"hijack"', 'the gate itself', NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Invalid input: the applying function is nobody's to call, not even an
-- administrator's
SET ROLE regress_admin;
SELECT mandant.config_apply(NULL, 'mailer', 'smtp.host', '"hijack"', 'direct', NULL, 'someone else');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Invalid input: a SECURITY DEFINER function of an unprivileged role does
-- not borrow the rights of the administrator who calls it
CREATE SCHEMA cfg AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA cfg TO regress_admin;
SET ROLE regress_owner;
CREATE FUNCTION cfg.harmless() RETURNS bigint LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog
	AS $$ SELECT mandant.config_set('mailer', 'smtp.host', '"smtp.evil.example"', 'trojan') $$;
RESET ROLE;
SET ROLE regress_admin;
SELECT cfg.harmless();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP SCHEMA cfg CASCADE;
SET ROLE regress_user;
-- Invalid input: writing the tables directly or rewriting history
UPDATE mandant.config_entry SET value = '"hijack"';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM mandant.config_history;
\echo :LAST_ERROR_SQLSTATE
-- Nothing was written by the refusals.
SELECT mandant.config_revision() - :start AS revisions_so_far;

-- Tenants never see each other's values.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT count(*) AS acme_rows_visible_to_globex FROM mandant.config_entry
WHERE tenant_id = 'a0000000-0000-4000-8000-00000000000a';
SELECT count(*) AS acme_history_visible_to_globex FROM mandant.config_history
WHERE tenant_id = 'a0000000-0000-4000-8000-00000000000a';
COMMIT;
RESET ROLE;

-- A tenant's values go with the tenant.
DELETE FROM mandant.tenant WHERE slug LIKE 'cfg-%';
SELECT count(*) AS entries_left FROM mandant.config_entry
WHERE tenant_id IN ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-00000000000b');
DELETE FROM mandant.config_entry WHERE service = 'mailer';
