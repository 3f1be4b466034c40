-- Adversarial, class 3: nobody writes records into another tenant's audit
-- chain, outbox or usage counters, and nobody emits the platform's
-- events.  Only mandant attaches its triggers (EXECUTE on them is
-- mandant's), the triggers run only on tables registered by their owner,
-- and a row of a tenant is recorded only from inside that tenant (or by a
-- trusted backend).
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_attack_forgery
\i test/fixtures/attack.sql
\set ECHO all

-- 3a. A login role attaches mandant's triggers to a temporary table whose
-- tenant_id names the victim.
SET SESSION AUTHORIZATION regress_attacker;
CREATE TEMP TABLE invoices (id int PRIMARY KEY, tenant_id uuid, amount int);
CREATE TRIGGER mandant_audit AFTER INSERT OR DELETE ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger('billing');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER mandant_outbox AFTER INSERT ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger('platform', 'tenant');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER mandant_quota AFTER INSERT OR DELETE ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.quota_trigger('records', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger('mandant_tenant', 'status', 'log');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_audit('invoices');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('attach_outbox', NULL, jsonb_build_object('table', 'invoices'::regclass::oid, 'domain', 'billing'));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO invoices VALUES (4711, :'victim', 1000000);
DELETE FROM invoices;
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('mandant''s triggers on a temporary table');

-- 3b. A table owner turns row level security off on its own registered
-- tenant table and writes rows that name the victim: the triggers refuse.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.ledger (tenant_id uuid, id int, amount int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('evil.ledger');
SELECT mandant.enable_audit('evil.ledger', 'billing');
SELECT mandant.enable_outbox('evil.ledger', 'billing', 'invoice');
ALTER TABLE evil.ledger NO FORCE ROW LEVEL SECURITY;
INSERT INTO evil.ledger VALUES (:'victim', 1, 100);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.disable_audit('evil.ledger');
INSERT INTO evil.ledger VALUES (:'victim', 1, 100);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.disable_outbox('evil.ledger');
SELECT mandant.enable_quota('evil.ledger', 'records');
INSERT INTO evil.ledger VALUES (:'victim', 1, 100);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.disable_quota('evil.ledger');
-- (with none of mandant's triggers left, the row is the owner's own
-- business: it is in the owner's table, and the lint reports the table)
INSERT INTO evil.ledger VALUES (:'victim', 1, 100);
SELECT code FROM mandant.tenancy_lint() WHERE object = 'evil.ledger';
DELETE FROM evil.ledger;
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('row level security turned off by the table owner');

-- 3c. Counters: registering a table for a resource that tenants are
-- charged is refused (it would drop what they were charged), and charging
-- a resource that tables count is refused too.
SET SESSION AUTHORIZATION regress_evil_owner;
ALTER TABLE evil.ledger FORCE ROW LEVEL SECURITY;
SELECT mandant.enable_quota('evil.ledger', 'storage_bytes');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
SELECT mandant.charge('records', -1000);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
SELECT attack.verdict('counters of other tenants');

-- 3d. Platform events: the domain is reserved, for the triggers of table
-- owners and for emit() by anyone but trusted backends (here a session
-- with a tenant's token, the victim's own).
SET SESSION AUTHORIZATION regress_evil_owner;
SELECT mandant.enable_outbox('evil.ledger', 'platform', 'tenant');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_attacker;
BEGIN;
SELECT mandant.authenticate(:'victim_token') ->> 'role' AS signed_in_as;
SELECT mandant.emit('platform.tenant.deleted', :'victim', '{"tenantId": "a7700000-0000-4000-8000-00000000000a"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
SELECT mandant.emit('platform.billing.closed', NULL, '{}') IS NOT NULL AS trusted_backends_may;
ROLLBACK;
RESET ROLE;
SELECT attack.verdict('platform events');

-- 3e. A login role cannot enter the victim's tenant, and a session in the
-- victim's tenant cannot move its rows to another tenant.
SET SESSION AUTHORIZATION regress_attacker;
SELECT mandant.set_tenant(:'victim');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'victim');
UPDATE victim_app.notes SET tenant_id = :'evil' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
SELECT attack.verdict('moving the victim''s rows');
