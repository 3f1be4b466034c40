-- Tenant lifecycle: creation with its events and owner, the provisioning
-- saga, the status machine, suspension, deletion with a tombstone, export
-- and import.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- Creation: the owner's account joins as owner, the tenant is announced.
SET ROLE regress_service;
SELECT mandant.create_user('olga@initech.test', 'olgas long password', 'Olga') AS olga \gset
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.create_tenant('lc-initech', 'Initech', 'Olga@Initech.test', 'pro',
							 'c6000000-0000-4000-8000-000000000001') AS initech \gset
RESET ROLE;
SELECT status FROM mandant.tenant WHERE id = :'initech';
SELECT m.role, m.created_by FROM mandant.membership m WHERE m.tenant_id = :'initech' AND m.user_id = :'olga';
SELECT topic, payload ->> 'slug' AS slug, payload ->> 'status' AS status,
	   tenant_id = '00000000-0000-0000-0000-000000000000' AS platform_event
FROM mandant.outbox WHERE aggregate_id = :'initech' ORDER BY id;
SELECT CASE tenant_id WHEN :'initech' THEN 'initech' WHEN '00000000-0000-0000-0000-000000000000' THEN 'platform' END AS chain,
	   action FROM mandant.audit_event WHERE entity_id IN (:'initech', :'olga') ORDER BY id;

-- The provisioning saga: pending until an external service completes it.
SET mandant.provisioning = 'external';
SET ROLE regress_admin;
SELECT mandant.create_tenant('lc-hooli', 'Hooli', 'gavin@hooli.test', 'free',
							 'c6000000-0000-4000-8000-000000000002') AS hooli \gset
SELECT mandant.create_tenant('lc-pied', 'Pied Piper', 'richard@pied.test', 'free',
							 'c6000000-0000-4000-8000-000000000003') AS pied \gset
RESET ROLE;
RESET mandant.provisioning;
SELECT slug, status FROM mandant.tenant WHERE id IN (:'hooli', :'pied') ORDER BY slug;
-- The provisioning service completes one and fails the other; repeating either is harmless.
SET ROLE regress_service;
SELECT mandant.complete_tenant_provisioning('c6000000-0000-4000-8000-000000000002') = :'hooli' AS completed;
SELECT mandant.complete_tenant_provisioning('c6000000-0000-4000-8000-000000000002') = :'hooli' AS completed_again;
SELECT mandant.fail_tenant_provisioning('c6000000-0000-4000-8000-000000000003', 'DNS zone could not be created') = :'pied' AS failed;
SELECT mandant.fail_tenant_provisioning('c6000000-0000-4000-8000-000000000003', 'DNS zone could not be created') = :'pied' AS failed_again;
-- Invalid input: completing a failed one, failing a completed one, unknown operations, no reason
SELECT mandant.complete_tenant_provisioning('c6000000-0000-4000-8000-000000000003');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.fail_tenant_provisioning('c6000000-0000-4000-8000-000000000002', 'too late');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.complete_tenant_provisioning('c6000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.fail_tenant_provisioning('c6000000-0000-4000-8000-000000000003', '');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT slug, status, status_reason FROM mandant.tenant WHERE id IN (:'hooli', :'pied') ORDER BY slug;
SELECT payload ->> 'slug' AS slug, topic FROM mandant.outbox
WHERE aggregate_id IN (:'hooli', :'pied') ORDER BY id;
-- Invalid input: a failed tenant cannot be entered (SQLSTATEs only: messages name the generated ids)
\set VERBOSITY sqlstate
SET ROLE regress_service;
SELECT mandant.set_tenant(:'pied');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
\set VERBOSITY default

-- The status machine guards every change, even a superuser's.
UPDATE mandant.tenant SET status = 'pending' WHERE id = :'initech';
\echo :LAST_ERROR_SQLSTATE
UPDATE mandant.tenant SET status = 'active' WHERE id = :'pied';
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.next_states('mandant_tenant', 'active') AS from_active;

-- Suspension: nobody enters, the data stays; resuming opens it again.
SET ROLE regress_admin;
SELECT mandant.suspend_tenant(:'initech', 'invoice 2026-11 unpaid');
SELECT mandant.suspend_tenant(:'initech', 'invoice 2026-11 unpaid');
SET ROLE regress_service;
\set VERBOSITY sqlstate
SELECT mandant.set_tenant(:'initech');
\echo :LAST_ERROR_SQLSTATE
-- (the detail names the tenant's generated id)
\set VERBOSITY terse
SELECT mandant.login('olga@initech.test', 'olgas long password', tenant_slug => 'lc-initech');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SET ROLE regress_admin;
SELECT mandant.resume_tenant(:'initech');
-- Invalid input: no reason, an unknown tenant, a failed tenant (neither suspended
-- nor resumed), not an administrator
SELECT mandant.suspend_tenant(:'initech', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.suspend_tenant('00000000-0000-4000-8000-000000000000', 'who?');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.suspend_tenant(:'pied', 'already failed');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.resume_tenant(:'pied');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_service;
SELECT mandant.suspend_tenant(:'initech', 'not mine to do');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT action, changes ->> 'reason' AS reason FROM mandant.audit_event
WHERE entity_id = :'initech' AND action LIKE 'tenant.%' ORDER BY id;

-- Data of two tenants in tables that reference each other, audited and
-- with an outbox, plus configuration and a sealed audit trail.
CREATE SCHEMA lc AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA lc TO regress_service;
SET ROLE regress_owner;
CREATE TABLE lc.project (tenant_id uuid, id bigint GENERATED ALWAYS AS IDENTITY, name text NOT NULL,
						 PRIMARY KEY (tenant_id, id));
CREATE TABLE lc.task (tenant_id uuid, id int, project_id bigint NOT NULL, title text NOT NULL,
					  status text NOT NULL DEFAULT 'open',
					  PRIMARY KEY (tenant_id, id),
					  FOREIGN KEY (tenant_id, project_id) REFERENCES lc.project);
CREATE TABLE lc.comment (tenant_id uuid, id int, task_id int NOT NULL, body text,
						 PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, task_id) REFERENCES lc.task);
SELECT mandant.enable_tenancy(t) FROM unnest(ARRAY['lc.project', 'lc.task', 'lc.comment']::regclass[]) t;
SELECT mandant.enable_audit('lc.task', 'work');
SELECT mandant.enable_outbox('lc.task', 'work');
SELECT mandant.enable_quota('lc.task', 'records');
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lc TO regress_service;
RESET ROLE;
SELECT relid, depth FROM mandant.tenant_tables() WHERE relid::text LIKE 'lc.%';

SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'initech');
INSERT INTO lc.project (name) VALUES ('Website'), ('Office move');
INSERT INTO lc.task (id, project_id, title)
SELECT i, (SELECT min(id) FROM lc.project), 'task ' || i FROM generate_series(1, 3) i;
INSERT INTO lc.comment VALUES (DEFAULT, 1, 1, 'first!');
SELECT mandant.config_set('mailer', 'smtp.host', '"mx.initech.test"', 'own relay');
COMMIT;
BEGIN;
SELECT mandant.set_tenant(:'hooli');
INSERT INTO lc.project (name) VALUES ('Nucleus');
INSERT INTO lc.task (id, project_id, title) SELECT 1, min(id), 'compress' FROM lc.project;
COMMIT;
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.audit_seal() > 0 AS sealed;
RESET ROLE;

-- Export: everything of the tenant, nothing secret.
SET ROLE regress_admin;
SELECT mandant.export_tenant(:'initech') AS export \gset
RESET ROLE;
SELECT :'export'::jsonb ->> 'format' AS format, :'export'::jsonb -> 'version' AS version,
	   :'export'::jsonb #>> '{tenant,slug}' AS slug,
	   (SELECT jsonb_object_agg(k, jsonb_array_length(v)) FROM jsonb_each(:'export'::jsonb -> 'tables') x (k, v)) AS rows,
	   jsonb_array_length(:'export'::jsonb -> 'memberships') AS members,
	   jsonb_array_length(:'export'::jsonb -> 'config') AS config,
	   jsonb_array_length(:'export'::jsonb #> '{audit,events}') > 0 AS has_audit;
SELECT :'export' ~ '(\$2a\$|password|secret_hash|totp)' AS leaks_secrets;

-- Invalid input: deletion with a wrong slug, from inside the tenant, by a non-administrator
\set VERBOSITY sqlstate
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'initech', 'lc-hooli');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.delete_tenant(:'initech', NULL);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT mandant.set_tenant(:'initech');
SELECT mandant.delete_tenant(:'initech', 'lc-initech');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET ROLE regress_service;
SELECT mandant.delete_tenant(:'initech', 'lc-initech');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
\set VERBOSITY default
-- Invalid input: a table outside mandant's registry still points at the
-- tenant's rows: the deletion fails as a whole and changes nothing
CREATE TABLE lc.external_link (tenant_id uuid, project_id bigint, FOREIGN KEY (tenant_id, project_id) REFERENCES lc.project);
INSERT INTO lc.external_link SELECT tenant_id, id FROM lc.project WHERE tenant_id = :'initech' LIMIT 1;
SET ROLE regress_admin;
\set VERBOSITY sqlstate
SELECT mandant.delete_tenant(:'initech', 'lc-initech');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
SELECT (SELECT count(*) FROM lc.task WHERE tenant_id = :'initech') AS tasks_left,
	   (SELECT status FROM mandant.tenant WHERE id = :'initech') AS status,
	   (SELECT count(*) FROM mandant.audit_event WHERE tenant_id = :'initech') > 0 AS audit_left;
DROP TABLE lc.external_link;

-- Deletion: children first, every mandant table, a tombstone; the other
-- tenant and its audit chain are untouched.
SELECT count(*) AS hooli_events_before FROM mandant.audit_event WHERE tenant_id = :'hooli' \gset
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'initech', 'lc-initech') AS counts \gset
RESET ROLE;
SELECT key, value FROM jsonb_each(:'counts'::jsonb) WHERE key NOT IN ('mandant.login_attempt') ORDER BY key;
SELECT (SELECT count(*) FROM mandant.tenant WHERE id = :'initech') AS tenant,
	   (SELECT count(*) FROM lc.project WHERE tenant_id = :'initech') + (SELECT count(*) FROM lc.task WHERE tenant_id = :'initech')
	   + (SELECT count(*) FROM lc.comment WHERE tenant_id = :'initech') AS rows,
	   (SELECT count(*) FROM mandant.audit_event WHERE tenant_id = :'initech') AS audit,
	   (SELECT count(*) FROM mandant.audit_seal WHERE tenant_id = :'initech') AS seals,
	   (SELECT count(*) FROM mandant.outbox WHERE tenant_id = :'initech') AS outbox,
	   (SELECT count(*) FROM mandant.config_entry WHERE tenant_id = :'initech') AS config,
	   (SELECT count(*) FROM mandant.config_history WHERE tenant_id = :'initech') AS config_history,
	   (SELECT count(*) FROM mandant.membership WHERE tenant_id = :'initech') AS members,
	   (SELECT count(*) FROM mandant.tenant_usage WHERE tenant_id = :'initech') AS usage;
SELECT slug_sha256 = sha256('lc-initech'::bytea) AS slug_hashed, counts = :'counts'::jsonb AS counts_kept,
	   deleted_by FROM mandant.tenant_tombstone WHERE tenant_id = :'initech';
SELECT topic FROM mandant.outbox WHERE aggregate_id = :'initech' ORDER BY id;
SELECT (SELECT count(*) FROM mandant.audit_event WHERE tenant_id = :'hooli') = :hooli_events_before AS hooli_events_kept;
SET ROLE regress_admin;
SELECT ok AS hooli_chain_ok FROM mandant.audit_verify(:'hooli');
SELECT ok AS platform_chain_ok FROM mandant.audit_verify('00000000-0000-0000-0000-000000000000');
RESET ROLE;
-- The platform's record of the deletion keeps the erased chain's head.
SELECT changes #>> '{chainHead,seq}' IS NOT NULL AS erased_head_recorded
FROM mandant.audit_event WHERE entity_id = :'initech' AND action = 'tenant.deleted';
-- What the platform's permanent trail keeps of the tenant names it by id only.
SELECT count(*) AS platform_events, count(*) FILTER (WHERE changes::text ~* '(lc-initech|initech\.test|"Initech")') AS naming_it
FROM mandant.audit_event WHERE entity_id = :'initech';
-- Invalid input: the deleted tenant's slug stays taken for a while (links to
-- the old subdomain must not reach a new owner); an administrator may lift it.
SET ROLE regress_admin;
SELECT mandant.create_tenant('lc-initech', 'Initech Impostor', 'x@impostor.test');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL mandant.slug_quarantine_days = 0;
SELECT mandant.create_tenant('lc-initech', 'Initech Again', 'x@initech.test') IS NOT NULL AS created_without_quarantine;
ROLLBACK;
-- nor by importing another tenant under that slug
SELECT mandant.import_tenant(jsonb_set(jsonb_set(:'export'::jsonb, '{tenant,id}', '"c6000000-0000-4000-8000-0000000000bb"'),
								'{tenant,operation_id}', 'null'));
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Invalid input: the tombstone is permanent
DELETE FROM mandant.tenant_tombstone;
\echo :LAST_ERROR_SQLSTATE

-- Import: the export comes back with the same rows, members, configuration
-- and an audit trail that still verifies.
SET ROLE regress_admin;
SELECT mandant.import_tenant(:'export') = :'initech' AS imported;
SELECT mandant.export_tenant(:'initech') AS again \gset
RESET ROLE;
SELECT (:'again'::jsonb -> 'tables') = (:'export'::jsonb -> 'tables') AS same_rows,
	   (:'again'::jsonb -> 'memberships') = (:'export'::jsonb -> 'memberships') AS same_members,
	   (:'again'::jsonb -> 'roles') = (:'export'::jsonb -> 'roles') AS same_roles,
	   (:'again'::jsonb -> 'audit') = (:'export'::jsonb -> 'audit') AS same_audit,
	   (:'again'::jsonb -> 'tenant') = (:'export'::jsonb -> 'tenant') AS same_tenant,
	   (SELECT jsonb_agg(c - 'revision') FROM jsonb_array_elements(:'again'::jsonb -> 'config') c)
	   = (SELECT jsonb_agg(c - 'revision') FROM jsonb_array_elements(:'export'::jsonb -> 'config') c) AS same_config;
SET ROLE regress_admin;
SELECT ok AS imported_chain_ok, checked FROM mandant.audit_verify(:'initech');
RESET ROLE;
-- The platform's record of the import keeps the imported chain's head, so
-- the imported trail cannot be swapped later without a trace.
SELECT (changes #>> '{chainHead,chain}') = (SELECT encode(chain, 'hex') FROM mandant.audit_seal
											 WHERE tenant_id = :'initech' ORDER BY seq DESC LIMIT 1) AS head_recorded,
	   (changes ->> 'auditEvents')::int > 0 AS events_counted
FROM mandant.audit_event WHERE entity_id = :'initech' AND action = 'tenant.imported';
-- and it works again: sequences continue past the imported ids, quotas count
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'initech');
INSERT INTO lc.project (name) VALUES ('After the move') RETURNING id > 2 AS new_id_after_imported;
INSERT INTO lc.task (id, project_id, title) SELECT 4, max(id), 'after import' FROM lc.project;
SELECT resource, used FROM mandant.usage() WHERE resource IN ('records', 'users') ORDER BY resource;
SELECT mandant.config_get('mailer', 'smtp.host') AS relay;
COMMIT;
RESET ROLE;
-- Invalid input: importing twice, another version, not an export, a table that is not here,
-- rows whose parents are missing; none of them leaves anything behind
SET ROLE regress_admin;
SELECT mandant.import_tenant(:'export');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.import_tenant(:'export'::jsonb || '{"version": 2}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.import_tenant('{"hello": "world"}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.import_tenant(jsonb_set(jsonb_set(jsonb_set(:'export'::jsonb, '{tenant,slug}', '"lc-other"'), '{tenant,id}',
								'"c6000000-0000-4000-8000-0000000000aa"'), '{tenant,operation_id}', 'null')
							 || '{"tables": {"lc.nope": []}}');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the operation that created a tenant here; tasks whose project
-- is not in the export (replica mode skips the foreign key triggers, import
-- checks the references itself)
SELECT mandant.import_tenant(jsonb_set(jsonb_set(:'export'::jsonb, '{tenant,slug}', '"lc-other"'), '{tenant,id}',
								'"c6000000-0000-4000-8000-0000000000aa"'));
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.import_tenant(jsonb_set(jsonb_set(jsonb_set(jsonb_set(:'export'::jsonb, '{tenant,slug}', '"lc-other"'),
								'{tenant,id}', '"c6000000-0000-4000-8000-0000000000aa"'), '{tenant,operation_id}', 'null'),
								'{tables,lc.project}', '[]'));
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT (SELECT count(*) FROM mandant.tenant WHERE slug = 'lc-other') AS tenants_named_lc_other,
	   (SELECT count(*) FROM lc.task WHERE tenant_id = 'c6000000-0000-4000-8000-0000000000aa') AS their_tasks;

SET ROLE regress_admin;
SELECT mandant.delete_tenant(id, slug) IS NOT NULL AS deleted FROM mandant.tenant WHERE slug LIKE 'lc-%' ORDER BY slug;
RESET ROLE;
DROP SCHEMA lc CASCADE;
