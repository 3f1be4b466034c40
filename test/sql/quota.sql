-- Plans and quotas: limits from the plan or a quota change, rows counted by
-- a C trigger, non-row resources charged, usage, reconciliation.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	('a4000000-0000-4000-8000-00000000000a', 'qt-acme', 'Acme', 'o@acme.test', 'free'),
	('b4000000-0000-4000-8000-00000000000b', 'qt-globex', 'Globex', 'o@globex.test', 'free');
\set acme 'a4000000-0000-4000-8000-00000000000a'
\set globex 'b4000000-0000-4000-8000-00000000000b'

CREATE SCHEMA qt AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA qt TO regress_service;
SET ROLE regress_owner;
CREATE TABLE qt.note (tenant_id uuid, id int, body text, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('qt.note');
GRANT SELECT, INSERT, UPDATE, DELETE ON qt.note TO regress_service;
-- Invalid input: a table that is not a tenant table, an unknown resource, someone else's table
CREATE TABLE qt.plain (id int);
SELECT mandant.enable_quota('qt.plain', 'records');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_quota('qt.note', 'widgets');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_quota('qt.note', 'records');
SELECT relid, resource, tenant_column FROM mandant.quota_table WHERE relid = 'qt.note'::regclass;
RESET ROLE;
SET ROLE regress_service;
SELECT mandant.enable_quota('qt.note', 'records');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The free plan allows 5 records: the sixth insert fails, nothing half-written.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO qt.note (id, body) SELECT i, 'note ' || i FROM generate_series(1, 5) i;
SAVEPOINT s;
INSERT INTO qt.note (id, body) VALUES (6, 'one too many');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT count(*) AS acme_notes FROM qt.note;
SELECT resource, used, "limit" FROM mandant.usage();
-- deleting gives room again
DELETE FROM qt.note WHERE id = 5;
INSERT INTO qt.note (id, body) VALUES (6, 'fits again');
COMMIT;
-- a statement that would pass the limit fails as a whole
BEGIN;
SELECT mandant.set_tenant(:'globex');
INSERT INTO qt.note (id, body) SELECT i, 'note ' || i FROM generate_series(1, 6) i;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT mandant.set_tenant(:'globex');
SELECT count(*) AS globex_notes_after_refusal FROM qt.note;
SELECT resource, used FROM mandant.usage() WHERE resource = 'records';
COMMIT;
RESET ROLE;

-- Invalid input: moving a row to another tenant
UPDATE qt.note SET tenant_id = :'globex' WHERE tenant_id = :'acme' AND id = 1;
\echo :LAST_ERROR_SQLSTATE

-- Quota changes override the plan from their effective time on.
SET ROLE regress_admin;
SELECT mandant.set_quota(:'acme', 'records', 7, now(), 'pilot customer') > 0 AS changed;
SELECT mandant.set_quota(:'acme', 'records', 100, now() + interval '1 day', 'contract from tomorrow') > 0 AS scheduled;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO qt.note (id, body) VALUES (7, 'seventh'), (8, 'eighth');
SELECT resource, used, "limit" FROM mandant.usage() WHERE resource = 'records';
INSERT INTO qt.note (id, body) VALUES (9, 'ninth');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
SELECT resource, "limit", effective_at > now() AS in_future, reason, actor FROM mandant.quota_change
WHERE tenant_id = :'acme' ORDER BY id;
-- Invalid input: negative limits, unknown resources, no reason, not an administrator
SET ROLE regress_admin;
SELECT mandant.set_quota(:'acme', 'records', -1, now(), 'oops');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_quota(:'acme', 'widgets', 10, now(), 'oops');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_quota(:'acme', 'records', 10, now(), ' ');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_quota('00000000-0000-4000-8000-000000000000', 'records', 10, now(), 'nobody');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_service;
SELECT mandant.set_quota(:'acme', 'records', 1000, now(), 'self-service');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Invalid input: the history cannot be rewritten
DELETE FROM mandant.quota_change;
\echo :LAST_ERROR_SQLSTATE

-- A scheduled change takes over when its time comes: the limit cached with
-- the counter holds until then, and is looked up again after.
SET ROLE regress_admin;
SELECT mandant.set_quota(:'acme', 'records', 8, clock_timestamp() + interval '2 seconds', 'from in two seconds') > 0 AS scheduled_soon;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO qt.note (id, body) VALUES (7, 'seventh'), (8, 'eighth');
SELECT resource, used, "limit" FROM mandant.usage() WHERE resource = 'records';
INSERT INTO qt.note (id, body) VALUES (9, 'ninth');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT pg_sleep(2.1);
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO qt.note (id, body) VALUES (7, 'seventh'), (8, 'eighth'), (9, 'ninth');
SELECT resource, used, "limit" FROM mandant.usage() WHERE resource = 'records';
INSERT INTO qt.note (id, body) VALUES (10, 'tenth');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE regress_admin;
SELECT mandant.set_quota(:'acme', 'records', 7, now(), 'back to the pilot') > 0 AS back;
RESET ROLE;

-- Plans: globex moves to starter (25 records); acme's own quota still rules.
SET ROLE regress_admin;
SELECT mandant.change_plan(:'globex', 'starter', 'upgrade ordered');
SELECT mandant.change_plan(:'globex', 'platinum', 'typo');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.change_plan(:'globex', 'pro', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT resource, used, "limit" FROM mandant.usage(:'globex') ORDER BY resource;
RESET ROLE;
SELECT topic, payload - 'tenantId' AS payload FROM mandant.outbox WHERE topic = 'platform.tenant.plan_changed'
  AND payload ->> 'tenantId' = :'globex';

-- Members count as users: the free plan has 2.
UPDATE mandant.tenant SET plan_key = 'free' WHERE id = :'acme';
SET ROLE regress_service;
SELECT mandant.create_user('q1@acme.test', 'a long enough password', 'Q1') AS q1 \gset
SELECT mandant.create_user('q2@acme.test', 'a long enough password', 'Q2') AS q2 \gset
SELECT mandant.create_user('q3@acme.test', 'a long enough password', 'Q3') AS q3 \gset
BEGIN;
SELECT mandant.set_tenant(:'acme');
SELECT mandant.add_member(:'acme', :'q1', 'owner');
SELECT mandant.add_member(:'acme', :'q2', 'viewer');
SAVEPOINT s;
SELECT mandant.add_member(:'acme', :'q3', 'viewer');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.remove_member(:'acme', :'q2');
SELECT mandant.add_member(:'acme', :'q3', 'viewer');
COMMIT;
RESET ROLE;

-- Resources that are not rows: storage is charged and given back.
-- Invalid input: charging is for trusted backends (a negative charge frees quota)
SET ROLE regress_user;
SELECT mandant.charge('storage_bytes', 1024);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'globex');
SELECT mandant.charge('storage_bytes', 6000000000);
SAVEPOINT s;
SELECT mandant.charge('storage_bytes', 5000000000);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.charge('storage_bytes', -1000000000);
SELECT mandant.charge('storage_bytes', 5000000000);
SELECT mandant.charge('gigawatts', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: a read-only transaction counts nothing
BEGIN READ ONLY;
SELECT mandant.set_tenant(:'globex');
SELECT mandant.charge('storage_bytes', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;

-- Many changes of one counter in one transaction fill its page, so some
-- versions move to another page (not HOT) and get their own index entry:
-- the counter is still found through its key and stays exact.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'globex');
SELECT count(mandant.charge('storage_bytes', 1)) AS charges FROM generate_series(1, 400);
SELECT n_tup_upd > n_tup_hot_upd AS some_not_hot FROM pg_stat_xact_user_tables WHERE relid = 'mandant.tenant_usage'::regclass;
SET LOCAL enable_seqscan = off;
SELECT used FROM mandant.tenant_usage WHERE tenant_id = :'globex' AND resource = 'storage_bytes';
SELECT mandant.charge('storage_bytes', -400);
SELECT used FROM mandant.tenant_usage WHERE tenant_id = :'globex' AND resource = 'storage_bytes';
ROLLBACK;
RESET ROLE;

-- Reconciliation finds and fixes counters that drifted.
UPDATE mandant.tenant_usage SET used = 42 WHERE tenant_id = :'acme' AND resource = 'records';
SET ROLE regress_admin;
SELECT tenant_id = :'acme' AS acme, resource, recorded, actual FROM mandant.usage_reconcile();
SELECT count(*) AS drift_left FROM mandant.usage_reconcile();
SET ROLE regress_user;
SELECT * FROM mandant.usage_reconcile();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Turning the quota off stops counting and forgets the counters; turning
-- it on again recounts from the rows.
SET ROLE regress_service;
SELECT mandant.disable_quota('qt.note');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_owner;
SELECT mandant.disable_quota('qt.note');
RESET ROLE;
SELECT count(*) AS records_counters FROM mandant.tenant_usage WHERE resource = 'records' AND tenant_id IN (:'acme', :'globex');
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO qt.note (id, body) SELECT i, 'uncounted' FROM generate_series(100, 109) i;
COMMIT;
RESET ROLE;
SET ROLE regress_owner;
SELECT mandant.enable_quota('qt.note', 'records');
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
SELECT (SELECT count(*) FROM qt.note) AS rows, used, "limit" FROM mandant.usage() WHERE resource = 'records';
INSERT INTO qt.note (id, body) VALUES (110, 'over the limit');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
-- TRUNCATE fires no row trigger; the counters are forgotten and recounted.
SET ROLE regress_owner;
TRUNCATE qt.note;
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO qt.note (id, body) VALUES (1, 'after truncate');
SELECT used, "limit" FROM mandant.usage() WHERE resource = 'records';
ROLLBACK;
RESET ROLE;

DROP SCHEMA qt CASCADE;
