-- Spoofing the tenant context: every way around mandant.set_tenant() and
-- mandant.authenticate() is refused with 42501, for non-superusers and for
-- superusers alike.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all
INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'spoof-acme', 'Acme', 'o@acme.test');

CREATE SCHEMA spoof AUTHORIZATION regress_user;

-- A tenant table with one row, to show that nothing leaks.
CREATE TABLE public.spoof_secret (tenant_id uuid, id int, secret text,
								  PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('public.spoof_secret');
GRANT SELECT ON public.spoof_secret TO regress_user;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO public.spoof_secret (id, secret) VALUES (1, 'acme only');
COMMIT;

SET ROLE regress_user;

-- Invalid input: SET
SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: SET LOCAL
BEGIN;
SET LOCAL app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: SET SESSION with an empty value
SET SESSION app.current_tenant = '';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: set_config, local and session
SELECT set_config('app.current_tenant', 'a0000000-0000-4000-8000-00000000000a', true);
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('app.current_tenant', 'a0000000-0000-4000-8000-00000000000a', false);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the user and the scopes
SET app.current_user_id = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
SET app.current_scopes = 'read,write,admin';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('app.current_scopes', 'internal', true);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a function with a SET clause
CREATE FUNCTION spoof.spoof_fn() RETURNS uuid LANGUAGE sql
	SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a'
	AS 'SELECT mandant.current_tenant()';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: ALTER ROLE ... SET on oneself
ALTER ROLE regress_user SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: PGOPTIONS at connection time
\! PGOPTIONS='-c app.current_tenant=a0000000-0000-4000-8000-00000000000a' psql -X -q -U regress_user -d contrib_regression -c 'SELECT 1' 2>&1 | sed -e 's/^psql: error: .*FATAL: /FATAL: /'
\! PGOPTIONS='-c app.current_scopes=admin' psql -X -q -U regress_user -d contrib_regression -c 'SELECT 1' 2>&1 | sed -e 's/^psql: error: .*FATAL: /FATAL: /'
-- Invalid input: a trusted backend must use the function too
SET ROLE regress_service;
BEGIN;
SET LOCAL app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- After all that, nothing is set and nothing leaks.
SET ROLE regress_user;
SELECT current_setting('app.current_tenant') AS tenant,
	   current_setting('app.current_scopes') AS scopes,
	   (SELECT count(*) FROM public.spoof_secret) AS visible_rows;

-- RESET is allowed: it can only clear the context.
RESET app.current_tenant;
RESET ALL;
SELECT mandant.current_tenant() IS NULL AS still_unset;

-- Superusers are refused too: the functions are the only way in.
RESET ROLE;
SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_user SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE contrib_regression SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored_role_settings FROM pg_db_role_setting
WHERE array_to_string(setconfig, ',') LIKE '%app.current_%';

-- The mandant.* prefix is reserved: no placeholder can be invented there.
SET mandant.current_tenant = 'a0000000-0000-4000-8000-00000000000a';
\echo :LAST_ERROR_SQLSTATE

DROP TABLE public.spoof_secret;
DROP SCHEMA spoof CASCADE;
DELETE FROM mandant.tenant WHERE slug LIKE 'spoof-%';
