-- Adversarial, class 3: nobody writes records into another tenant's audit
-- chain, outbox or usage counters, and nobody emits the platform's
-- events.  mandant's triggers run only on tables their owner registered
-- with the same arguments (anyone may attach them, so that partitions
-- inherit them, to no avail), and a row of a tenant is recorded only from
-- inside that tenant (or by a trusted backend).
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_attack_forgery
\i test/fixtures/attack.sql
\set ECHO all

-- 3a. A login role attaches mandant's triggers to a temporary table whose
-- tenant_id names the victim: each trigger refuses to run there, and the
-- table cannot be registered.
SET SESSION AUTHORIZATION regress_attacker;
CREATE TEMP TABLE invoices (id int PRIMARY KEY, tenant_id uuid, amount int, status text);
SELECT mandant.enable_audit('invoices');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('attach_outbox', NULL, jsonb_build_object('table', 'invoices'::regclass::oid, 'domain', 'billing'));
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger('mandant_tenant', 'status', 'log');
INSERT INTO invoices VALUES (4711, :'victim', 1000000, 'active');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER zz_mandant_state_machine ON invoices;
CREATE TRIGGER mandant_audit AFTER INSERT OR DELETE ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger('billing');
INSERT INTO invoices VALUES (4711, :'victim', 1000000, 'active');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER mandant_audit ON invoices;
CREATE TRIGGER mandant_outbox AFTER INSERT ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger('platform', 'tenant');
INSERT INTO invoices VALUES (4711, :'victim', 1000000, 'active');
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER mandant_outbox ON invoices;
CREATE TRIGGER mandant_quota AFTER INSERT OR DELETE ON invoices
	FOR EACH ROW EXECUTE FUNCTION mandant.quota_trigger('records', 'tenant_id');
INSERT INTO invoices VALUES (4711, :'victim', 1000000, 'active');
\echo :LAST_ERROR_SQLSTATE
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
SELECT mandant.enable_outbox('evil.ledger', 'billing', 'invoice');
-- the owner attaches mandant's trigger a second time, naming the
-- platform's domain: its arguments are not its registration
CREATE TRIGGER mandant_outbox_platform AFTER INSERT ON evil.ledger
	FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger('platform', 'tenant');
ALTER TABLE evil.ledger FORCE ROW LEVEL SECURITY;
GRANT INSERT ON evil.ledger TO regress_service;
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
INSERT INTO evil.ledger (id, amount) VALUES (2, 10);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
SET SESSION AUTHORIZATION regress_evil_owner;
DROP TRIGGER mandant_outbox_platform ON evil.ledger;
SELECT mandant.disable_outbox('evil.ledger');
ALTER TABLE evil.ledger NO FORCE ROW LEVEL SECURITY;
SELECT mandant.enable_quota('evil.ledger', 'tickets');
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

-- 3f. Partitions inherit the registration of the table whose trigger they
-- inherited, at any level; a partition's own rows of another tenant are
-- refused like any other.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.parts (tenant_id uuid, id int, kind text, PRIMARY KEY (tenant_id, id, kind)) PARTITION BY LIST (kind);
CREATE TABLE evil.parts_a PARTITION OF evil.parts FOR VALUES IN ('a') PARTITION BY RANGE (id);
CREATE TABLE evil.parts_a_low PARTITION OF evil.parts_a FOR VALUES FROM (0) TO (100);
SELECT mandant.enable_tenancy('evil.parts');
SELECT mandant.enable_audit('evil.parts_a');	-- the middle level only
CREATE TABLE evil.parts_a_high PARTITION OF evil.parts_a FOR VALUES FROM (100) TO (200);
RESET SESSION AUTHORIZATION;
GRANT USAGE ON SCHEMA evil TO regress_service;
SET SESSION AUTHORIZATION regress_evil_owner;
GRANT SELECT, INSERT ON evil.parts TO regress_service;
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
INSERT INTO evil.parts (id, kind) VALUES (1, 'a'), (150, 'a');
SELECT entity_type, count(*) FROM mandant.audit_event WHERE entity_type LIKE 'evil.parts%' GROUP BY 1;
COMMIT;
RESET ROLE;
SET SESSION AUTHORIZATION regress_evil_owner;
ALTER TABLE evil.parts_a_high NO FORCE ROW LEVEL SECURITY;
INSERT INTO evil.parts_a_high VALUES (:'victim', 151, 'a');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('partitions');

-- 3g. While an administrator exports (or deletes) a tenant, the owner's
-- code runs as the owner and outside that tenant: it cannot read the
-- tenant's mandant records nor write audit or outbox events in its name.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.loot (seen jsonb);
CREATE TYPE evil.tag AS ENUM ('plain');
CREATE FUNCTION evil.tag_json(t evil.tag) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.loot SELECT jsonb_build_object('tenant', mandant.current_tenant(),
		'audit', (SELECT count(*) FROM mandant.audit_event), 'members', (SELECT count(*) FROM mandant.membership));
	BEGIN
		PERFORM mandant.audit_log('auth', 'login.succeeded', 'user', 'forged', '{}');
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (jsonb_build_object('audit_log', SQLSTATE));
	END;
	RETURN to_json(t::text);
END
$$;
CREATE CAST (evil.tag AS json) WITH FUNCTION evil.tag_json(evil.tag);
CREATE TABLE evil.shared (tenant_id uuid, id int, tag evil.tag NOT NULL DEFAULT 'plain', PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('evil.shared');
GRANT SELECT, INSERT ON evil.shared TO regress_service;
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'victim');
INSERT INTO evil.shared (id) VALUES (1);
COMMIT;
RESET ROLE;
SELECT attack.fingerprint() AS before_export \gset
SET ROLE regress_admin;
SELECT jsonb_array_length(mandant.export_tenant(:'victim') -> 'tables' -> 'evil.shared') AS exported_rows;
RESET ROLE;
SELECT seen FROM evil.loot ORDER BY seen::text;
SELECT attack.fingerprint() = :'before_export'::jsonb AS victim_untouched_by_export;

-- 3h. Rows written outside any tenant would be the platform's records:
-- only trusted backends and administrators write those (MD001).
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.globals (id int PRIMARY KEY, note text);
SELECT mandant.enable_audit('evil.globals', 'platform');
SELECT mandant.enable_outbox('evil.globals', 'billing');
INSERT INTO evil.globals VALUES (1, 'billing.tenant.deleted');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT count(*) AS platform_events_by_owner FROM mandant.outbox WHERE topic LIKE 'billing.%';
SELECT attack.verdict('platform records from a table owner');

-- 3i. A SECURITY DEFINER trigger of the owner fires in a request of the
-- victim's owner (scope admin): the context belongs to the role that
-- authenticated, so the trigger can act neither as the tenant's admin nor
-- as the signed-in user (enrolling them in two-factor authentication with
-- a secret the attacker keeps).
SET ROLE regress_service;
SELECT mandant.create_user('accomplice@evil.test', 'the accomplice''s password', 'Accomplice') AS accomplice \gset
RESET ROLE;
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE FUNCTION evil.borrow() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	BEGIN
		PERFORM mandant.add_member(mandant.current_tenant(), (SELECT u.id FROM mandant.users u
			WHERE u.email = 'accomplice@evil.test'), 'admin');
		INSERT INTO evil.loot VALUES (jsonb_build_object('add_member', 'ok'));
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (jsonb_build_object('add_member', SQLSTATE));
	END;
	BEGIN
		PERFORM mandant.totp_enroll();
		INSERT INTO evil.loot VALUES (jsonb_build_object('totp_enroll', 'ok'));
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (jsonb_build_object('totp_enroll', SQLSTATE));
	END;
	BEGIN
		PERFORM mandant.config_set('mail', 'relay', '"mx.evil.test"', 'borrowed');
		INSERT INTO evil.loot VALUES (jsonb_build_object('config_set', 'ok'));
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (jsonb_build_object('config_set', SQLSTATE));
	END;
	RETURN NULL;
END
$$;
CREATE TRIGGER borrow AFTER INSERT ON evil.shared FOR EACH ROW EXECUTE FUNCTION evil.borrow();
TRUNCATE evil.loot;
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.authenticate(token) ->> 'role' AS acting_as FROM attack.victim_session;
INSERT INTO evil.shared (id) VALUES (2);
COMMIT;
RESET ROLE;
SELECT seen FROM evil.loot ORDER BY seen::text;
SELECT attack.verdict('owner''s trigger borrowing the victim''s context');
