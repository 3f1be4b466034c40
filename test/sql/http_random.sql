-- Randomized requests to mandant.http_call(): with a fixed seed, a few
-- thousand requests (odd methods, mutated paths, query strings with odd
-- encodings, spoofed hosts and tenants, valid, foreign and garbage tokens,
-- JSON bodies built to hit every argument type, and non-JSON bodies)
-- against routes that cover each class of argument type.  No request may
-- answer 500, and no error may escape http_call.  A database of its own.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_mandant_http_random WITH (FORCE);
CREATE DATABASE regress_mandant_http_random;
\c regress_mandant_http_random
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- The routes: scalars, arrays, JSON, composite/range/enum/domain/vector,
-- a paginated list, a void delete, a public route with the gateway's own
-- arguments.
CREATE SCHEMA app AUTHORIZATION regress_owner;
SET ROLE regress_owner;
CREATE TYPE app.pair AS (a integer, b text);
CREATE TYPE app.mood AS ENUM ('sad', 'happy');
CREATE DOMAIN app.small AS integer CHECK (VALUE < 10);
CREATE TABLE app.item (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), n integer,
					   PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('app.item');
CREATE FUNCTION app.scalars(id integer, n numeric DEFAULT NULL, b boolean DEFAULT NULL, t text DEFAULT NULL,
							ts timestamptz DEFAULT NULL, u uuid DEFAULT NULL, d date DEFAULT NULL,
							big_number bigint DEFAULT NULL, f8 double precision DEFAULT NULL, small_int smallint DEFAULT NULL)
RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT concat_ws(' ', id, n, b, length(t), ts, u, d, big_number, f8, small_int)
$$;
CREATE FUNCTION app.arrays(int_list integer[] DEFAULT NULL, text_list text[] DEFAULT NULL, uuid_list uuid[] DEFAULT NULL,
						   bool_list boolean[] DEFAULT NULL)
RETURNS TABLE (ints integer, texts integer, uuids integer, bools integer)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT cardinality(int_list), cardinality(text_list), cardinality(uuid_list), cardinality(bool_list)
$$;
CREATE FUNCTION app.json(doc jsonb DEFAULT NULL, raw json DEFAULT NULL) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT jsonb_build_object('doc', jsonb_typeof(doc), 'raw', json_typeof(raw))
$$;
CREATE FUNCTION app.special(p app.pair DEFAULT NULL, r int4range DEFAULT NULL, m app.mood DEFAULT NULL,
							s app.small DEFAULT NULL, v int2vector DEFAULT NULL, ps app.pair[] DEFAULT NULL,
							iv interval DEFAULT NULL, ip inet DEFAULT NULL, raw_bytes bytea DEFAULT NULL)
RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT concat_ws(' ', p, r, m, s, v, cardinality(ps), iv, ip, length(raw_bytes))
$$;
CREATE FUNCTION app.item_list(min_n integer DEFAULT NULL) RETURNS SETOF app.item
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT * FROM app.item WHERE min_n IS NULL OR n >= min_n ORDER BY n, id
$$;
CREATE FUNCTION app.item_add(n integer) RETURNS app.item
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	INSERT INTO app.item (n) VALUES (n) RETURNING *
$$;
CREATE FUNCTION app.item_delete(item_id uuid) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$ DELETE FROM app.item WHERE id = item_id $$;
CREATE FUNCTION app.hello(name text, client_ip inet DEFAULT NULL, tenant_slug text DEFAULT NULL) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT concat_ws(' ', name, client_ip, tenant_slug) $$;
SELECT mandant.http_route('POST', '/r/scalars/{id}', 'app.scalars(integer,numeric,boolean,text,timestamptz,uuid,date,bigint,double precision,smallint)', 'read');
SELECT mandant.http_route('PUT', '/r/arrays', 'app.arrays(integer[],text[],uuid[],boolean[])', 'write');
SELECT mandant.http_route('PATCH', '/r/json', 'app.json(jsonb,json)', 'write');
SELECT mandant.http_route('POST', '/r/special', 'app.special(app.pair,int4range,app.mood,app.small,int2vector,app.pair[],interval,inet,bytea)', 'read');
SELECT mandant.http_route('GET', '/r/items', 'app.item_list(integer)', 'read', paginated => true);
SELECT mandant.http_route('POST', '/r/items', 'app.item_add(integer)', 'write');
SELECT mandant.http_route('DELETE', '/r/items/{itemId}', 'app.item_delete(uuid)', 'delete');
SELECT mandant.http_route('GET', '/r/hello/{name}', 'app.hello(text,inet,text)', public => true);
RESET ROLE;

-- Two tenants, an owner each, a viewer; their tokens.
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	('a4000000-0000-4000-8000-00000000000a', 'acme', 'Acme', 'tara@acme.test', 'pro'),
	('b4000000-0000-4000-8000-00000000000b', 'beta', 'Beta', 'bob@beta.test', 'pro');
SET ROLE regress_service;
SELECT mandant.create_user('tara@acme.test', 'taras long password', 'Tara') IS NOT NULL AS tara;
SELECT mandant.create_user('bob@beta.test', 'bobs long password', 'Bob') IS NOT NULL AS bob;
SELECT mandant.create_user('vic@acme.test', 'vics long password', 'Vic') AS vic \gset
BEGIN;
SELECT mandant.set_tenant('a4000000-0000-4000-8000-00000000000a');
SELECT mandant.add_member('a4000000-0000-4000-8000-00000000000a', :'vic', 'viewer');
COMMIT;
RESET ROLE;
CREATE SCHEMA rnd;
GRANT USAGE ON SCHEMA rnd TO PUBLIC;
CREATE TABLE rnd.token AS
SELECT t.kind, mandant.login(t.email, t.password) ->> 'accessToken' AS token
FROM (VALUES ('tara', 'tara@acme.test', 'taras long password'), ('bob', 'bob@beta.test', 'bobs long password'),
			 ('vic', 'vic@acme.test', 'vics long password')) t (kind, email, password);
GRANT SELECT ON rnd.token TO PUBLIC;

-- pick(a): one element of a, at random.
CREATE FUNCTION rnd.pick(a text[]) RETURNS text LANGUAGE sql AS $$
	SELECT a[1 + floor(random() * cardinality(a))::integer]
$$;
-- scalar(): a random JSON scalar, as JSON text.
CREATE FUNCTION rnd.scalar() RETURNS text LANGUAGE sql AS $$
	SELECT rnd.pick(ARRAY['0', '1', '-1', '7', '9', '10', '2147483648', '-9223372036854775809', '1.5', '1e400', '-0', '3e-5',
						  'true', 'false', 'null', '""', '"x"', '"3"', '"true"', '"2026-02-30"', '"2026-01-01T10:00:00+02"',
						  '"a3000000-0000-4000-8000-00000000000a"', '"not-a-uuid"', '"(1,x)"', '"(1,2,3)"', '"[1,5)"', '"[5,1)"',
						  '"happy"', '"angry"', '"1 2 3"', '"1 x"', '"1 day"', '"10.0.0.1"', '"::1"', '"999.1.1.1"', '"\\\\x00ff"',
						  '"\\\\xzz"', '"{1,2}"', '"{{1},{2}}"', '"\\u00e9\\u20ac"', '"\\u0000"', '"a\\nb"',
						  '"' || repeat('y', (random() * 3000)::integer) || '"', '"%00"', '"infinity"', '"NaN"', '"-infinity"'])
$$;
-- value(depth): a random JSON value: a scalar, an array or an object.
CREATE FUNCTION rnd.value(depth integer DEFAULT 0) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r double precision := random();
BEGIN
	IF depth > 2 OR r < 0.6 THEN
		RETURN rnd.scalar();
	ELSIF r < 0.85 THEN
		RETURN '[' || COALESCE((SELECT string_agg(rnd.value(depth + 1), ',') FROM generate_series(1, (random() * 4)::integer)), '') || ']';
	ELSE
		RETURN '{' || COALESCE((SELECT string_agg(format('"%s":%s', rnd.key(), rnd.value(depth + 1)), ',')
								FROM generate_series(1, (random() * 3)::integer)), '') || '}';
	END IF;
END
$$;
-- key(): a random argument name (camelCase, snake_case), a paging or
-- gateway key, or junk.
CREATE FUNCTION rnd.key() RETURNS text LANGUAGE sql AS $$
	SELECT rnd.pick(ARRAY['id', 'n', 'b', 't', 'ts', 'u', 'd', 'bigNumber', 'big_number', 'f8', 'smallInt', 'intList', 'textList',
						  'uuidList', 'boolList', 'doc', 'raw', 'p', 'r', 'm', 's', 'v', 'ps', 'iv', 'ip', 'rawBytes', 'minN',
						  'itemId', 'name', 'clientIp', 'tenantSlug', 'tenant_id', 'page', 'pageSize', 'accessToken', '', 'x y', '%41', 'ü'])
$$;
-- encoded(): a random query-string or path text, with odd encodings.
CREATE FUNCTION rnd.encoded() RETURNS text LANGUAGE sql AS $$
	SELECT rnd.pick(ARRAY['1', '0', '-5', '2147483648', '99999999999999999999', 'abc', '', '%', '%4', '%zz', '%00', '%2F', '%C0%AF',
						  '%E2%82%AC', '%ff', 'a+b', '+', '%20', 'true', 'a3000000-0000-4000-8000-00000000000a', '1%2C2', '{1,2}',
						  '(1%2Cx)', '[1%2C5)', 'happy', '1 2', '%0A', '..', '.', repeat('z', 500)])
$$;
-- request(n): one random request (method, path, query, headers) and body.
CREATE FUNCTION rnd.request(n integer, OUT request jsonb, OUT body text) LANGUAGE plpgsql AS $$
DECLARE
	routes text[] := ARRAY['POST /r/scalars/{id} n b t ts u d bigNumber f8 smallInt', 'PUT /r/arrays intList textList uuidList boolList',
						   'PATCH /r/json doc raw', 'POST /r/special p r m s v ps iv ip rawBytes', 'GET /r/items minN',
						   'POST /r/items n', 'DELETE /r/items/{itemId}', 'GET /r/hello/{name}', 'GET /r/nothing'];
	route text[] := string_to_array(rnd.pick(routes), ' ');
	path text := route[2];
	keys text[] := route[3:];
	r double precision := random();
	query text;
BEGIN
	-- the path: parameters filled, sometimes mutated
	path := regexp_replace(path, '\{[A-Za-z]+\}',
						   CASE WHEN random() < 0.5 THEN rnd.pick(ARRAY['1', '7', 'a3000000-0000-4000-8000-00000000000a', 'x'])
								ELSE rnd.encoded() END);
	IF r < 0.05 THEN
		path := path || '/';
	ELSIF r < 0.10 THEN
		path := path || '/' || rnd.encoded();
	ELSIF r < 0.13 THEN
		path := replace(path, '/', '//');
	ELSIF r < 0.16 THEN
		path := upper(path);
	ELSIF r < 0.18 THEN
		path := substr(path, 2);
	ELSIF r < 0.20 THEN
		path := rnd.pick(ARRAY['', '/', '?', '/%', '/' || repeat('a/', 300), '/r/../r/items', '\r\items']);
	END IF;
	-- the query string
	IF random() < 0.5 THEN
		SELECT string_agg(CASE WHEN random() < 0.1 THEN rnd.encoded()
							   ELSE CASE WHEN random() < 0.5 AND keys <> '{}' THEN rnd.pick(keys) ELSE rnd.key() END || '=' || CASE WHEN random() < 0.3 THEN rnd.pick(ARRAY['1', '2', '100', '101', '0', '-1', '2147483648'])
															  ELSE rnd.encoded() END END,
						  rnd.pick(ARRAY['&', '&', '&', '&&', ';']))
		INTO query FROM generate_series(1, 1 + (random() * 4)::integer);
	END IF;
	request := jsonb_strip_nulls(jsonb_build_object(
		'method', CASE WHEN random() < 0.8 THEN route[1]
					   ELSE rnd.pick(ARRAY['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'get', 'TRACE', '', 'P OST']) END,
		'path', path,
		'query', query,
		'host', rnd.pick(ARRAY[NULL, NULL, NULL, 'acme.example.test', 'acme.example.test', 'beta.example.test', 'ACME.Example.Test:8888', 'nope.example.test',
							   '[::1]:8888', '', 'example.test', 'acme.example.test.', 'a.b.acme.example.test', 'localhost:8888']),
		'tenant', rnd.pick(ARRAY[NULL, NULL, NULL, NULL, NULL, NULL, 'acme', 'beta', 'a4000000-0000-4000-8000-00000000000a', 'ACME', 'nope', '%41cme', '']),
		'token', CASE WHEN random() < 0.85 THEN (SELECT t.token FROM rnd.token t ORDER BY random() LIMIT 1)
					  ELSE rnd.pick(ARRAY[NULL, 'garbage', 'a.b.c', '', 'Bearer x', (SELECT t.token || 'x' FROM rnd.token t LIMIT 1)]) END,
		'cookie', rnd.pick(ARRAY[NULL, '', 'mandant_refresh=', 'mandant_refresh=abc; mandant_refresh=def', ';;;', 'a=b; c']),
		'requestId', rnd.pick(ARRAY[NULL, 'req-1', '', E'a\nb', repeat('r', 300), E'\u00e9']),
		'traceId', rnd.pick(ARRAY[NULL, 'trace-1', E'\t', repeat('t', 300)]),
		'clientIp', rnd.pick(ARRAY[NULL, '192.0.2.7', '::1', 'garbage', '999.0.0.1', ''])));
	-- the body
	r := random();
	IF r < 0.15 THEN
		body := NULL;
	ELSIF r < 0.20 THEN
		body := rnd.pick(ARRAY['', ' ', 'id=1', '{', '[]', '"x"', '1', 'null', '{"a":1,}', E'{"a":"\\ud800"}', '{"a":1}{"b":2}']);
	ELSE
		SELECT '{' || COALESCE(string_agg(format('"%s":%s', CASE WHEN random() < 0.8 AND keys <> '{}' THEN rnd.pick(keys)
																 ELSE rnd.key() END, rnd.value()), ','), '') || '}'
		INTO body FROM generate_series(1, (random() * 4)::integer);
	END IF;
END
$$;

-- The requests, drawn with a fixed seed; each is sent as a statement of
-- its own (http_call refuses transaction blocks and savepoints), its
-- answer recorded by rnd.answered().  A request without an answer is an
-- error that escaped http_call (psql prints it, too).
CREATE TABLE rnd.request AS
SELECT 0 AS n, NULL::jsonb AS request, NULL::text AS body WHERE setseed(0.4711) IS NULL;
INSERT INTO rnd.request SELECT n, r.request, r.body FROM generate_series(1, 3200) n, rnd.request(n) r;
CREATE TABLE rnd.answer (n integer PRIMARY KEY, status integer NOT NULL, request jsonb, body text);
GRANT SELECT ON rnd.request TO PUBLIC;
GRANT INSERT ON rnd.answer TO PUBLIC;
CREATE FUNCTION rnd.answered(n integer, status integer, answer text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO rnd.answer SELECT n, status, q.request, answer FROM rnd.request q WHERE q.n = answered.n
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA rnd TO PUBLIC;

SET ROLE regress_gateway;
SET mandant.http_base_domain = 'example.test';
\set ECHO none
\o /dev/null
SELECT format('SELECT rnd.answered(%s, c.status, c.body) FROM mandant.http_call(%L, %L) c', n, request, body)
FROM rnd.request ORDER BY n \gexec
\o
\set ECHO all
RESET ROLE;
SELECT count(*) AS requests,
	   count(*) FILTER (WHERE a.status >= 500 AND a.status <> 503) AS "500 answers",
	   count(*) FILTER (WHERE a.n IS NULL) AS "escaped errors",
	   array_agg(DISTINCT a.status) @> '{200,400,401,403,404,405}' AS "200 to 405 seen"
FROM rnd.request q LEFT JOIN rnd.answer a USING (n);
-- what answered 500, if anything did
SELECT a.request, a.body FROM rnd.answer a WHERE a.status >= 500 AND a.status <> 503 ORDER BY a.n LIMIT 5;

\c contrib_regression
DROP DATABASE regress_mandant_http_random;
