-- Tenant streams: mandant.export_tenant_stream() and COPY into
-- mandant.tenant_import, run by a platform administrator (not a superuser).
-- The stream carries everything export_tenant() does, comes back equal,
-- and an import that is cut short, changed, forged or refused leaves
-- nothing behind.  The table owner's code runs as the owner, outside the
-- tenant, on both ways.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

CREATE SCHEMA ts AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA ts TO regress_service;
SET ROLE regress_owner;
CREATE TYPE ts.mood AS ENUM ('calm', 'busy');
-- The owner's cast to json runs when a row is exported: it reports who runs it.
CREATE FUNCTION ts.mood_json(m ts.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
	RAISE WARNING 'mood cast runs as %, tenant %', current_user, CASE WHEN mandant.current_tenant() IS NULL THEN 'none' ELSE 'entered' END;
	RETURN to_json(m::text);
END
$$;
CREATE CAST (ts.mood AS json) WITH FUNCTION ts.mood_json(ts.mood);
CREATE TABLE ts.project (tenant_id uuid, id bigint GENERATED ALWAYS AS IDENTITY, name text NOT NULL,
						 mood ts.mood, PRIMARY KEY (tenant_id, id));
CREATE TABLE ts."task ""list""" (tenant_id uuid, id serial, project_id bigint NOT NULL, "ti""tle" text NOT NULL,
								 PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, project_id) REFERENCES ts.project);
SELECT mandant.enable_tenancy(t) FROM unnest(ARRAY['ts.project', 'ts."task ""list"""']::regclass[]) t;
SELECT mandant.enable_audit('ts."task ""list"""', 'work');
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ts TO regress_service;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ts TO regress_service;
-- The owner's trigger that even replica mode fires: it reports who runs it,
-- and tries to start an import of its own.
CREATE FUNCTION ts.project_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE WARNING 'owner trigger runs as %, tenant %', current_user, CASE WHEN mandant.current_tenant() IS NULL THEN 'none' ELSE 'entered' END;
	BEGIN
		INSERT INTO mandant.tenant_import VALUES ('{"format":"mandant.tenant-stream","version":1}');
		RAISE WARNING 'nested import accepted';
	EXCEPTION WHEN OTHERS THEN
		RAISE WARNING 'nested import refused: %', SQLSTATE;
	END;
	RETURN NULL;
END
$$;
CREATE TRIGGER project_seen AFTER INSERT ON ts.project FOR EACH STATEMENT EXECUTE FUNCTION ts.project_seen();
ALTER TABLE ts.project ENABLE ALWAYS TRIGGER project_seen;
RESET ROLE;

SET ROLE regress_service;
SELECT mandant.create_user('tessa@umbrella.test', 'tessas long password', 'Tessa') AS tessa \gset
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.create_tenant('ts-umbrella', 'Umbrella', 'tessa@umbrella.test', 'pro',
							 'c7000000-0000-4000-8000-000000000001') AS umbrella \gset
SELECT mandant.create_tenant('ts-other', 'Other', 'x@other.test', 'pro',
							 'c7000000-0000-4000-8000-000000000002') AS other \gset
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'umbrella');
INSERT INTO ts.project (name, mood) VALUES ('Hive', 'busy'), ('Raccoon "City" \ 1', NULL);
INSERT INTO ts."task ""list""" (project_id, "ti""tle")
SELECT (SELECT min(id) FROM ts.project), 'task ' || i FROM generate_series(1, 2500) i;
SELECT mandant.config_set('mailer', 'smtp.host', '"mx.umbrella.test"', 'own relay');
SELECT mandant.config_set('mailer', 'smtp.host', '"mx2.umbrella.test"', 'second relay');
COMMIT;
BEGIN;
SELECT mandant.set_tenant(:'other');
INSERT INTO ts.project (name) VALUES ('Elsewhere');
COMMIT;
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.audit_seal() > 0 AS sealed;

-- Export: up to 1,000 lines per row, joined by newlines; the owner's cast
-- runs as the owner, outside any tenant.
CREATE TEMP TABLE stream (n bigserial, line text);
INSERT INTO stream (line)
SELECT l FROM mandant.export_tenant_stream(:'umbrella') c, string_to_table(c, E'\n') l;
SELECT mandant.export_tenant(:'umbrella') AS export \gset
RESET ROLE;
SELECT count(*) AS lines,
	   count(*) FILTER (WHERE line LIKE '{"table":"ts.project",%') AS projects,
	   count(*) FILTER (WHERE line LIKE '{"table":"ts.\\"task %') AS tasks,
	   count(*) FILTER (WHERE line LIKE '{"auditEvent":%') AS audit_events,
	   count(*) FILTER (WHERE line LIKE '{"auditSeal":%') AS seals,
	   count(*) FILTER (WHERE line LIKE '{"membership":%') AS members,
	   count(*) FILTER (WHERE line LIKE '{"configHistory":%') AS config_history,
	   count(*) FILTER (WHERE line LIKE '{"config":%') AS config
FROM stream;
SELECT (line::jsonb ->> 'format') AS format, (line::jsonb -> 'version') AS version,
	   (line::jsonb #>> '{tenant,slug}') AS slug, (line::jsonb -> 'tables') AS tables
FROM stream WHERE n = 1;
-- The trailer counts the lines before it and hashes them.
SELECT (SELECT line::jsonb #>> '{end,lines}' FROM stream ORDER BY n DESC LIMIT 1)::bigint = count(*) - 1 AS count_right,
	   (SELECT line::jsonb #>> '{end,sha256}' FROM stream ORDER BY n DESC LIMIT 1)
	   = encode(sha256(convert_to(string_agg(line || E'\n', '' ORDER BY n) FILTER (WHERE line NOT LIKE '{"end":%'), 'UTF8')), 'hex') AS digest_right
FROM stream;
-- The same rows as export_tenant(), nothing secret.
SELECT (SELECT jsonb_agg(x ORDER BY x::text) FROM jsonb_array_elements(:'export'::jsonb -> 'tables' -> 'ts.project') x)
	   = (SELECT jsonb_agg(line::jsonb -> 'row' ORDER BY (line::jsonb -> 'row')::text) FROM stream WHERE line LIKE '{"table":"ts.project",%')
	   AS same_projects,
	   (SELECT count(*) FROM stream WHERE line ~ '(\$2a\$|password|secret_hash|totp)') AS lines_with_secrets;

-- Invalid input: nobody else may export or import, nor call the bodies or the trigger.
\set VERBOSITY sqlstate
SET ROLE regress_user;
SELECT count(*) FROM mandant.export_tenant_stream(:'umbrella');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM mandant.op_export_tenant_stream(:'umbrella');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import VALUES ('{"format":"mandant.tenant-stream"}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.op_tenant_import_open();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_owner;
CREATE VIEW ts.fake_import AS SELECT NULL::text AS line;
CREATE TRIGGER steal INSTEAD OF INSERT ON ts.fake_import FOR EACH ROW EXECUTE FUNCTION mandant.tenant_import_line();
\echo :LAST_ERROR_SQLSTATE
DROP VIEW ts.fake_import;
RESET ROLE;
SET ROLE regress_service;
SELECT count(*) FROM mandant.export_tenant_stream(:'umbrella');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
\set VERBOSITY default
SET ROLE regress_admin;
SELECT count(*) FROM mandant.export_tenant_stream('c7000000-0000-4000-8000-0000000000ff');
SELECT count(*) FROM mandant.export_tenant_stream(NULL);

-- Move: delete, then import the stream; it comes back equal and verified.
SELECT mandant.delete_tenant(:'umbrella', 'ts-umbrella') IS NOT NULL AS deleted;
SET client_min_messages = notice;
\set VERBOSITY terse
INSERT INTO mandant.tenant_import SELECT line FROM stream ORDER BY n;
\set VERBOSITY default
SET client_min_messages = warning;
CREATE TEMP TABLE again (n bigserial, line text);
INSERT INTO again (line)
SELECT l FROM mandant.export_tenant_stream(:'umbrella') c, string_to_table(c, E'\n') l;
RESET ROLE;
SELECT (SELECT count(*) FROM (SELECT line FROM stream WHERE line !~ '^\{"(config|configHistory|end)":' AND n > 1
							  EXCEPT SELECT line FROM again) x) AS lines_lost,
	   (SELECT count(*) FROM (SELECT line FROM again WHERE line !~ '^\{"(config|configHistory|end)":' AND n > 1
							  EXCEPT SELECT line FROM stream) x) AS lines_gained,
	   (SELECT count(*) FROM again) = (SELECT count(*) FROM stream) AS same_count;
SELECT (SELECT jsonb_agg((line::jsonb -> 'config') - 'revision' ORDER BY n) FROM stream WHERE line LIKE '{"config":%')
	   = (SELECT jsonb_agg((line::jsonb -> 'config') - 'revision' ORDER BY n) FROM again WHERE line LIKE '{"config":%') AS same_config,
	   (SELECT jsonb_agg((line::jsonb -> 'configHistory') - 'revision' ORDER BY n) FROM stream WHERE line LIKE '{"configHistory":%')
	   = (SELECT jsonb_agg((line::jsonb -> 'configHistory') - 'revision' ORDER BY n) FROM again WHERE line LIKE '{"configHistory":%') AS same_history;
SET ROLE regress_admin;
SELECT ok, checked FROM mandant.audit_verify(:'umbrella');
RESET ROLE;
SELECT (changes ->> 'auditEvents')::int AS audit_events_recorded
FROM mandant.audit_event WHERE entity_id = :'umbrella' AND action = 'tenant.imported';
-- and it works: the serial sequence continues past the imported ids
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'umbrella');
INSERT INTO ts."task ""list""" (project_id, "ti""tle") SELECT min(id), 'after the move' FROM ts.project RETURNING id > 2500 AS new_id;
ROLLBACK;
RESET ROLE;

-- Invalid input: each import below fails as a whole (22P04 for the stream,
-- 22023 for a forged audit trail, 23505 for a tenant that exists) and
-- leaves no tenant behind.
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'umbrella', 'ts-umbrella') IS NOT NULL AS deleted;
CREATE FUNCTION pg_temp.with_trailer(lines text[]) RETURNS SETOF text LANGUAGE sql AS $$
	SELECT l FROM unnest(lines) WITH ORDINALITY u (l, i)
	UNION ALL
	SELECT format('{"end":{"lines":%s,"sha256":"%s"}}', cardinality(lines),
				  encode(sha256(convert_to(array_to_string(lines, E'\n') || E'\n', 'UTF8')), 'hex'))
$$;
\set VERBOSITY sqlstate
-- cut short: no trailer
INSERT INTO mandant.tenant_import SELECT line FROM stream WHERE line NOT LIKE '{"end":%' ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
-- a line lost on the way
INSERT INTO mandant.tenant_import SELECT line FROM stream WHERE n <> 5 ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
-- a line changed on the way
INSERT INTO mandant.tenant_import SELECT replace(line, '"task 7"', '"task 8"') FROM stream ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
-- a line after the trailer; two streams in one statement
INSERT INTO mandant.tenant_import SELECT line FROM (SELECT n, line FROM stream UNION ALL SELECT 1e9, '{"role":{}}') s ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import SELECT line FROM (SELECT n, line FROM stream UNION ALL SELECT n + 1e6, line FROM stream) s ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
-- an audit event rewritten, with a trailer made to match: the chain refuses it
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(CASE WHEN line LIKE '{"auditEvent":%"task 7"%' THEN replace(line, '"task 7"', '"task 0"') ELSE line END ORDER BY n))
FROM stream WHERE line NOT LIKE '{"end":%';
\echo :LAST_ERROR_SQLSTATE
-- not a stream, another version, an unknown kind, a table the header does not name, a malformed row, nothing at all
INSERT INTO mandant.tenant_import SELECT pg_temp.with_trailer(ARRAY['{"hello":"world"}']);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import SELECT pg_temp.with_trailer(ARRAY['{"format":"mandant.tenant-stream","version":2}']);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(line ORDER BY n) || '{"secret":{}}'::text) FROM stream WHERE line NOT LIKE '{"end":%';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(line ORDER BY n) || '{"table":"ts.other","row":{}}'::text) FROM stream WHERE line NOT LIKE '{"end":%';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(line ORDER BY n) || '{"table":"ts.project"}'::text) FROM stream WHERE line NOT LIKE '{"end":%';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(line ORDER BY n) || '{"table":"ts.project","row":}'::text) FROM stream WHERE line NOT LIKE '{"end":%';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(line ORDER BY n) || '{"role":}'::text) FROM stream WHERE line NOT LIKE '{"end":%';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_import SELECT line FROM stream WHERE false;
\echo :LAST_ERROR_SQLSTATE
-- an empty line in a chunk
INSERT INTO mandant.tenant_import
SELECT string_agg(line, E'\n' ORDER BY n) || E'\n' FROM stream;
\echo :LAST_ERROR_SQLSTATE
-- a task whose project is not in the stream
INSERT INTO mandant.tenant_import
SELECT pg_temp.with_trailer(array_agg(line ORDER BY n)) FROM stream
WHERE line NOT LIKE '{"end":%' AND line NOT LIKE '{"table":"ts.project",%';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
SELECT count(*) AS umbrella_left, (SELECT count(*) FROM ts.project WHERE tenant_id = :'umbrella') AS projects_left
FROM mandant.tenant WHERE id = :'umbrella';

-- Chunks as export_tenant_stream() returns them, e.g. two of the whole stream.
SELECT count(*) AS chunks FROM mandant.export_tenant_stream(:'other');
INSERT INTO mandant.tenant_import
SELECT string_agg(line, E'\n' ORDER BY n) FROM stream GROUP BY n <= 3000 ORDER BY n <= 3000 DESC;
SELECT mandant.delete_tenant(:'umbrella', 'ts-umbrella') IS NOT NULL AS deleted;

-- No tenant carries the platform's id, however its row is written.
\set VERBOSITY sqlstate
INSERT INTO mandant.tenant (id, slug, name, owner_email)
VALUES ('00000000-0000-0000-0000-000000000000', 'ts-platform', 'Platform', 'p@platform.test');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- A failed import inside a savepoint does not stop the next one.
SET ROLE regress_admin;
BEGIN;
SAVEPOINT s;
INSERT INTO mandant.tenant_import SELECT line FROM stream WHERE line NOT LIKE '{"end":%' ORDER BY n;
ROLLBACK TO SAVEPOINT s;
INSERT INTO mandant.tenant_import SELECT line FROM stream ORDER BY n;
-- importing it twice
\set VERBOSITY sqlstate
SAVEPOINT t;
INSERT INTO mandant.tenant_import SELECT line FROM stream ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT t;
\set VERBOSITY default
COMMIT;
SELECT ok FROM mandant.audit_verify(:'umbrella');
RESET ROLE;
-- Replica mode (as a restore sets it) does not skip an import silently.
SET session_replication_role = replica;
\set VERBOSITY sqlstate
INSERT INTO mandant.tenant_import SELECT line FROM stream ORDER BY n;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET session_replication_role;
SET ROLE regress_admin;
-- The other tenant was never touched.
SELECT mandant.delete_tenant(id, slug) IS NOT NULL AS deleted FROM mandant.tenant WHERE slug LIKE 'ts-%' ORDER BY slug;
RESET ROLE;
DROP SCHEMA ts CASCADE;
