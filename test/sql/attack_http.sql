-- Attacks on the HTTP gateway (mandant.http_call and mandant.http_route),
-- as the roles that would try: a LOGIN-only role, the gateway's role, a
-- table and function owner who registers routes, a tenant user with a
-- token.  Each attack ends with attack.verdict(): the victim's records
-- untouched and nobody a superuser.
\set SHOW_CONTEXT never
\set attack_db regress_mandant_attack_http
\i test/fixtures/attack.sql
SET client_min_messages = warning;
SET mandant.http_base_domain = 'example.test';
SELECT current_user AS superuser \gset

-- The victim's application routes, the platform's login, and a user of
-- the attacker's tenant.
SET ROLE regress_app_owner;
CREATE FUNCTION victim_app.note_list() RETURNS SETOF victim_app.notes
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT * FROM victim_app.notes ORDER BY id $$;
CREATE FUNCTION victim_app.note_get(note_id integer) RETURNS victim_app.notes
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT * FROM victim_app.notes WHERE id = note_id $$;
CREATE FUNCTION victim_app.note_add(id integer, body text) RETURNS victim_app.notes
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	INSERT INTO victim_app.notes (id, body) VALUES (id, body) RETURNING *
$$;
SELECT mandant.http_route('GET', '/v1/notes', 'victim_app.note_list()', 'read');
SELECT mandant.http_route('GET', '/v1/notes/{noteId}', 'victim_app.note_get(integer)', 'read');
SELECT mandant.http_route('POST', '/v1/notes', 'victim_app.note_add(integer,text)', 'write');
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.http_route('POST', '/v1/auth/login', 'mandant.login(text,text,text,inet,text)', public => true);
RESET ROLE;
SET ROLE regress_service;
SELECT mandant.create_user('boss@evil.test', 'the evil boss''s password', 'Evil Boss') IS NOT NULL AS evil_user;
RESET ROLE;
SELECT mandant.login('boss@evil.test', 'the evil boss''s password') ->> 'accessToken' AS evil_token \gset

-- req(method, path, body, token, tenant, host): status and error code.
CREATE FUNCTION attack.req(method text, path text, body text DEFAULT NULL, token text DEFAULT NULL,
						   tenant text DEFAULT NULL, host text DEFAULT NULL, query text DEFAULT NULL)
RETURNS TABLE (status integer, code text, data jsonb)
LANGUAGE sql AS $$
	SELECT c.status, c.body::jsonb #>> '{error,code}', c.body::jsonb -> 'data'
	FROM mandant.http_call(jsonb_strip_nulls(jsonb_build_object('method', method, 'path', path,
		'token', token, 'tenant', tenant, 'host', host, 'query', query)), body) c
$$;
GRANT EXECUTE ON FUNCTION attack.req(text, text, text, text, text, text, text) TO PUBLIC;

-- 1. A function owner takes over another role's route (the login, to
--    read passwords): refused; the login still answers.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.phish(email text, password text) RETURNS text
LANGUAGE sql AS $$ SELECT 'got ' || email || ':' || password $$;
SELECT mandant.http_route('POST', '/v1/auth/login', 'evil.phish(text,text)', public => true);
-- nor by replacing the victim's route of the same method and path
SELECT mandant.http_route('GET', '/v1/notes', 'evil.phish(text,text)', public => true);
RESET ROLE;
SET ROLE regress_gateway;
SELECT status, code FROM attack.req('POST', '/v1/auth/login', '{"email":"boss@victim.test","password":"guess"}',
									host => 'attack-victim.example.test');
RESET ROLE;
SELECT attack.verdict('route takeover');

-- 2. A function owner shadows the victim's {noteId} route with a literal
--    path, to receive the victim's requests: refused.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.shadow() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('app.current_tenant') $$;
SELECT mandant.http_route('GET', '/v1/notes/1', 'evil.shadow()', 'read');
SELECT mandant.http_route('GET', '/v1/{x}/1', 'evil.phish(text,text)', 'read');
-- a path of its own is fine
SELECT mandant.http_route('GET', '/evil/shadow', 'evil.shadow()', 'read');
RESET ROLE;
SET ROLE regress_gateway;
SELECT status, data ->> 'id' AS note FROM attack.req('GET', '/v1/notes/1', token => :'victim_token');
RESET ROLE;
SELECT attack.verdict('route shadowing');

-- 3. A function that takes the request's credentials (the bearer token,
--    the refresh cookie) may be routed by mandant_admin only.
SET ROLE regress_evil_owner;
CREATE TABLE evil.loot (v text);
CREATE FUNCTION evil.grab(access_token text, refresh_token text DEFAULT NULL) RETURNS void
LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO evil.loot VALUES (access_token), (refresh_token) $$;
SELECT mandant.http_route('GET', '/evil/grab', 'evil.grab(text,text)', 'read');
RESET ROLE;
SELECT count(*) AS loot FROM evil.loot;
SELECT attack.verdict('credential capture');

-- 4. A route's function changes the gateway's session (search_path ahead
--    of pg_catalog, the base domain, the role): undone when it returns.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.poison() RETURNS text LANGUAGE sql AS $$
	SELECT set_config('search_path', 'evil, pg_catalog', false) || set_config('mandant.http_base_domain', 'nowhere.test', false)
		|| set_config('statement_timeout', '0', false) || set_config('role', 'mandant_gateway', false)
$$;
SELECT mandant.http_route('GET', '/evil/poison', 'evil.poison()', public => true);
RESET ROLE;
SET ROLE regress_gateway;
SET statement_timeout = '50s';
SELECT status, code FROM attack.req('GET', '/evil/poison');
SELECT current_setting('search_path') AS search_path, current_setting('mandant.http_base_domain') AS base_domain,
	   current_setting('statement_timeout') AS statement_timeout, current_user;
RESET statement_timeout;
RESET ROLE;
SELECT attack.verdict('session settings');

-- 5. A route's function creates a temporary table, which unqualified
--    names in later requests of the same session would find first: the
--    call fails (500) and leaves nothing.  A new session, so that it has
--    no temporary schema yet.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.tmp() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE notes (tenant_id uuid, id integer, body text);
	RETURN 1;
END
$$;
SELECT mandant.http_route('GET', '/evil/tmp', 'evil.tmp()', public => true);
RESET ROLE;
\c :attack_db regress_gateway
SELECT status, code FROM attack.req('GET', '/evil/tmp');
SELECT pg_my_temp_schema() = 0 AS no_temp_schema;
\c :attack_db :superuser
SET client_min_messages = warning;
SET mandant.http_base_domain = 'example.test';
SELECT attack.verdict('temporary objects');

-- 6. Functions the dispatcher cannot call are refused at registration:
--    a procedure, RETURNS record and SETOF record without columns, an
--    aggregate.
SET ROLE regress_evil_owner;
CREATE PROCEDURE evil.proc(a integer) LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION evil.rec(a integer) RETURNS record LANGUAGE sql AS $$ SELECT 1, 2 $$;
CREATE FUNCTION evil.srec(a integer) RETURNS SETOF record LANGUAGE sql AS $$ SELECT 1, 2 $$;
CREATE AGGREGATE evil.agg(integer) (sfunc = int4pl, stype = integer);
CREATE FUNCTION evil.outs(a integer, OUT b integer, INOUT c integer) LANGUAGE sql AS $$ SELECT a, c $$;
CREATE FUNCTION evil.tab(a integer) RETURNS TABLE (x integer, y text) LANGUAGE sql AS $$ SELECT a, 'y' $$;
SELECT r, attack.sqlstate_of(format('SELECT mandant.http_route(''POST'', %L, %L, public => true)', '/evil/' || r, f))
FROM (VALUES ('proc', 'evil.proc(integer)'), ('rec', 'evil.rec(integer)'), ('srec', 'evil.srec(integer)'),
			 ('agg', 'evil.agg(integer)'), ('outs', 'evil.outs(integer,integer)'), ('tab', 'evil.tab(integer)')) v (r, f);
RESET ROLE;
SET ROLE regress_gateway;
SELECT status, data FROM attack.req('POST', '/evil/outs', '{"a":1,"c":3}');
SELECT status, data FROM attack.req('POST', '/evil/tab', '{"a":1}');
RESET ROLE;
SELECT attack.verdict('unservable functions');

-- 7. Argument types: int2vector and oidvector look like arrays but are
--    read from text (a JSON array is a 400, not a 500); composite, range,
--    enum, domain and arrays of composites take their text forms.
SET ROLE regress_evil_owner;
CREATE TYPE evil.pair AS (a integer, b text);
CREATE TYPE evil.mood AS ENUM ('sad', 'happy');
CREATE DOMAIN evil.small AS integer CHECK (VALUE < 10);
CREATE FUNCTION evil.types(v int2vector DEFAULT NULL, o oidvector DEFAULT NULL, p evil.pair DEFAULT NULL,
						   r int4range DEFAULT NULL, m evil.mood DEFAULT NULL, s evil.small DEFAULT NULL,
						   ps evil.pair[] DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$ SELECT concat_ws(' ', v, o, p, r, m, s, ps) $$;
SELECT mandant.http_route('POST', '/evil/types', 'evil.types(int2vector,oidvector,evil.pair,int4range,evil.mood,evil.small,evil.pair[])', public => true);
RESET ROLE;
SET ROLE regress_gateway;
SELECT b, status, code, data
FROM unnest(ARRAY['{"v":[1,null,3]}', '{"o":[1,2]}', '{"v":"1 2 3","o":"26 27"}', '{"p":"(1,x)","r":"[1,5)","m":"happy","s":3}',
				  '{"p":{"a":1}}', '{"m":"angry"}', '{"s":10}', '{"s":"3"}', '{"ps":["(1,a)","(2,b)"]}', '{"ps":[{"a":1}]}',
				  '{"r":"[5,1)"}']) b,
	 attack.req('POST', '/evil/types', b);
RESET ROLE;
SELECT attack.verdict('argument types');

-- 8. Request and trace ids with control characters, non-ASCII or too long
--    are answered (a new request id, no trace id), not raised; the log
--    gets no forged line.
SET ROLE regress_gateway;
SELECT c.status, c.body::jsonb #>> '{meta,requestId}' ~ '^[0-9a-f-]{36}$' AS new_id
FROM unnest(ARRAY[E'a\nLOG:  forged', repeat('x', 1000), 'ok-id']) id,
	 mandant.http_call(jsonb_build_object('method', 'GET', 'path', '/none', 'requestId', id)) c;
SELECT c.status FROM mandant.http_call(jsonb_build_object('method', 'GET', 'path', '/none', 'traceId', E'\u00e9\t')) c;
RESET ROLE;

-- 9. Tenants: the attacker's token for the victim's tenant, by X-Tenant
--    or by Host (upper case, a port, a trailing dot, IPv6, a deeper name).
SET ROLE regress_gateway;
SELECT t, h, status, code, jsonb_array_length(data) AS notes
FROM (VALUES ('attack-victim', NULL), (:'victim', NULL), ('ATTACK-VICTIM', NULL), (NULL, 'attack-victim.example.test'),
			 (NULL, 'ATTACK-VICTIM.EXAMPLE.TEST:8888'), (NULL, 'attack-victim.example.test.'),
			 (NULL, '[::1]:8888'), (NULL, 'x.attack-victim.example.test'), (NULL, 'example.test')) v (t, h),
	 attack.req('GET', '/v1/notes', token => :'evil_token', tenant => t, host => h);
-- the victim's token works; with the attacker's tenant named it does not
SELECT status, jsonb_array_length(data) AS notes FROM attack.req('GET', '/v1/notes', token => :'victim_token');
SELECT status, code FROM attack.req('GET', '/v1/notes', token => :'victim_token', tenant => 'attack-evil');
-- a token of neither kind, a token in the body, a tenant in the body
SELECT status, code FROM attack.req('GET', '/v1/notes', token => 'garbage');
SELECT status, code FROM attack.req('POST', '/v1/notes', '{"id":9,"body":"x","tenantId":"a7700000-0000-4000-8000-00000000000a"}',
									token => :'evil_token');
SELECT status, code FROM attack.req('POST', '/v1/notes', '{"id":9,"body":"x","accessToken":"x"}', token => :'evil_token');
RESET ROLE;
SELECT attack.verdict('tenant spoofing');

-- 10. Functions that are not routed, or are mandant's internals: not
--     reachable, not routable; a LOGIN-only role may not call http_call.
SET ROLE regress_evil_owner;
SELECT attack.sqlstate_of('SELECT mandant.http_route(''GET'', ''/evil/i'', ''mandant.http_route_grants()'', public => true)') AS internal,
	   attack.sqlstate_of('SELECT mandant.http_route(''GET'', ''/evil/c'', ''pg_catalog.pg_reload_conf()'', public => true)') AS catalog,
	   attack.sqlstate_of('SELECT mandant.http_route(''GET'', ''/evil/v'', ''victim_app.note_list()'', public => true)') AS others;
RESET ROLE;
SET ROLE regress_attacker;
SELECT attack.sqlstate_of('SELECT mandant.http_call(''{"method":"GET","path":"/v1/notes"}'')') AS login_only;
RESET ROLE;
SELECT has_function_privilege('mandant_gateway', 'victim_app.note_add(integer,text)', 'EXECUTE') AS routed,
	   has_function_privilege('mandant_gateway', 'mandant.http_route_grants()', 'EXECUTE') AS internal,
	   has_schema_privilege('mandant_gateway', 'victim_app', 'CREATE') AS schema_create;

-- 11. A route's function that calls http_call again, sets the tenant,
--     or writes app.current_tenant: refused inside, answered outside.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.nest() RETURNS integer LANGUAGE sql AS $$
	SELECT status FROM mandant.http_call('{"method":"GET","path":"/v1/notes"}')
$$;
CREATE FUNCTION evil.enter() RETURNS text LANGUAGE sql AS $$
	SELECT mandant.set_tenant('a7700000-0000-4000-8000-00000000000a')::text
$$;
CREATE FUNCTION evil.setconfig() RETURNS text LANGUAGE sql AS $$
	SELECT set_config('app.current_tenant', 'a7700000-0000-4000-8000-00000000000a', true)
$$;
SELECT mandant.http_route('GET', '/evil/nest', 'evil.nest()', public => true);
SELECT mandant.http_route('GET', '/evil/enter', 'evil.enter()', 'read');
SELECT mandant.http_route('GET', '/evil/setconfig', 'evil.setconfig()', 'read');
RESET ROLE;
SET ROLE regress_gateway;
SELECT p, status, code FROM unnest(ARRAY['/evil/nest', '/evil/enter', '/evil/setconfig']) p,
	 attack.req('GET', p, token => :'evil_token');
RESET ROLE;
SELECT attack.verdict('context from a route');

-- 12. A statement timeout while a write is under way: 503, nothing kept,
--     and the next request is served.
SET ROLE regress_app_owner;
CREATE FUNCTION victim_app.slow_add(id integer) RETURNS victim_app.notes
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	INSERT INTO victim_app.notes (id, body) VALUES (id, 'slow') RETURNING *;
	SELECT n FROM victim_app.notes n, pg_sleep(5) WHERE n.id = slow_add.id
$$;
SELECT mandant.http_route('POST', '/v1/slow', 'victim_app.slow_add(integer)', 'write');
RESET ROLE;
SET ROLE regress_gateway;
SET statement_timeout = '200ms';
SELECT status, code FROM attack.req('POST', '/v1/slow', '{"id":7}', token => :'victim_token');
RESET statement_timeout;
SELECT status, jsonb_array_length(data) AS notes FROM attack.req('GET', '/v1/notes', token => :'victim_token');
RESET ROLE;
SELECT attack.verdict('statement timeout');

-- 13. A routed function dropped, or replaced by one of another shape:
--     500 (logged), never a crash; the route is served again once it is
--     registered anew.
SET ROLE regress_evil_owner;
CREATE FUNCTION evil.gone(a integer) RETURNS integer LANGUAGE sql AS $$ SELECT a $$;
SELECT mandant.http_route('POST', '/evil/gone', 'evil.gone(integer)', public => true);
DROP FUNCTION evil.gone(integer);
CREATE FUNCTION evil.gone(a text) RETURNS text LANGUAGE sql AS $$ SELECT a $$;
RESET ROLE;
SET ROLE regress_gateway;
SELECT status, code FROM attack.req('POST', '/evil/gone', '{"a":"1"}');
RESET ROLE;
SET ROLE regress_evil_owner;
SELECT mandant.http_route('POST', '/evil/gone', 'evil.gone(text)', public => true);
CREATE OR REPLACE FUNCTION evil.gone(a text) RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT upper(a) $$;
RESET ROLE;
SET ROLE regress_gateway;
SELECT status, data FROM attack.req('POST', '/evil/gone', '{"a":"x"}');
RESET ROLE;

-- 14. Bodies and query strings: deep, huge, many keys, odd encodings.
SET ROLE regress_gateway;
SELECT what, r.status, r.code
FROM (VALUES
	('deep body', 'POST', '/v1/notes', repeat('{"a":', 100000) || '1' || repeat('}', 100000), NULL),
	('10 MB body', 'POST', '/v1/notes', '{"id":1,"body":"' || repeat('x', 10000000) || '"}', NULL),
	('100k keys', 'POST', '/v1/notes', '{' || (SELECT string_agg(format('"k%s":%s', i, i), ',') FROM generate_series(1, 100000) i) || '}', NULL),
	('huge query', 'GET', '/v1/notes', NULL, repeat('a=1&', 100000)),
	('%00 in query', 'GET', '/v1/notes', NULL, 'a=%00'),
	('%00 in path', 'GET', '/v1/notes/%00', NULL, NULL),
	('overlong utf-8', 'GET', '/v1/notes/%C0%AF', NULL, NULL),
	('%2F in path', 'GET', '/v1/notes%2F1', NULL, NULL),
	('truncated %', 'GET', '/v1/notes/1%4', NULL, NULL),
	('not json', 'POST', '/v1/notes', 'id=1&body=x', NULL),
	('dot segments', 'GET', '/v1/notes/../notes/1', NULL, NULL),
	('lower-case method', 'get', '/v1/notes', NULL, NULL),
	('TRACE', 'TRACE', '/v1/notes', NULL, NULL),
	('relative path', 'GET', 'v1/notes', NULL, NULL)) v (what, method, path, body, query),
	attack.req(method, path, body, :'victim_token', query => query) r;
RESET ROLE;
SELECT attack.verdict('bodies and encodings');

\c contrib_regression
DROP DATABASE regress_mandant_attack_http;
