-- Transactional outbox: events written with the data, claimed with leases,
-- in order per aggregate, retried, dead-lettered, replayed and skipped.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- (events other tests left, e.g. platform.tenant.* of the lifecycle tests, go first)
TRUNCATE mandant.outbox RESTART IDENTITY;
INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'obx-acme', 'Acme', 'o@acme.test'),
	('b0000000-0000-4000-8000-00000000000b', 'obx-globex', 'Globex', 'o@globex.test');
CREATE SCHEMA obx AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA obx TO regress_service, regress_user;
SET ROLE regress_owner;
CREATE TABLE obx.site_visit (
	tenant_id	uuid,
	id			int,
	site_name	text NOT NULL,
	visited_on	date,
	api_key		text,
	PRIMARY KEY (tenant_id, id)
);
SELECT mandant.enable_tenancy('obx.site_visit');
SELECT mandant.enable_outbox('obx.site_visit', 'risk', exclude_columns => '{api_key}');
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'obx.site_visit'::regclass AND tgname = 'mandant_outbox';
GRANT SELECT, INSERT, UPDATE, DELETE ON obx.site_visit TO regress_service;

-- Writes in tenant acme produce events in the same transaction.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SET LOCAL app.request_id = 'req-42';
SET LOCAL app.trace_id = 'trace-7';
INSERT INTO obx.site_visit (id, site_name, visited_on, api_key) VALUES
	(1, 'Plant', '2026-11-02', 'secret'), (2, 'Depot', NULL, 'secret');
UPDATE obx.site_visit SET visited_on = '2026-11-03' WHERE id = 1;
UPDATE obx.site_visit SET site_name = site_name WHERE id = 2;    -- no change: no event
UPDATE obx.site_visit SET api_key = 'rotated' WHERE id = 2;      -- only an excluded column: no event
DELETE FROM obx.site_visit WHERE id = 2;
SELECT mandant.emit('risk.assessment.approved', '7', '{"approvedBy": "carol"}') IS NOT NULL AS emitted;
COMMIT;
-- A rolled-back transaction leaves none.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO obx.site_visit (id, site_name) VALUES (3, 'Never');
SELECT mandant.emit('risk.assessment.approved', '8', '{}') IS NOT NULL AS emitted;
ROLLBACK;
-- globex writes one too
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
INSERT INTO obx.site_visit (id, site_name) VALUES (1, 'Lab');
COMMIT;

-- A tenant sees its own events, with camelCase payloads and context headers.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT id - (SELECT min(id) FROM mandant.outbox) AS n, topic, aggregate_type, aggregate_id, payload, headers,
	   event_id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_v4
FROM mandant.outbox ORDER BY id;
COMMIT;
SELECT count(*) AS events_without_tenant FROM mandant.outbox;

-- A consumer claims across tenants; the envelope is what it publishes.
SELECT id - (SELECT min(id) FROM mandant.outbox) AS n, topic, aggregate_id, attempts,
	   envelope ->> 'type' AS type, envelope ->> 'tenantId' AS tenant,
	   envelope -> 'payload' AS payload,
	   envelope ->> 'timestamp' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' AS iso_utc,
	   envelope ->> 'eventId' = event_id::text AS event_id_ok
FROM mandant.outbox_claim('mailer-1', 10) ORDER BY id;
-- Everything claimable is leased now: nothing for a second consumer.
SELECT count(*) AS second_consumer_gets FROM mandant.outbox_claim('mailer-2', 10);
-- Only the oldest event of each aggregate was handed out; the later ones
-- wait for it.  (Consumers see events only through the functions; these
-- checks look as the superuser.)
RESET ROLE;
SELECT id - (SELECT min(id) FROM mandant.outbox) AS n, tenant_id, aggregate_id, locked_by
FROM mandant.outbox ORDER BY id;
SELECT min(id) AS first_event FROM mandant.outbox \gset
SET ROLE regress_service;
-- Acknowledge; unknown and not-leased ids are ignored and counted out.
SELECT mandant.outbox_ack(ARRAY[:first_event, :first_event + 1, 999999]) AS acked;
SELECT id - :first_event AS n, aggregate_id FROM mandant.outbox_claim('mailer-2', 10) ORDER BY id;
-- Reject: the event backs off, and its aggregate waits with it.
SELECT mandant.outbox_nack(:first_event + 2, 'SMTP timeout', 'mailer-2');
RESET ROLE;
SELECT id - :first_event AS n, attempts, last_error, available_at > now() AS backing_off, locked_until IS NULL AS released
FROM mandant.outbox WHERE id = :first_event + 2;
SET ROLE regress_service;
SELECT count(*) AS claimable_during_backoff FROM mandant.outbox_claim('mailer-3', 10)
WHERE aggregate_id = '1';
-- Replay makes it available at once; order is kept.
SELECT mandant.outbox_replay(:first_event + 2);
SELECT id - :first_event AS n, aggregate_id, attempts FROM mandant.outbox_claim('mailer-3', 10) ORDER BY id;
SELECT mandant.outbox_ack(ARRAY[:first_event + 2]) AS acked;
SELECT id - :first_event AS n, aggregate_id FROM mandant.outbox_claim('mailer-3', 10) ORDER BY id;
SELECT pending, leased, dead FROM mandant.outbox_stats();

-- Dead-lettering: after mandant.outbox_max_attempts the event is dead and
-- stops its aggregate until it is replayed or skipped.
RESET ROLE;
SET mandant.outbox_max_attempts = 2;   -- attempts 1 and 2, then dead
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.emit('risk.report.generated', 'r1', '{"try": 1}') IS NOT NULL AS first;
SELECT mandant.emit('risk.report.generated', 'r1', '{"try": 2}') IS NOT NULL AS second;
COMMIT;
RESET ROLE;
SELECT min(id) AS r1 FROM mandant.outbox WHERE aggregate_id = 'r1' \gset
SET ROLE regress_service;
SELECT count(*) FROM mandant.outbox_claim('reporter', 10);
SELECT mandant.outbox_nack(:r1, 'renderer crashed');
-- (skip the one-second backoff instead of waiting for it)
RESET ROLE;
UPDATE mandant.outbox SET available_at = now() WHERE id = :r1;
SET ROLE regress_service;
SELECT count(*) FROM mandant.outbox_claim('reporter', 10);
SELECT mandant.outbox_nack(:r1, 'renderer crashed again');
RESET ROLE;
SELECT id = :r1 AS is_r1, attempts, dead_at IS NOT NULL AS dead, last_error FROM mandant.outbox WHERE aggregate_id = 'r1' ORDER BY id;
SET ROLE regress_service;
SELECT count(*) AS r1_claimable FROM mandant.outbox_claim('reporter', 10) WHERE aggregate_id = 'r1';
SELECT pending, leased, dead FROM mandant.outbox_stats();
SELECT mandant.outbox_skip(:r1, 'renderer cannot draw this report; superseded');
SELECT aggregate_id, envelope -> 'payload' AS payload FROM mandant.outbox_claim('reporter', 10);
SELECT mandant.outbox_ack(ARRAY[:r1 + 1]) AS acked;
RESET ROLE;
SELECT regexp_replace(last_error, 'skipped by \S+:', 'skipped by (role):') AS last_error FROM mandant.outbox WHERE id = :r1;
SET ROLE regress_service;

-- Purge removes published events only.
SELECT pending, leased, dead FROM mandant.outbox_stats();
SELECT mandant.outbox_purge('0 seconds') AS purged;
SELECT pending, leased, dead FROM mandant.outbox_stats();

-- Invalid input: consumers need mandant_service or mandant_admin
SET ROLE regress_user;
SELECT * FROM mandant.outbox_claim('intruder');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.outbox_ack(ARRAY[1]);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: events are written by mandant only
INSERT INTO mandant.outbox (event_id, tenant_id, topic, aggregate_type, payload, headers, created_at, available_at)
VALUES (gen_random_uuid(), 'a0000000-0000-4000-8000-00000000000a', 'x.y.z', 'x.y', '{}', '{}', now(), now());
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: emit without a tenant, bad topics, NULL payload
SELECT mandant.emit('risk.site.created', '1', '{}');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_service;
SELECT mandant.emit('Risk.Site.Created', '1', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.emit('risk.site', '1', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.emit('risk..created', '1', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.emit('risk.site.created', '1', NULL);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: nack of unknown, unleased and foreign events
SELECT mandant.outbox_nack(999999, 'x');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.emit('risk.site.checked', 's9', '{}') IS NOT NULL AS emitted;
COMMIT;
RESET ROLE;
SELECT max(id) AS s9 FROM mandant.outbox \gset
SET ROLE regress_service;
SELECT mandant.outbox_nack(:s9, 'not claimed yet');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM mandant.outbox_claim('owner-a', 10);
SELECT mandant.outbox_nack(:s9, 'not mine', 'owner-b');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: claim arguments, skip and purge
SELECT * FROM mandant.outbox_claim('', 10);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM mandant.outbox_claim('c', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.outbox_skip(:s9, 'not dead');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.outbox_skip(:s9, '');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.outbox_purge(NULL);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: enable_outbox on what cannot publish
SET ROLE regress_owner;
CREATE TABLE obx.heap (a int);
SELECT mandant.enable_outbox('obx.heap', 'risk');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_outbox('obx.site_visit', 'Risk');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_outbox('obx.site_visit', 'risk', exclude_columns => '{password}');
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW obx.visits AS SELECT * FROM obx.site_visit;
SELECT mandant.enable_outbox('obx.visits', 'risk');
\echo :LAST_ERROR_SQLSTATE
-- disable_outbox stops publishing.
SELECT mandant.disable_outbox('obx.site_visit');
RESET ROLE;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO obx.site_visit (tenant_id, id, site_name) VALUES ('a0000000-0000-4000-8000-00000000000a', 5, 'Quiet');
SELECT count(*) AS events_for_5 FROM mandant.outbox WHERE aggregate_id = '5';

DROP SCHEMA obx CASCADE;
DELETE FROM mandant.tenant WHERE slug LIKE 'obx-%';
