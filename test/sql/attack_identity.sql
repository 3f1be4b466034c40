-- Adversarial, class 4: identity gates check the real caller.  No SQL
-- wrapper of mandant's is SECURITY DEFINER in front of a gate; ownership
-- by e-mail needs the platform to vouch for the address; guards need
-- EXECUTE, are never temporary, and a machine binds only the tables of its
-- owner.
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_attack_identity
\i test/fixtures/attack.sql
\set ECHO all

-- 4a. A role with no grants revokes the victim's sessions: refused, and a
-- SECURITY DEFINER function of the attacker's lends nothing either.
SET SESSION AUTHORIZATION regress_attacker;
SELECT mandant.revoke_user_tokens(:'victim_user');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('revoke_user_tokens', NULL, jsonb_build_object('userId', :'victim_user'));
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE FUNCTION evil.deputy(u uuid) RETURNS void LANGUAGE sql SECURITY DEFINER
	AS $$ SELECT mandant.revoke_user_tokens(u) $$;
GRANT EXECUTE ON FUNCTION evil.deputy(uuid) TO PUBLIC;
RESET SESSION AUTHORIZATION;
SET ROLE regress_admin;
SELECT evil.deputy(:'victim_user');	-- an administrator tricked into calling it
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET SESSION AUTHORIZATION regress_attacker;
BEGIN;
SELECT mandant.authenticate(:'victim_token') ->> 'role' AS victim_session_works;
ROLLBACK;
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('revoking the victim''s sessions');

-- 4b. A tenant administrator (of the attacker's tenant) creates the
-- account named as owner_email of a tenant that has no owner yet: the
-- account does not become its owner; once a trusted backend confirms the
-- address (it sent a link and the owner followed it), it does.
SET ROLE regress_admin;
SELECT mandant.create_tenant('attack-orphan', 'Orphan', 'ceo@orphan.test') AS orphan \gset
RESET ROLE;
SET ROLE regress_service;
SELECT mandant.create_user('mal@evil.test', 'mallory''s long password', 'Mallory') AS mallory \gset
BEGIN;
SELECT mandant.set_tenant(:'evil');
SELECT mandant.add_member(:'evil', :'mallory', 'admin');
COMMIT;
RESET ROLE;
SELECT mandant.login('mal@evil.test', 'mallory''s long password') ->> 'accessToken' AS mallory_token \gset
SET SESSION AUTHORIZATION regress_attacker;
BEGIN;
SELECT mandant.authenticate(:'mallory_token') ->> 'role' AS acting_as;
SELECT mandant.create_user('ceo@orphan.test', 'a password mallory knows', 'Fake CEO') AS fake_ceo \gset
COMMIT;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS orphan_members FROM mandant.membership WHERE tenant_id = :'orphan';
SELECT email_confirmed_at IS NULL AS unconfirmed FROM mandant.users WHERE id = :'fake_ceo';
-- the platform created account of a later tenant's owner is not enough either
SET ROLE regress_admin;
SELECT mandant.create_tenant('attack-orphan-2', 'Orphan 2', 'ceo@orphan.test') AS orphan2 \gset
RESET ROLE;
SELECT count(*) AS orphan2_members FROM mandant.membership WHERE tenant_id = :'orphan2';
SET SESSION AUTHORIZATION regress_attacker;
SELECT mandant.confirm_user_email(:'fake_ceo');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
SELECT mandant.confirm_user_email(:'fake_ceo');
RESET ROLE;
SELECT t.slug, m.role FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
WHERE m.user_id = :'fake_ceo' ORDER BY t.slug;

-- 4c. Guards: the machine's owner must be allowed to execute them, they
-- may not be temporary, and only the machine's owner binds tables to it.
SET SESSION AUTHORIZATION regress_app_owner;
SELECT mandant.create_state_machine('approval', '{draft}', states => '{draft,approved}');
CREATE TABLE victim_app.approvals (id int PRIMARY KEY, status text NOT NULL DEFAULT 'draft');
SELECT mandant.enable_state_machine('victim_app.approvals', 'approval');
CREATE FUNCTION victim_app.strict_guard(old_row jsonb, new_row jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT true';
REVOKE EXECUTE ON FUNCTION victim_app.strict_guard(jsonb, jsonb) FROM PUBLIC;
RESET SESSION AUTHORIZATION;
SELECT 'victim_app.approvals'::regclass::oid AS approvals, 'victim_app.strict_guard(jsonb,jsonb)'::regprocedure::oid AS strict_guard \gset
SET SESSION AUTHORIZATION regress_evil_owner;
-- a machine squatting the name an application will ask for: binding the
-- application's table to it is refused (the table's owner does not own it)
SELECT mandant.create_state_machine('assessment', '{draft}', states => '{draft,approved}');
CREATE FUNCTION pg_temp.nosy(old_row jsonb, new_row jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT true';
SELECT mandant.add_transition('assessment', 'draft', 'approved', guard => 'pg_temp.nosy(jsonb,jsonb)');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION evil.nosy(old_row jsonb, new_row jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT true';
SELECT mandant.add_transition('assessment', 'draft', 'approved', guard => 'evil.nosy(jsonb,jsonb)');
-- changing another owner's machine, or binding to a table of another owner
SELECT mandant.add_transition('approval', 'draft', 'approved', guard => 'evil.nosy(jsonb,jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_state_machine(:'approvals'::oid::regclass, 'assessment');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('bind_state_machine', NULL,
	jsonb_build_object('table', :'approvals'::oid, 'machine', 'assessment', 'column', 'status'));
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_app_owner;
CREATE TABLE victim_app.assessments (id int PRIMARY KEY, status text NOT NULL DEFAULT 'draft');
SELECT mandant.enable_state_machine('victim_app.assessments', 'assessment');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
-- a guard its machine's owner may not execute
SET SESSION AUTHORIZATION regress_evil_owner;
SELECT mandant.add_transition('assessment', 'approved', 'draft', guard => :'strict_guard'::oid::regprocedure);
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('guards and machines');

-- 4d. A leaked access token is not enough to switch two-factor
-- authentication on or off by trying every code: wrong codes count like
-- failed logins (10 within 15 minutes, then MD040 even for the right one).
SET SESSION AUTHORIZATION regress_attacker;
BEGIN;
SELECT mandant.authenticate(:'mallory_token') ->> 'role' AS acting_as;
SELECT mandant.totp_enroll() ? 'secret' AS enrolled;
SELECT string_agg(attack.sqlstate_of('SELECT mandant.totp_confirm(''00000x'')'), ' ' ORDER BY i) AS attempts
FROM generate_series(1, 11) i;
COMMIT;
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('one-time codes by brute force');
