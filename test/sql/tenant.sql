-- Tenants: mandant.create_tenant, slug rules, idempotency, visibility.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- A platform administrator creates tenants.
SET ROLE regress_admin;
SELECT mandant.create_tenant('tnt-acme', 'Acme Risk GmbH', 'owner@acme.test') AS acme_id \gset
SELECT id = :'acme_id' AS same_id, slug, name, status, plan_key, owner_email,
	   operation_id IS NULL AS no_operation, created_by,
	   id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_v4
FROM mandant.tenant WHERE slug = 'tnt-acme';

-- Other plans; the name is trimmed.
SELECT mandant.create_tenant('tnt-globex', '  Globex  ', 'it@globex.test', 'pro') IS NOT NULL AS created;
SELECT slug, name, plan_key FROM mandant.tenant WHERE slug = 'tnt-globex';

-- Digits and inner hyphens, 3 and 63 characters.
SELECT mandant.create_tenant('a1b', 'Short', 'o@short.test') IS NOT NULL AS created_3;
SELECT mandant.create_tenant(repeat('x', 61) || '-9', 'Long', 'o@long.test') IS NOT NULL AS created_63;

-- Idempotent by operation id: the same id returns the same tenant, once.
SELECT mandant.create_tenant('tnt-hooli', 'Hooli', 'o@hooli.test', 'starter',
							 '11111111-1111-4111-8111-111111111111') AS hooli_id \gset
SELECT mandant.create_tenant('tnt-hooli', 'Hooli', 'o@hooli.test', 'starter',
							 '11111111-1111-4111-8111-111111111111') = :'hooli_id' AS same_tenant;
SELECT count(*) AS hooli_rows FROM mandant.tenant WHERE slug = 'tnt-hooli';

-- The platform roles see every tenant; a session sees its own tenant only.
SELECT count(*) AS admin_sees FROM mandant.tenant WHERE slug LIKE 'tnt-%';
SET ROLE regress_service;
SELECT count(*) AS service_sees FROM mandant.tenant WHERE slug LIKE 'tnt-%';
SET ROLE regress_user;
SELECT count(*) AS user_sees_without_tenant FROM mandant.tenant;
-- Inside a tenant, a plain role sees that tenant's row (a trusted backend
-- enters the tenant, then drops to the plain role).
BEGIN;
SET LOCAL ROLE regress_service;
SELECT mandant.set_tenant(:'acme_id');
SET LOCAL ROLE regress_user;
SELECT slug FROM mandant.tenant;
ROLLBACK;

-- Invalid input: only mandant_admin creates tenants
SET ROLE regress_service;
SELECT mandant.create_tenant('tnt-nope', 'Nope', 'o@nope.test');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_user;
SELECT mandant.create_tenant('tnt-nope', 'Nope', 'o@nope.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: nobody writes mandant.tenant directly
INSERT INTO mandant.tenant (slug, name, owner_email) VALUES ('tnt-direct', 'Direct', 'o@d.test');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_admin;
UPDATE mandant.tenant SET status = 'active' WHERE slug = 'tnt-acme';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.tenant WHERE slug = 'tnt-acme';
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: NULL slug
SELECT mandant.create_tenant(NULL, 'Null', 'o@null.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: upper-case slug
SELECT mandant.create_tenant('Acme', 'Acme', 'o@acme.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: too short and too long
SELECT mandant.create_tenant('ab', 'Ab', 'o@ab.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant(repeat('x', 64), 'Long', 'o@long.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: not a DNS label
SELECT mandant.create_tenant('-acme', 'Acme', 'o@acme.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('acme-', 'Acme', 'o@acme.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('ac_me', 'Acme', 'o@acme.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('acme.example', 'Acme', 'o@acme.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('müller', 'Müller', 'o@mueller.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('xn--mller-kva', 'Müller', 'o@mueller.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: reserved words
SELECT mandant.create_tenant('www', 'WWW', 'o@www.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('api', 'API', 'o@api.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('admin', 'Admin', 'o@admin.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: duplicate slug
SELECT mandant.create_tenant('tnt-acme', 'Acme Again', 'o@acme.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: empty or blank name
SELECT mandant.create_tenant('tnt-blank', '   ', 'o@blank.test');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('tnt-blank', repeat('n', 201), 'o@blank.test');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: owner e-mail
SELECT mandant.create_tenant('tnt-mail', 'Mail', 'not-an-address');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_tenant('tnt-mail', 'Mail', NULL);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: unknown plan
SELECT mandant.create_tenant('tnt-plan', 'Plan', 'o@plan.test', 'platinum');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: an operation id reused for another slug
SELECT mandant.create_tenant('tnt-other', 'Other', 'o@other.test', 'free',
							 '11111111-1111-4111-8111-111111111111');
\echo :LAST_ERROR_SQLSTATE
-- Nothing was written by the refused calls.
SELECT count(*) AS tenants FROM mandant.tenant
WHERE slug LIKE 'tnt-%' OR slug IN ('a1b', repeat('x', 61) || '-9');
SELECT slug FROM mandant.tenant
WHERE slug IN ('tnt-nope', 'tnt-direct', 'tnt-blank', 'tnt-mail', 'tnt-plan', 'tnt-other', 'www', 'ab');

RESET ROLE;
DELETE FROM mandant.tenant WHERE slug LIKE 'tnt-%' OR slug IN ('a1b', repeat('x', 61) || '-9');
