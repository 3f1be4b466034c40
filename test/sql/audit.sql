-- Audit trail: the row trigger, application events, append-only, RLS,
-- hashes, sealing and verification.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'aud-acme', 'Acme', 'o@acme.test'),
	('b0000000-0000-4000-8000-00000000000b', 'aud-globex', 'Globex', 'o@globex.test');
CREATE SCHEMA aud AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA aud TO regress_service, regress_user;

SET ROLE regress_owner;
CREATE TABLE aud.risk (
	tenant_id	uuid,
	id			int,
	title		text NOT NULL,
	score		numeric(5, 2),
	secret		text,
	PRIMARY KEY (tenant_id, id)
);
SELECT mandant.enable_tenancy('aud.risk');
SELECT mandant.enable_audit('aud.risk', 'risk', '{secret}');
GRANT SELECT, INSERT, UPDATE, DELETE ON aud.risk TO regress_service;

-- enable_audit is idempotent: the same call keeps the same trigger.
SELECT oid AS trigger_oid FROM pg_trigger WHERE tgrelid = 'aud.risk'::regclass AND tgname = 'mandant_audit' \gset
SELECT mandant.enable_audit('aud.risk', 'risk', '{secret}');
SELECT oid = :trigger_oid AS same_trigger FROM pg_trigger WHERE tgrelid = 'aud.risk'::regclass AND tgname = 'mandant_audit';
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'aud.risk'::regclass AND tgname = 'mandant_audit';

-- Writes of a trusted backend in tenant acme, with a request id.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SET LOCAL app.request_id = 'req-0001';
INSERT INTO aud.risk (id, title, score, secret) VALUES (1, 'Dust explosion', 12.50, 's3cret-1');
UPDATE aud.risk SET title = 'Dust explosion, silo 3' WHERE id = 1;
UPDATE aud.risk SET title = title WHERE id = 1;              -- changes nothing: no event
UPDATE aud.risk SET secret = 's3cret-2' WHERE id = 1;        -- only an excluded column
UPDATE aud.risk SET score = NULL WHERE id = 1;
DELETE FROM aud.risk WHERE id = 1;
COMMIT;

RESET ROLE;
SELECT id - (SELECT min(id) FROM mandant.audit_event WHERE entity_type = 'aud.risk') AS n,
	   tenant_id, category, action, entity_type, entity_id, actor_user_id, request_id, changes,
	   hash = mandant.audit_event_hash(e) AS hash_ok, length(hash) AS hash_bytes,
	   txid = (SELECT min(txid) FROM mandant.audit_event WHERE entity_type = 'aud.risk') AS same_transaction
FROM mandant.audit_event e WHERE entity_type = 'aud.risk' ORDER BY id;
-- The excluded column appears nowhere.
SELECT count(*) AS events_mentioning_secret FROM mandant.audit_event
WHERE entity_type = 'aud.risk' AND (changes::text LIKE '%secret%' OR changes::text LIKE '%s3cret%');

-- Composite keys without the tenant column become a JSON array; a table
-- without a tenant column takes the tenant of the transaction.
SET ROLE regress_owner;
CREATE TABLE aud.link (tenant_id uuid, a int, b text, PRIMARY KEY (tenant_id, a, b));
SELECT mandant.enable_tenancy('aud.link');
SELECT mandant.enable_audit('aud.link');
CREATE TABLE aud.setting (name text PRIMARY KEY, value text);
SELECT mandant.enable_audit('aud.setting', 'config');
GRANT SELECT, INSERT ON aud.link, aud.setting TO regress_service;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
INSERT INTO aud.link VALUES (DEFAULT, 7, 'x"y');
INSERT INTO aud.setting VALUES ('theme', 'dark');
COMMIT;
INSERT INTO aud.setting VALUES ('platform-wide', 'yes');   -- no tenant: a platform event
RESET ROLE;
SELECT tenant_id, category, action, entity_type, entity_id, changes
FROM mandant.audit_event WHERE entity_type IN ('aud.link', 'aud.setting') ORDER BY id;

-- Types round-trip: the changes of an insert are exactly to_jsonb(row).
CREATE TYPE aud.mood AS ENUM ('calm', 'alarmed');
CREATE TYPE aud.pair AS (x int, y text);
CREATE DOMAIN aud.percent AS numeric CHECK (VALUE BETWEEN 0 AND 100);
CREATE TABLE aud.types (
	id serial PRIMARY KEY, i2 int2, i4 int4, i8 int8, n numeric, n2 numeric(10, 3),
	f4 float4, f8 float8, t text, vc varchar(20), c char(5), b bool, u uuid,
	d date, ts timestamp, tz timestamptz, tm time, iv interval,
	jb jsonb, js json, by bytea, ia int[], ta text[], e aud.mood, p aud.pair,
	pc aud.percent, ip inet, nothing text);
SELECT mandant.enable_audit('aud.types');
INSERT INTO aud.types (i2, i4, i8, n, n2, f4, f8, t, vc, c, b, u, d, ts, tz, tm, iv,
					   jb, js, by, ia, ta, e, p, pc, ip) VALUES
	(-32768, 2147483647, -9223372036854775808, 'NaN', 1.5, 'Infinity', 'NaN',
	 E'quote " backslash \\ newline \n tab \t unicode ä€😀', 'varchar', 'ab',
	 true, 'a0000000-0000-4000-8000-00000000000a', '2026-02-28', '2026-11-25 13:35:00.123456',
	 '2026-11-25 13:35:00+01', '23:59:59', '1 year 2 days 03:04:05',
	 '{"b": [1, 2.50, null], "a": {"x": "y"}}', '{"keep":  "spacing"}', '\x00ff10',
	 '{1,2,3}', '{a,NULL,"c d"}', 'alarmed', ROW(1, 'one'), 42.5, '192.168.0.1/24'),
	(0, 0, 0, '-Infinity', -0.001, '-0', '-Infinity', '', '', '', false, NULL, 'infinity',
	 '-infinity', 'infinity', '00:00', '-1 second', '"just a string"', 'null', '\x', '{}',
	 '{}', 'calm', NULL, 0, '::1');
SELECT e.changes = to_jsonb(r) AS same_as_to_jsonb, count(*)
FROM mandant.audit_event e JOIN aud.types r ON e.entity_type = 'aud.types' AND e.entity_id = r.id::text
GROUP BY 1;
-- An update records old and new as to_jsonb would write them.
CREATE TEMP TABLE types_before AS SELECT * FROM aud.types;
UPDATE aud.types SET i8 = i8 + 1, n = 2, tz = '2030-01-01 00:00+00', jb = '[]', ta = NULL, nothing = 'now set';
SELECT e.changes = (SELECT jsonb_object_agg(o.key, jsonb_build_array(o.value, n.value))
					FROM jsonb_each(to_jsonb(old_row)) o JOIN jsonb_each(to_jsonb(new_row)) n USING (key)
					WHERE o.value IS DISTINCT FROM n.value) AS same_as_to_jsonb_diff,
	   (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(e.changes) k) AS changed
FROM mandant.audit_event e
JOIN aud.types new_row ON e.entity_type = 'aud.types' AND e.entity_id = new_row.id::text AND e.action = 'update'
JOIN types_before old_row ON old_row.id = new_row.id
ORDER BY new_row.id;

-- Values over mandant.audit_max_value_bytes become their sha256 and size;
-- mandant_admin may lower it for a session.
SET ROLE regress_admin;
SET mandant.audit_max_value_bytes = 64;
RESET ROLE;
UPDATE aud.types SET t = repeat('long text ', 10), by = decode(repeat('ab', 70), 'hex') WHERE id = 1;
SELECT changes -> 't' -> 1 AS t_new, changes -> 'by' -> 1 AS by_new,
	   changes -> 't' -> 1 ->> 'sha256' = encode(sha256(convert_to(repeat('long text ', 10), 'UTF8')), 'hex') AS t_hash_ok,
	   changes -> 'by' -> 1 ->> 'sha256' = encode(sha256(decode(repeat('ab', 70), 'hex')), 'hex') AS by_hash_ok
FROM mandant.audit_event WHERE entity_type = 'aud.types' ORDER BY id DESC LIMIT 1;
RESET mandant.audit_max_value_bytes;

-- Partitioned tables: events name the partitioned table.
SET ROLE regress_owner;
CREATE TABLE aud.entry (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE aud.entry_2026 PARTITION OF aud.entry FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT mandant.enable_audit('aud.entry');
-- Outside any tenant a row would go to the platform's chain: not for the owner (MD001).
INSERT INTO aud.entry VALUES (1, '2026-06-01');
RESET ROLE;
INSERT INTO aud.entry VALUES (1, '2026-06-01');
SELECT entity_type, entity_id FROM mandant.audit_event WHERE entity_type LIKE 'aud.entry%';

-- Application events: the same context, any action but the reserved ones.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SET LOCAL app.request_id = 'req-0002';
SELECT mandant.audit_log('security', 'export', 'aud.risk', NULL, '{"rows": 12, "format": "csv"}') > 0 AS logged;
COMMIT;
-- a trusted backend may write platform events (no tenant)
SELECT mandant.audit_log('platform', 'maintenance', 'database', 'contrib_regression', NULL) > 0 AS logged;
RESET ROLE;
SELECT tenant_id, category, action, entity_type, entity_id, request_id, changes, hash = mandant.audit_event_hash(e) AS hash_ok
FROM mandant.audit_event e WHERE category IN ('security', 'platform') ORDER BY id;

-- A tenant reads its own events only.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT DISTINCT tenant_id FROM mandant.audit_event;
COMMIT;
SELECT count(*) AS events_without_tenant FROM mandant.audit_event;
-- Platform administrators read across tenants through a function.
SET ROLE regress_admin;
SELECT count(*) AS admin_sees_directly FROM mandant.audit_event;
SELECT action, entity_type FROM mandant.audit_events('b0000000-0000-4000-8000-00000000000b') ORDER BY id;
SELECT count(*) AS acme_risk_events FROM mandant.audit_events('a0000000-0000-4000-8000-00000000000a', entity_type => 'aud.risk');

-- Sealing chains each tenant's events; verification recomputes everything.
SELECT mandant.audit_seal() AS sealed;
SELECT mandant.audit_seal() AS sealed_again;
SELECT * FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
SELECT * FROM mandant.audit_verify('b0000000-0000-4000-8000-00000000000b');
SELECT * FROM mandant.audit_verify(NULL);
RESET ROLE;
SELECT tenant_id, seq, length(chain) AS chain_bytes FROM mandant.audit_seal
WHERE tenant_id = 'b0000000-0000-4000-8000-00000000000b' ORDER BY seq;
-- A tenant verifies its own trail.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT * FROM mandant.audit_verify();
COMMIT;

-- Tampering, by a superuser who switches the guard off, is caught.  Each
-- case runs in a transaction that is rolled back afterwards.
RESET ROLE;
SELECT min(id) AS first_acme FROM mandant.audit_event
WHERE tenant_id = 'a0000000-0000-4000-8000-00000000000a' \gset
-- 1. the changes of an event
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET changes = '{"title": "Nothing to see"}' WHERE id = :first_acme + 1;
SELECT ok, checked, first_bad_id - :first_acme AS bad FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- 2. the actor, with the event's hash recomputed to match: the chain breaks
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET actor_user_id = 'f0000000-0000-4000-8000-00000000000f' WHERE id = :first_acme + 2;
UPDATE mandant.audit_event e SET hash = mandant.audit_event_hash(e) WHERE id = :first_acme + 2;
SELECT ok, checked, first_bad_id - :first_acme AS bad FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- 3. an event deleted from the middle
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
DELETE FROM mandant.audit_event WHERE id = :first_acme + 3;
SELECT ok, checked, first_bad_id - :first_acme AS bad FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- 4. an event and its seal deleted together
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
ALTER TABLE mandant.audit_seal DISABLE TRIGGER append_only;
DELETE FROM mandant.audit_event WHERE id = :first_acme + 3;
DELETE FROM mandant.audit_seal WHERE event_id = :first_acme + 3;
SELECT ok, checked, first_bad_id - :first_acme AS bad FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- 5. an event moved to another tenant
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET tenant_id = 'b0000000-0000-4000-8000-00000000000b' WHERE id = :first_acme;
SELECT ok, checked, first_bad_id - :first_acme AS bad FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- (the other tenant's chain is untouched)
SELECT * FROM mandant.audit_verify('b0000000-0000-4000-8000-00000000000b');

-- disable_audit stops recording; past events stay.
SET ROLE regress_owner;
SELECT mandant.disable_audit('aud.setting');
INSERT INTO aud.setting VALUES ('unrecorded', 'x');
RESET ROLE;
SELECT count(*) AS setting_events FROM mandant.audit_event WHERE entity_type = 'aud.setting';

-- Invalid input: writing to the audit tables, for everyone
SET ROLE regress_user;
INSERT INTO mandant.audit_event (occurred_at, txid, category, action, entity_type, hash)
VALUES (now(), 1, 'x', 'insert', 'x', '\x00');
\echo :LAST_ERROR_SQLSTATE
UPDATE mandant.audit_event SET action = 'x';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
UPDATE mandant.audit_event SET action = 'x';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.audit_event;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE mandant.audit_event;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.audit_seal;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
DELETE FROM mandant.audit_event;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- Invalid input: reading across tenants or verifying another tenant
SET ROLE regress_user;
SELECT count(*) FROM mandant.audit_events('a0000000-0000-4000-8000-00000000000a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM mandant.audit_verify('a0000000-0000-4000-8000-00000000000a');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.audit_seal();
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the size limit is for administrators
SET mandant.audit_max_value_bytes = 1000000;
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: application events
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SAVEPOINT s;
SELECT mandant.audit_log('security', 'update', 'aud.risk', '1', NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.audit_log('Security', 'export', 'aud.risk', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.audit_log('security', NULL, 'aud.risk', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.audit_log('security', 'export', '', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.audit_log('security', 'export', 'aud.risk', NULL, '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE regress_user;
SELECT mandant.audit_log('security', 'export', 'aud.risk', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: enable_audit on what cannot be audited
SET ROLE regress_owner;
CREATE VIEW aud.risk_view AS SELECT * FROM aud.risk;
SELECT mandant.enable_audit('aud.risk_view');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE aud.heap (a int, b text);
SELECT mandant.enable_audit('aud.heap');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_audit('aud.risk', 'risk', '{secret,passwd}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_audit('aud.risk', 'Risk Management');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_audit(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_audit('mandant.tenant');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
CREATE FOREIGN DATA WRAPPER regress_fdw;
CREATE SERVER regress_server FOREIGN DATA WRAPPER regress_fdw;
CREATE FOREIGN TABLE aud.remote (id int) SERVER regress_server;
ALTER FOREIGN TABLE aud.remote OWNER TO regress_owner;
SET ROLE regress_owner;
SELECT mandant.enable_audit('aud.remote');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_user;
SELECT mandant.enable_audit('aud.setting');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a renamed excluded column stops writes instead of leaking
SET ROLE regress_owner;
ALTER TABLE aud.risk RENAME COLUMN secret TO api_secret;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO aud.risk (id, title, api_secret) VALUES (9, 'after rename', 'leak?');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE regress_owner;
SELECT mandant.enable_audit('aud.risk', 'risk', '{api_secret}');
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO aud.risk (id, title, api_secret) VALUES (9, 'after rename', 'not leaked');
SELECT changes FROM mandant.audit_event WHERE entity_id = '9';
ROLLBACK;
-- Nothing half-written: the refused write left neither row nor event.
RESET ROLE;
SELECT count(*) AS rows_9 FROM aud.risk WHERE id = 9;
SELECT count(*) AS events_9 FROM mandant.audit_event WHERE entity_type = 'aud.risk' AND entity_id = '9';

DROP SCHEMA aud CASCADE;
DROP FOREIGN DATA WRAPPER regress_fdw CASCADE;
DELETE FROM mandant.tenant WHERE slug LIKE 'aud-%';
