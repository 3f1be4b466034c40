-- The context envelope, mandant.context: the signed copy of the context
-- that Citus forwards to its workers (envelope.c), here without Citus.
-- Envelopes are made in SQL as the coordinator makes them (HMAC-SHA256
-- under the key file of mandant.context_key_file) and installed by hand;
-- their text is never printed (it holds an expiry).
-- Errors are shown with message, detail and hint, then their SQLSTATE.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

-- Fixtures: roles, a tenant table, and two tenants with rows in it.
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all
CREATE SCHEMA env AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA env TO regress_service, regress_user;
SET ROLE regress_owner;
CREATE TABLE env.note (tenant_id uuid, id int, body text, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('env.note');
GRANT SELECT, INSERT ON env.note TO regress_service, regress_user;
RESET ROLE;
INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'env-acme', 'Acme', 'o@acme.test'),
	('b0000000-0000-4000-8000-00000000000b', 'env-globex', 'Globex', 'o@globex.test');
INSERT INTO env.note VALUES
	('a0000000-0000-4000-8000-00000000000a', 1, 'acme 1'),
	('a0000000-0000-4000-8000-00000000000a', 2, 'acme 2'),
	('b0000000-0000-4000-8000-00000000000b', 1, 'globex 1');

-- pg_temp.envelope(): an envelope as the coordinator signs it, valid for
-- seconds from now (negative: expired), under the key of the file key_file.
CREATE FUNCTION pg_temp.b64url(bytes bytea) RETURNS text
LANGUAGE sql AS $$ SELECT rtrim(translate(encode(bytes, 'base64'), E'+/\n', '-_'), '=') $$;
CREATE FUNCTION pg_temp.envelope(tenant uuid, usr uuid, scopes text, role text,
								 seconds int DEFAULT 300, request_id text DEFAULT '', trace_id text DEFAULT '',
								 key_file text DEFAULT current_setting('mandant.context_key_file'),
								 version text DEFAULT 'm1')
RETURNS text LANGUAGE sql AS $$
	SELECT p || '.' || pg_temp.b64url(hmac(convert_to(p, 'UTF8'), pg_read_binary_file(key_file), 'sha256'))
	FROM (SELECT concat_ws('.', version, coalesce(tenant::text, ''), coalesce(usr::text, ''), scopes,
						   extract(epoch FROM now())::bigint + seconds,
						   pg_temp.b64url(convert_to(role, 'UTF8')),
						   pg_temp.b64url(convert_to(request_id, 'UTF8')),
						   pg_temp.b64url(convert_to(trace_id, 'UTF8'))) AS p) s
$$;
SELECT pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', '11111111-1111-4111-8111-111111111111',
						'read,write', 'regress_service', request_id => 'req-env-1',
						trace_id => 'trace-env-1') AS env_acme,
	   pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_service') AS env_tenant_only,
	   pg_temp.envelope('b0000000-0000-4000-8000-00000000000b', NULL, '', 'regress_user') AS env_globex_user,
	   pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_service', -5) AS env_expired,
	   pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_service',
						key_file => current_setting('mandant.jwt_private_key_file')) AS env_other_key,
	   pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_service',
						3600 * 24 * 365) AS env_far,
	   current_setting('mandant.jwt_private_key_file') AS jwt_key_file
\gset
-- The same envelope with its tenant changed, its MAC kept.
SELECT replace(:'env_tenant_only', 'a0000000-0000-4000-8000-00000000000a',
			   'b0000000-0000-4000-8000-00000000000b') AS env_altered \gset

-- Without Citus, the functions that assign a context leave mandant.context
-- empty: nothing forwards it.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
RESET ROLE;
SELECT current_setting('mandant.context') = '' AS no_envelope_without_citus;
SET ROLE regress_service;
ROLLBACK;

-- A node that clients use (mandant.accept_context_envelopes off, the
-- default) takes no envelope, not even a good one: a session cannot replay
-- another session's envelope of its role there.
SET ROLE regress_service;
BEGIN;
SET LOCAL mandant.context = :'env_acme';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
-- A Citus worker takes them (a superuser-only setting; the workers' files set it).
SET ROLE regress_service;
SET mandant.accept_context_envelopes = on;
RESET ROLE;
SET mandant.accept_context_envelopes = on;
SET ROLE regress_service;

-- A worker's view: no context of its own, an envelope from the
-- coordinator; the getters and the tenant table's policy answer from it.
BEGIN;
SET LOCAL mandant.context = :'env_acme';
SELECT mandant.current_tenant(), mandant.current_user_id(), mandant.current_scopes(),
	   mandant.has_scope('write') AS can_write, mandant.require_tenant();
SELECT id, body FROM env.note ORDER BY id;
INSERT INTO env.note (id, body) VALUES (3, 'acme 3 through the envelope');
SELECT tenant_id, id FROM env.note WHERE id = 3;
-- Events written there carry the envelope's request and trace ids.
SELECT mandant.emit('env.note.checked', '3', '{}') AS env_event \gset
RESET ROLE;
SELECT headers ->> 'requestId' AS request_id, headers ->> 'traceId' AS trace_id
FROM mandant.outbox WHERE event_id = :'env_event';
SET ROLE regress_service;
ROLLBACK;
-- It ends with its transaction.
SELECT mandant.current_tenant() IS NULL AS no_tenant_after, count(*) AS rows_after FROM env.note;

-- set_config() in the transaction works the same (for those who may read
-- the setting back: superusers, who pass the role check as they have the
-- privileges of every role); a session-wide one is good for the
-- transaction that set it only.
RESET ROLE;
BEGIN;
SELECT set_config('mandant.context', :'env_tenant_only', true) <> '' AS installed;
SELECT mandant.current_tenant();
COMMIT;
SELECT set_config('mandant.context', :'env_tenant_only', false) <> '' AS installed_for_session;
SELECT mandant.current_tenant() IS NULL AS not_in_the_next_transaction;
RESET mandant.context;
SET ROLE regress_service;

-- A context of the node's own takes precedence over the envelope, as a
-- whole: set_tenant clears the envelope's user and scopes too.
BEGIN;
SET LOCAL mandant.context = :'env_acme';
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT mandant.current_tenant(), mandant.current_user_id() IS NULL AS no_user,
	   mandant.current_scopes() AS scopes, count(*) AS rows FROM env.note;
ROLLBACK;

-- A rolled back savepoint restores the envelope before it; an empty
-- envelope clears it.
BEGIN;
SET LOCAL mandant.context = :'env_tenant_only';
SAVEPOINT s;
SET LOCAL mandant.context = '';
SELECT mandant.current_tenant() IS NULL AS cleared;
ROLLBACK TO SAVEPOINT s;
SELECT mandant.current_tenant() AS restored;
ROLLBACK;

-- SET of a context setting is refused by the utility hook, with the check
-- hook's error; RESET goes back to empty and is allowed.
SET ROLE regress_service;
BEGIN;
SET LOCAL app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SET app.current_scopes FROM CURRENT;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET app.current_tenant;
SET app.request_id = 'free to set';
RESET app.request_id;

-- A worker remembers the envelope it verified last, for the role it
-- names: the same text again is taken without a new MAC, but not once it
-- expired, and not after the key changed.
RESET ROLE;
SELECT pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_service', 1)
	AS env_short \gset
SET ROLE regress_service;
BEGIN;
SET LOCAL mandant.context = :'env_short';
SELECT mandant.current_tenant() AS short_lived;
COMMIT;
SELECT pg_sleep(2);
\set VERBOSITY terse
BEGIN;
SET LOCAL mandant.context = :'env_short';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
\set VERBOSITY default
BEGIN;
SET LOCAL mandant.context = :'env_tenant_only';
SELECT mandant.current_tenant() AS before_the_key_changed;
COMMIT;
RESET ROLE;
ALTER SYSTEM SET mandant.context_key_file TO :'jwt_key_file';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SET ROLE regress_service;
BEGIN;
SET LOCAL mandant.context = :'env_tenant_only';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SET LOCAL mandant.context = :'env_other_key';
SELECT mandant.current_tenant() AS under_the_new_key;
COMMIT;
RESET ROLE;
ALTER SYSTEM RESET mandant.context_key_file;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SET ROLE regress_service;

-- An erase envelope (e1, delete_tenant's erasure on Citus) names the tenant
-- whose history its role may delete there, through the policies
-- citus_setup() puts on the distributed log; never for a role that
-- bypasses row level security, whom those policies would not hold.  The
-- log itself takes no DELETE here (no grant without Citus).
RESET ROLE;
CREATE ROLE regress_bypass_owner LOGIN BYPASSRLS;
SELECT pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_owner',
						version => 'e1') AS env_erase,
	   pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_bypass_owner',
						version => 'e1') AS env_erase_bypass,
	   pg_temp.envelope('a0000000-0000-4000-8000-00000000000a', NULL, '', 'regress_owner',
						version => 'o1') AS env_owner
\gset
SET ROLE regress_owner;
BEGIN;
SET LOCAL mandant.context = :'env_erase';
SELECT mandant.erasing_history_of() AS erasing, mandant.current_tenant() IS NULL AS no_context;
DELETE FROM mandant.state_transition_log;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SET LOCAL mandant.context = :'env_owner';
SELECT mandant.erasing_history_of() IS NULL AS owner_envelope_erases_nothing;
ROLLBACK;
RESET ROLE;
SET ROLE regress_bypass_owner;
BEGIN;
SET LOCAL mandant.context = :'env_erase_bypass';
SELECT mandant.erasing_history_of() IS NULL AS bypassrls_erases_nothing;
ROLLBACK;
RESET ROLE;
DROP ROLE regress_bypass_owner;
SET ROLE regress_service;

-- Invalid input: an envelope whose tenant was changed (the MAC no longer
-- matches)
BEGIN;
SET LOCAL mandant.context = :'env_altered';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: an envelope signed with another key
BEGIN;
SET LOCAL mandant.context = :'env_other_key';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: another role's envelope (replayed by regress_user)
SET ROLE regress_user;
BEGIN;
SET LOCAL mandant.context = :'env_acme';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT set_config('mandant.context', :'env_acme', true);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: an expired envelope (terse: the detail counts seconds)
SET ROLE regress_service;
\set VERBOSITY terse
SET mandant.context = :'env_expired';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- Invalid input: not an envelope
SET mandant.context = 'tenant=a0000000-0000-4000-8000-00000000000a;mac=00';
\echo :LAST_ERROR_SQLSTATE
SET mandant.context = 'm1.a0000000-0000-4000-8000-00000000000a......';
\echo :LAST_ERROR_SQLSTATE
SET mandant.context = 'm1.not-a-uuid.....cmVncmVzc19zZXJ2aWNl..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: an envelope from a role's settings (not from a session)
RESET ROLE;
ALTER ROLE regress_service SET mandant.context = :'env_far';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: an envelope where no key is configured (the superuser
-- empties mandant.context_key_file for a moment)
ALTER SYSTEM SET mandant.context_key_file = '';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT current_setting('mandant.context_key_file') = '' AS no_key;
SET ROLE regress_service;
SET mandant.context = :'env_far';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER SYSTEM RESET mandant.context_key_file;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT current_setting('mandant.context_key_file') <> '' AS key_back;
-- Invalid input: non-superusers do not see the envelope, so set_config(),
-- which returns it, fails for them too
SET ROLE regress_service;
SELECT current_setting('mandant.context');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT set_config('mandant.context', :'env_tenant_only', true) <> '' AS installed;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

RESET ROLE;
DROP SCHEMA env CASCADE;
DELETE FROM mandant.tenant WHERE slug LIKE 'env-%';
