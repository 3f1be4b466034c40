-- Attacks on tenant streams (mandant.export_tenant_stream and COPY into
-- mandant.tenant_import), as the roles that would try: a LOGIN-only role,
-- a table owner whose casts and triggers run during an export or import,
-- and mandant_admin, who may move tenants but must not reach into the
-- platform's or another tenant's records with it.  Each attack ends with
-- attack.verdict(): the victim's records untouched and nobody a superuser.
\set SHOW_CONTEXT never
\set attack_db regress_mandant_attack_stream
\i test/fixtures/attack.sql
SET client_min_messages = warning;
\set new 'a7722222-0000-4000-8000-00000000000c'
\set platform '00000000-0000-0000-0000-000000000000'

-- header(id, slug, tables, extra): a stream's first line, for a tenant like the attacker's.
CREATE FUNCTION attack.header(new_id uuid, new_slug text, tables text[] DEFAULT '{}', extra jsonb DEFAULT '{}')
RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'mandant.tenant-stream', 'version', 1,
		'tenant', to_jsonb(t) || jsonb_build_object('id', new_id, 'slug', new_slug, 'operation_id', NULL) || extra,
		'tables', to_jsonb(tables))::text
	FROM mandant.tenant t WHERE t.id = 'a7711111-0000-4000-8000-00000000000b'
$$;
-- with_trailer(lines): the lines and a trailer that matches them.
CREATE FUNCTION attack.with_trailer(lines text[]) RETURNS SETOF text LANGUAGE sql AS $$
	SELECT l FROM unnest(lines) WITH ORDINALITY u (l, i)
	UNION ALL
	SELECT format('{"end":{"lines":%s,"sha256":"%s"}}', cardinality(lines),
				  encode(sha256(convert_to(array_to_string(lines, E'\n') || E'\n', 'UTF8')), 'hex'))
$$;
-- import(lines, keep): 'ok' or the SQLSTATE the import fails with; undone unless keep.
CREATE FUNCTION attack.import(lines text[], keep boolean DEFAULT false) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO mandant.tenant_import SELECT attack.with_trailer(lines);
	IF NOT keep THEN
		RAISE EXCEPTION USING ERRCODE = 'AT000';
	END IF;
	RETURN 'ok';
EXCEPTION WHEN SQLSTATE 'AT000' THEN
	RETURN 'ok';
WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA attack TO PUBLIC;

-- The table owner's stage: a table of the attacker's tenant with a type
-- whose cast to json (run while an export fetches the rows) looks for
-- the session's other cursors: it reads those of the victim's table and
-- replaces those of mandant's own records with a query of its own.
SET ROLE regress_evil_owner;
CREATE TABLE evil.loot (who text, what text);
GRANT INSERT ON evil.loot TO PUBLIC;
CREATE FUNCTION evil.pwn() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.loot VALUES (current_user, 'pwn ran');
	BEGIN
		EXECUTE 'ALTER ROLE regress_evil_owner SUPERUSER';
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	RETURN '{"role":{"name":"pwned","scopes":["admin"]}}';
END
$$;
GRANT EXECUTE ON FUNCTION evil.pwn() TO PUBLIC;
CREATE TYPE evil.mood AS ENUM ('calm', 'busy');
CREATE FUNCTION evil.mood_json(m evil.mood) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
	c refcursor;
	p record;
	r record;
BEGIN
	FOR p IN SELECT name, statement FROM pg_cursors WHERE name LIKE '<unnamed portal %>' LOOP
		c := p.name;
		BEGIN
			IF p.statement LIKE '%victim_app.%' THEN
				LOOP
					FETCH c INTO r;
					EXIT WHEN NOT FOUND;
					INSERT INTO evil.loot VALUES (current_user, 'stolen');
				END LOOP;
			ELSIF p.statement LIKE '%FROM mandant.%' THEN
				CLOSE c;
				OPEN c FOR SELECT evil.pwn();
				INSERT INTO evil.loot VALUES (current_user, 'hijacked');
			END IF;
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
	END LOOP;
	RETURN to_json(m::text);
END
$$;
CREATE CAST (evil.mood AS json) WITH FUNCTION evil.mood_json(evil.mood);
CREATE TABLE evil.t (tenant_id uuid, id int, mood evil.mood, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('evil.t');
GRANT SELECT, INSERT ON evil.t TO regress_service;
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
INSERT INTO evil.t SELECT :'evil', i, 'calm' FROM generate_series(1, 3) i;
COMMIT;
RESET ROLE;
-- The victim's second table, bigger than one fetch of an export.
SET ROLE regress_app_owner;
CREATE TABLE victim_app.big (tenant_id uuid, id int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('victim_app.big');
RESET ROLE;
INSERT INTO victim_app.big SELECT :'victim', i FROM generate_series(1, 1500) i;
SET ROLE regress_admin;
CREATE TEMP TABLE victim_alone AS SELECT mandant.export_tenant_stream(:'victim') AS line;
RESET ROLE;
TRUNCATE evil.loot;

-- 1. Nobody but mandant_admin exports or imports, calls the bodies, or
--    fires the import's trigger function from a view of their own.
SELECT r, attack.sqlstate_of(format('SET ROLE %I; SELECT count(*) FROM mandant.export_tenant_stream(%L)', r, :'victim')) AS export,
	   attack.sqlstate_of(format('SET ROLE %I; SELECT count(*) FROM mandant.op_export_tenant_stream(%L)', r, :'victim')) AS export_body,
	   attack.sqlstate_of(format('SET ROLE %I; INSERT INTO mandant.tenant_import VALUES (%L)', r, attack.header(:'new', 'attack-new'))) AS import,
	   attack.sqlstate_of(format('SET ROLE %I; SELECT mandant.op_tenant_import_open()', r)) AS import_open
FROM unnest(ARRAY['regress_attacker', 'regress_evil_owner', 'regress_service', 'regress_gateway']) r;
RESET ROLE;
SET ROLE regress_evil_owner;
CREATE VIEW evil.fake_import AS SELECT NULL::text AS line;
SELECT attack.sqlstate_of('CREATE TRIGGER steal INSTEAD OF INSERT ON evil.fake_import FOR EACH ROW EXECUTE FUNCTION mandant.tenant_import_line()') AS own_view;
SELECT attack.sqlstate_of('CREATE TRIGGER steal AFTER INSERT ON evil.t FOR EACH STATEMENT EXECUTE FUNCTION mandant.tenant_import_line()') AS own_table;
DROP VIEW evil.fake_import;
RESET ROLE;
SELECT attack.verdict('gate');

-- 2. Two exports in one query (the attacker's tenant and the victim's):
--    while the first fetches the owner's rows, the owner's cast replaces
--    the open cursor of the second with its own query, which the second
--    export then runs as the extension's superuser.
SET ROLE regress_admin;
CREATE TEMP TABLE both_streams AS
SELECT mandant.export_tenant_stream(:'evil') AS evil_line, mandant.export_tenant_stream(:'victim') AS victim_line;
RESET ROLE;
SELECT count(*) FILTER (WHERE who <> 'regress_evil_owner') AS ran_as_another_role,
	   count(*) FILTER (WHERE what = 'hijacked') AS hijacked
FROM evil.loot;
SELECT (SELECT count(*) FROM both_streams WHERE victim_line IS NOT NULL) = (SELECT count(*) FROM victim_alone) AS same_line_count,
	   NOT EXISTS (SELECT 1 FROM both_streams WHERE victim_line LIKE '{"role":%') AS no_foreign_lines;
SELECT attack.verdict('two exports in one query');
ALTER ROLE regress_evil_owner NOSUPERUSER;
TRUNCATE evil.loot;

-- 3. An export read part way (LIMIT) leaves its cursor open (on the
--    victim's big table); a later export in the same transaction runs the
--    owner's cast, which reads the rest of the victim's rows from it.
SET ROLE regress_admin;
BEGIN;
SELECT count(*) FROM (SELECT mandant.export_tenant_stream(:'victim') LIMIT 2) x;
SELECT count(*) AS cursors_left FROM pg_cursors;
SELECT count(*) > 0 AS exported FROM mandant.export_tenant_stream(:'evil');
COMMIT;
RESET ROLE;
SELECT count(*) FILTER (WHERE what = 'stolen') AS victim_rows_stolen FROM evil.loot;
SELECT attack.verdict('cursor left open');
TRUNCATE evil.loot;

-- 4. The owner's trigger (ENABLE ALWAYS, so replica mode fires it) runs
--    during an import: it tries another import, an export of the victim,
--    opening an import, writing the victim's rows, and catches its own
--    errors in subtransactions; the import finishes, its rows are the new
--    tenant's whatever tenant column the stream says, nothing leaks.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.nest() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	INSERT INTO evil.loot VALUES (current_user, 'trigger in mode ' || current_setting('session_replication_role'));
	BEGIN
		INSERT INTO mandant.tenant_import SELECT attack.header('a7733333-0000-4000-8000-00000000000d', 'attack-nested');
		INSERT INTO evil.loot VALUES (current_user, 'nested import: ' ||
			(SELECT count(*) FROM mandant.tenant WHERE slug = 'attack-nested') || ' tenants');
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (current_user, 'nested import: ' || SQLSTATE);
	END;
	BEGIN
		SELECT count(*) INTO n FROM mandant.export_tenant_stream('a7700000-0000-4000-8000-00000000000a');
		INSERT INTO evil.loot VALUES (current_user, 'nested export: ' || n || ' lines');
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (current_user, 'nested export: ' || SQLSTATE);
	END;
	BEGIN
		PERFORM mandant.op_tenant_import_open();
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (current_user, 'open: ' || SQLSTATE);
	END;
	BEGIN
		INSERT INTO victim_app.notes VALUES ('a7700000-0000-4000-8000-00000000000a', 99, 'evil');
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (current_user, 'victim write: ' || SQLSTATE);
	END;
	BEGIN
		RAISE EXCEPTION 'own error';
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO evil.loot VALUES (current_user, 'caught own error');
	END;
	RETURN NULL;
END
$$;
CREATE TRIGGER nest AFTER INSERT ON evil.t FOR EACH STATEMENT EXECUTE FUNCTION evil.nest();
ALTER TABLE evil.t ENABLE ALWAYS TRIGGER nest;
RESET ROLE;
SET ROLE regress_admin;
SELECT attack.import(ARRAY[attack.header(:'new', 'attack-new', '{evil.t}'),
	format('{"table":"evil.t","row":{"id":1,"mood":"busy","tenant_id":"%s"}}', :'victim'),
	'{"table":"evil.t","row":{"id":2}}'], true) AS nested;
RESET ROLE;
SELECT who, what FROM evil.loot;
SELECT tenant_id, id, mood FROM evil.t WHERE tenant_id <> :'evil' ORDER BY id;
SELECT current_setting('session_replication_role') AS replication_role, current_user;
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'new', 'attack-new') IS NOT NULL AS deleted;
RESET ROLE;
DROP TRIGGER nest ON evil.t;
SELECT attack.verdict('nested import');
TRUNCATE evil.loot;

-- 5. A failing import inside a savepoint leaves no replica mode, role or
--    import behind; two imports in one statement are refused.
SET ROLE regress_admin;
BEGIN;
SAVEPOINT a;
\set VERBOSITY sqlstate
INSERT INTO mandant.tenant_import SELECT attack.with_trailer(ARRAY[attack.header(:'new', 'attack-new', '{evil.t}'), '{"table":"evil.t","row":{"id":"x"}}']);
\set VERBOSITY default
ROLLBACK TO a;
SELECT current_setting('session_replication_role') AS replication_role, current_user, mandant.current_tenant();
SELECT attack.sqlstate_of(format('WITH a AS (INSERT INTO mandant.tenant_import VALUES (%L)) INSERT INTO mandant.tenant_import VALUES (%L)',
								 attack.header(:'new', 'attack-new'), attack.header(:'new', 'attack-new'))) AS two_in_one;
SELECT attack.import(ARRAY[attack.header(:'new', 'attack-new')]) AS afterwards;
COMMIT;
RESET ROLE;
SELECT attack.verdict('savepoints');

-- 6. Lines the importer's own parser reads (kind, table name, row): cut,
--    escaped, empty, doubled, huge, deep, after the trailer.  Each is
--    refused with 22P04 or a JSON error, never a crash.
SET ROLE regress_admin;
SELECT left(l, 60) AS line, attack.import(ARRAY[attack.header(:'new', 'attack-new', '{victim_app.notes}'), l]) AS import
FROM unnest(ARRAY[
	'{"a', '{"":}', '{"x"}', '{"}', '{"table":"', '{"table":"\', '{"table":"\"}', '{"table":"\\"}',
	'{"table":"victim_app.notes\",\"row\":}', '{"table":"victim_app.notes","row":',
	'{"table":"victim_app.notes","row":{}', '{"table":"victim_app.notes","row":{"id":1,"body":"x"}],[{"id":2}}',
	'{"table":"mandant.tenant","row":{}}', '{"table":"\u0076ictim_app.notes","row":{"id":1,"body":"x"}}',
	'{"table" :"victim_app.notes","row":{}}', '{"format":"mandant.tenant-stream"}', '{"ROLE":{}}', E'{"r\u00f4le":{}}',
	'{"role":{}}}', '{"auditEvent":null}', '{"' || repeat('a', 100000) || '":1}',
	'{"role":' || repeat('[', 100000) || repeat(']', 100000) || '}',
	'{"table":"victim_app.notes","row":{"id":1,"body":"' || repeat('x', 5000000) || '"}}']) l;
-- a row line without a row, and a row line with two rows
SELECT left(l, 60) AS line, attack.import(ARRAY[attack.header(:'new', 'attack-new', '{victim_app.notes}'), l]) AS import
FROM unnest(ARRAY['{"table":"victim_app.notes","row":}', '{"role":}',
				  '{"table":"victim_app.notes","row":{"id":1,"body":"x"},{"id":2,"body":"y"}}']) l;
-- trailers that count wrong, huge, negative or not at all; a line after the trailer
SELECT t, (SELECT attack.sqlstate_of(format('INSERT INTO mandant.tenant_import VALUES (%L), (%L)',
											 attack.header(:'new', 'attack-new'), t))) AS import
FROM unnest(ARRAY['{"end":{"lines":1}}', '{"end":{"lines":99999999999999999999999}}', '{"end":{"lines":-1}}',
				  '{"end":{"lines":"x"}}', '{"end":{}}', '{"end":null}']) t;
SELECT attack.sqlstate_of(format('INSERT INTO mandant.tenant_import SELECT l FROM (SELECT attack.with_trailer(ARRAY[%L]) UNION ALL SELECT %L) x (l)',
								 attack.header(:'new', 'attack-new'), '{"role":{}}')) AS after_trailer;
RESET ROLE;
SELECT attack.verdict('parser');

-- The same through COPY: a stream cut short.
SET ROLE regress_admin;
\set VERBOSITY sqlstate
COPY mandant.tenant_import FROM STDIN;
{"format":"mandant.tenant-stream","version":1,"tenant":{"id":"a7722222-0000-4000-8000-00000000000c","slug":"attack-new","name":"New","owner_email":"x@new.test","plan_key":"attack","status":"active","created_at":"2026-01-01T00:00:00+00:00","updated_at":"2026-01-01T00:00:00+00:00","created_by":"x"},"tables":[]}
{"role":{"name":"copied","scopes":["read"]}}
\.
\set VERBOSITY default
RESET ROLE;

-- 7. The header: a tenant that exists by slug or id, the platform's id
--    (whose audit trail a deletion of the "tenant" would erase), a
--    reserved slug, a mandant table, a bogus status.
SELECT count(*) AS platform_events FROM mandant.audit_event WHERE tenant_id = :'platform' \gset
SET ROLE regress_admin;
SELECT what, CASE WHEN attack.import(ARRAY[h]) = 'ok' THEN 'ACCEPTED' ELSE 'refused' END AS import
FROM (VALUES
	('existing slug', attack.header('a7733333-0000-4000-8000-00000000000d', 'attack-victim')),
	('existing id', attack.header(:'victim', 'attack-other')),
	('platform id', attack.header(:'platform', 'attack-zero')),
	('reserved slug', attack.header('a7733333-0000-4000-8000-00000000000d', 'www')),
	('mandant table', attack.header('a7733333-0000-4000-8000-00000000000d', 'attack-x', '{mandant.tenant}')),
	('bogus status', attack.header('a7733333-0000-4000-8000-00000000000d', 'attack-x', '{}', '{"status":"bogus"}'))) v (what, h);
-- had it been accepted: the platform's trail erased by deleting the "tenant"
SELECT attack.import(ARRAY[attack.header(:'platform', 'attack-zero')], true) = 'ok' AS imported_platform_id \gset
SELECT attack.sqlstate_of(format('SELECT mandant.delete_tenant(%L, %L)', :'platform', 'attack-zero')) AS delete_it
WHERE :'imported_platform_id';
RESET ROLE;
SELECT count(*) >= :platform_events AS platform_trail_kept FROM mandant.audit_event WHERE tenant_id = :'platform';
SELECT attack.verdict('header');

-- 8. Records of the new tenant that name the victim's or break rules
--    that mandant's own functions keep: the victim's audit events and
--    seals (their ids collide), a tenant role named like a system role,
--    a negative usage.
SELECT string_agg(format('{"auditEvent":%s}', to_jsonb(e)::text), E'\n' ORDER BY e.id) AS victim_events
FROM mandant.audit_event e WHERE e.tenant_id = :'victim' \gset
SET ROLE regress_admin;
SELECT what, CASE WHEN attack.import(ARRAY[attack.header(:'new', 'attack-new')] || string_to_array(l, E'\n')) = 'ok'
				  THEN 'ACCEPTED' ELSE 'refused' END AS import
FROM (VALUES
	('victim events', :'victim_events'),
	('victim seal', format('{"auditSeal":{"seq":1,"event_id":1,"chain":"\\x00","tenant_id":"%s"}}', :'victim')),
	('system role name', '{"role":{"name":"owner","scopes":["read"]}}'),
	('negative usage', '{"charged":{"resource":"storage_bytes","used":-1000000}}')) v (what, l);
RESET ROLE;
SELECT attack.verdict('records');

-- 9. An audit event id at the top of bigint: the import is refused (the
--    hash is wrong), but the shared audit sequence must not have moved
--    there, or every tenant's audited writes fail from now on.
SELECT last_value AS sequence_before FROM mandant.audit_event_id_seq \gset
CREATE TEMP TABLE huge_event AS SELECT * FROM mandant.audit_event WHERE false;
INSERT INTO huge_event (id, tenant_id, occurred_at, txid, category, action, entity_type, entity_id, hash)
VALUES (9223372036854775807, :'new', now(), 1, 'app', 'x', 'x', '1', '\x00');
SELECT format('{"auditEvent":%s}', (to_jsonb(e) - 'tenant_id')::text) AS huge_line FROM huge_event e \gset
SET ROLE regress_admin;
SELECT attack.import(ARRAY[attack.header(:'new', 'attack-new'), :'huge_line']) AS huge_id;
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT count(*) AS entered FROM (SELECT mandant.set_tenant(:'victim')) x;
SELECT attack.sqlstate_of('INSERT INTO victim_app.notes (id, body) VALUES (3, ''third'')') AS victim_audited_write;
ROLLBACK;
RESET ROLE;
SELECT setval('mandant.audit_event_id_seq', :sequence_before) = :sequence_before AS sequence_restored;
SELECT attack.verdict('audit sequence');

-- 10. Exports read in pieces: a cursor fetched and closed, rolled back,
--     held over the commit, read-only, stopped early; no warnings, no
--     cursor left behind, no crash.
SET ROLE regress_admin;
BEGIN;
DECLARE c CURSOR FOR SELECT mandant.export_tenant_stream(:'victim');
MOVE 2 IN c;
CLOSE c;
DECLARE d CURSOR FOR SELECT mandant.export_tenant_stream(:'victim');
MOVE 1 IN d;
COMMIT;
BEGIN;
DECLARE e CURSOR FOR SELECT mandant.export_tenant_stream(:'victim');
MOVE 1 IN e;
ROLLBACK;
BEGIN READ ONLY;
SELECT count(*) = (SELECT count(*) FROM victim_alone) AS whole FROM mandant.export_tenant_stream(:'victim');
COMMIT;
BEGIN;
SELECT count(*) FROM (SELECT mandant.export_tenant_stream(:'victim') LIMIT 1) x;
SELECT count(*) AS cursors_left FROM pg_cursors;
COMMIT;
SELECT count(*) > 0 AS all_tenants FROM (SELECT mandant.export_tenant_stream(id) FROM mandant.tenant) x;
\set VERBOSITY sqlstate
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT mandant.export_tenant_stream(:'victim');
MOVE 1 IN h;
COMMIT;
\set VERBOSITY default
SELECT attack.sqlstate_of('CLOSE h') AS held_cursor_closed;
SELECT count(*) AS cursors_left FROM pg_cursors;
RESET ROLE;
SELECT attack.verdict('cursors');

\c contrib_regression
DROP DATABASE regress_mandant_attack_stream;
