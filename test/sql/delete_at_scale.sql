-- Deleting a tenant at scale: delete_tenant writes no audit event, outbox
-- event or usage change for the rows it erases (they are erased with the
-- tenant anyway); the owner's own triggers still run, rows of other tenants
-- are checked as always; a table of more than one batch is deleted in
-- batches, with progress reported for large tables.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

\set acme d5000000-0000-4000-8000-000000000001
\set umbrella d5000000-0000-4000-8000-000000000002
\set big d5000000-0000-4000-8000-000000000003
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	(:'acme', 'ds-acme', 'Acme', 'ann@acme.test', 'enterprise'),
	(:'umbrella', 'ds-umbrella', 'Umbrella', 'al@umbrella.test', 'enterprise'),
	(:'big', 'ds-big', 'Big', 'bo@big.test', 'enterprise');

-- A table under audit, outbox, quota and a state machine; a second audited
-- table; the owner's own record of deleted tickets (not a tenant table).
CREATE SCHEMA ds AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA ds TO regress_service;
SET ROLE regress_owner;
SELECT mandant.create_state_machine('ds_ticket', '{open}', states => '{open,closed}');
SELECT mandant.add_transition('ds_ticket', 'open', 'closed', 'write');
CREATE TABLE ds.ticket (tenant_id uuid, id int, title text NOT NULL, status text,
						PRIMARY KEY (tenant_id, id));
CREATE TABLE ds.note (tenant_id uuid, id int, body text, PRIMARY KEY (tenant_id, id));
CREATE TABLE ds.deleted_ticket (tenant_id uuid, id int);
SELECT mandant.enable_tenancy(t) FROM unnest(ARRAY['ds.ticket', 'ds.note']::regclass[]) t;
SELECT mandant.enable_audit('ds.ticket', 'support');
SELECT mandant.enable_outbox('ds.ticket', 'support');
SELECT mandant.enable_quota('ds.ticket', 'records');
SELECT mandant.enable_state_machine('ds.ticket', 'ds_ticket');
SELECT mandant.enable_audit('ds.note', 'support');
GRANT SELECT, INSERT, UPDATE, DELETE ON ds.ticket, ds.note TO regress_service;
RESET ROLE;

SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO ds.ticket (id, title, status) SELECT i, 'ticket ' || i, 'open' FROM generate_series(1, 3) i;
INSERT INTO ds.note (id, body) VALUES (1, 'acme''s note');
COMMIT;
BEGIN;
SELECT mandant.set_tenant(:'umbrella');
INSERT INTO ds.ticket (id, title, status) SELECT i, 'ticket ' || i, 'open' FROM generate_series(1, 2) i;
INSERT INTO ds.note (id, body) VALUES (1, 'umbrella''s note');
COMMIT;
RESET ROLE;
SELECT t.slug, u.used FROM mandant.tenant_usage u JOIN mandant.tenant t ON t.id = u.tenant_id
WHERE u.resource = 'records' AND t.slug LIKE 'ds-%' ORDER BY t.slug;

-- Invalid input: the owner's trigger deletes a row of another tenant while
-- acme is erased; that row is refused as ever, and nothing is deleted
SET ROLE regress_owner;
CREATE FUNCTION ds.drop_other_notes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM ds.note WHERE tenant_id <> OLD.tenant_id;
	RETURN NULL;
END
$$;
CREATE TRIGGER drop_other_notes AFTER DELETE ON ds.ticket FOR EACH ROW EXECUTE FUNCTION ds.drop_other_notes();
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'acme', 'ds-acme');
RESET ROLE;
SELECT (SELECT count(*) FROM ds.ticket WHERE tenant_id = :'acme') AS acme_tickets,
	   (SELECT count(*) FROM ds.note) AS notes,
	   (SELECT status FROM mandant.tenant WHERE id = :'acme') AS status;
DROP TRIGGER drop_other_notes ON ds.ticket;

-- The owner's trigger records each deleted ticket; it still runs.
SET ROLE regress_owner;
CREATE FUNCTION ds.record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ds.deleted_ticket VALUES (OLD.tenant_id, OLD.id);
	RETURN NULL;
END
$$;
CREATE TRIGGER record_deletion AFTER DELETE ON ds.ticket FOR EACH ROW EXECUTE FUNCTION ds.record_deletion();
RESET ROLE;

-- Deletion: the rows go, and what the transaction wrote to the audit
-- trail and the outbox is the platform's record of the deletion only; the
-- usage counter is deleted, never updated (counted in a new session: the
-- statistics of a transaction include what earlier ones did not flush).
SELECT max(id) AS audit_before FROM mandant.audit_event \gset
SELECT max(id) AS outbox_before FROM mandant.outbox \gset
\c
SET client_min_messages = warning;
BEGIN;
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'acme', 'ds-acme') AS counts \gset
RESET ROLE;
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_all_tables
WHERE relid IN ('mandant.audit_event'::regclass, 'mandant.outbox'::regclass, 'mandant.tenant_usage'::regclass)
ORDER BY relname;
COMMIT;
SELECT key, value FROM jsonb_each(:'counts'::jsonb)
WHERE key IN ('ds.ticket', 'ds.note', 'mandant.audit_event', 'mandant.outbox', 'mandant.tenant_usage') ORDER BY key;
SELECT id - :audit_before AS after, tenant_id = '00000000-0000-0000-0000-000000000000' AS platform, action
FROM mandant.audit_event WHERE id > :audit_before ORDER BY id;
SELECT id - :outbox_before AS after, topic FROM mandant.outbox WHERE id > :outbox_before ORDER BY id;
SELECT tenant_id = :'acme' AS acme, count(*) FROM ds.deleted_ticket GROUP BY 1;
-- The other tenant's rows, events and usage are untouched.
SELECT (SELECT count(*) FROM ds.ticket WHERE tenant_id = :'umbrella') AS tickets,
	   (SELECT count(*) FROM ds.note WHERE tenant_id = :'umbrella') AS notes,
	   (SELECT used FROM mandant.tenant_usage WHERE tenant_id = :'umbrella' AND resource = 'records') AS used,
	   (SELECT count(*) FROM mandant.audit_event WHERE tenant_id = :'umbrella') AS audit_events;

-- More than one batch: 120,000 rows of one tenant, loaded before the
-- triggers were attached, beside the other tenant's; deleted whole, with
-- a progress notice every 100,000 rows and at the end.
CREATE TABLE ds.reading (tenant_id uuid, id int, value float8, PRIMARY KEY (tenant_id, id));
INSERT INTO ds.reading SELECT :'big', i, i / 7.0 FROM generate_series(1, 120000) i;
INSERT INTO ds.reading SELECT :'umbrella', i, i FROM generate_series(1, 10) i;
ALTER TABLE ds.reading OWNER TO regress_owner;
SET ROLE regress_owner;
SELECT mandant.enable_tenancy('ds.reading');
SELECT mandant.enable_audit('ds.reading', 'metrics');
SELECT mandant.enable_outbox('ds.reading', 'metrics');
SELECT mandant.enable_quota('ds.reading', 'records');
RESET ROLE;
SELECT max(id) AS audit_before FROM mandant.audit_event \gset
SET client_min_messages = notice;
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'big', 'ds-big') -> 'ds.reading' AS readings;
RESET ROLE;
SET client_min_messages = warning;
SELECT tenant_id = :'umbrella' AS umbrella, count(*) FROM ds.reading GROUP BY 1;
SELECT count(*) AS audit_events_since FROM mandant.audit_event WHERE id > :audit_before;

-- Clean up.
SET ROLE regress_admin;
SELECT mandant.delete_tenant(id, slug) IS NOT NULL AS deleted FROM mandant.tenant WHERE slug LIKE 'ds-%' ORDER BY slug;
RESET ROLE;
DROP SCHEMA ds CASCADE;
SET ROLE regress_owner;
SELECT mandant.drop_state_machine('ds_ticket');
RESET ROLE;
