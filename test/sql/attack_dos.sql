-- Adversarial, class 5: denial of service and leaks.  Login counters live
-- apart from rate_limit()'s (nothing evicts them through it); a lockout is
-- per account and address first (test/sql/identity.sql covers the three
-- limits); a registry row whose relation is gone breaks nobody's export or
-- deletion; notifications carry no tenant data
-- (test/isolation/specs/outbox_notify.spec, config_revision.spec).
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_attack_dos
\i test/fixtures/attack.sql
\set ECHO all

-- 5a. Ten failures lock the victim's account from one address; 20,000
-- rate_limit() keys, more than its table holds, do not evict that lock.
CREATE FUNCTION attack.fail_login(ip inet) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM mandant.login('boss@victim.test', 'a wrong guess', client_ip => ip);
	RETURN 'logged in';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
SET ROLE regress_gateway;
SELECT attack.fail_login('198.51.100.66') AS outcome, count(*) FROM generate_series(1, 10) GROUP BY 1;
SELECT attack.fail_login('198.51.100.66') AS locked;
SELECT count(*) AS keys_counted FROM generate_series(1, 20000) i,
	LATERAL mandant.rate_limit('flood:' || i, 1000, '15 minutes');
SELECT attack.fail_login('198.51.100.66') AS still_locked;
RESET ROLE;
-- and the lock is that address's, not the account's: the victim logs in
-- from elsewhere
SET ROLE regress_gateway;
SELECT mandant.login('boss@victim.test', 'the victim''s password', client_ip => '198.51.100.7') ->> 'role' AS victim_logs_in_elsewhere;
RESET ROLE;
-- (the victim's new session is not the attacker's doing)
UPDATE attack.baseline SET fingerprint = attack.fingerprint();

-- 5b. A registry row whose relation vanished (its event trigger was off):
-- the victim's export and a deletion of another tenant still work, and
-- the next registration forgets the row.
INSERT INTO mandant.tenant_table (relid, tenant_column) VALUES (4294967295::oid::regclass, 'tenant_id');
SET ROLE regress_admin;
SELECT jsonb_object_keys(mandant.export_tenant(:'victim') -> 'tables') AS exported_tables ORDER BY 1;
SELECT mandant.create_tenant('attack-doomed', 'Doomed', 'x@doomed.test') AS doomed \gset
SELECT mandant.delete_tenant(:'doomed', 'attack-doomed') ? 'victim_app.notes' AS deleted;
RESET ROLE;
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.fresh (tenant_id uuid, id int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('evil.fresh');
RESET SESSION AUTHORIZATION;
SELECT count(*) AS dangling_rows FROM mandant.tenant_table WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relid);

-- 5c. rate_limit() keys of a tenant are its own: the attacker's tenant
-- exhausting a key leaves the victim's key of the same name alone, and a
-- role without a tenant cannot count the platform's keys.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
SELECT count(*) AS evil_calls FROM generate_series(1, 3) i, LATERAL mandant.rate_limit('api', 3, '1 minute');
SELECT mandant.set_tenant(:'victim');
SELECT mandant.rate_limit('api', 3, '1 minute') AS victim_remaining;
ROLLBACK;
RESET ROLE;
SET SESSION AUTHORIZATION regress_attacker;
SELECT mandant.rate_limit('ip:198.51.100.7', 1, '1 minute');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('denial of service');

-- 5d. Rows a table owner pre-filled for another tenant would count against
-- a resource mandant or another owner counts: refused.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.inflate (tenant_id uuid NOT NULL, id int);
SELECT mandant.enable_tenancy('evil.inflate');
SELECT mandant.enable_quota('evil.inflate', 'users');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_quota('evil.inflate', 'records');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('quota inflation through a pre-filled table');

-- 5e. Failed logins over the Unix socket (no address) do not lock a shared
-- "local" address: 51 failures for other accounts leave the victim's
-- account answering normally (here: MD050 for a wrong password, not MD040).
SET SESSION AUTHORIZATION regress_attacker;
SELECT count(*) FILTER (WHERE attack_state = 'MD050') AS refused
FROM generate_series(1, 51) i,
	 LATERAL (SELECT attack.sqlstate_of(format('SELECT mandant.login(%L, %L)', 'nobody' || i || '@x.test', 'guess'))) s (attack_state);
SELECT mandant.login('boss@victim.test', 'a wrong password');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('logins locked for every socket caller');

-- 5f. One tenant filling the shared rate limit table (16,384 keys) evicts
-- its own keys, not another tenant's live counters.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'victim');
SELECT mandant.rate_limit('exports', 3, '1 hour') AS victim_remaining;
SELECT mandant.set_tenant(:'evil');
SELECT count(*) AS evil_keys FROM generate_series(1, 17000) i, LATERAL mandant.rate_limit('flood-' || i, 1, '1 hour');
SELECT mandant.set_tenant(:'victim');
SELECT mandant.rate_limit('exports', 3, '1 hour') AS victim_remaining;
SELECT mandant.rate_limit('exports', 3, '1 hour') AS victim_remaining;
SELECT attack.sqlstate_of($$SELECT mandant.rate_limit('exports', 3, '1 hour')$$) AS fourth_export;
ROLLBACK;
RESET ROLE;
