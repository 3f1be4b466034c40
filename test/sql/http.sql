-- The HTTP contract of mandant.http_call(), without a socket: routes,
-- tenant by subdomain and X-Tenant, tokens and scopes, arguments by
-- camelCase name and type, pagination, the envelope, the status of each
-- SQLSTATE, the refresh cookie; and who may register routes, what the
-- gateway's role may then execute, and what it may not be.  A database of
-- its own: routes are per database and the test grants rights.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_mandant_http WITH (FORCE);
CREATE DATABASE regress_mandant_http;
\c regress_mandant_http
SET client_min_messages = warning;
CREATE EXTENSION mandant CASCADE;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- An application: notes of a tenant, owned by regress_owner, served by
-- SECURITY DEFINER functions (the gateway's role holds no table rights).
CREATE SCHEMA app AUTHORIZATION regress_owner;
SET ROLE regress_owner;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
CREATE TABLE app.note (
	tenant_id	uuid NOT NULL,
	id			uuid NOT NULL DEFAULT gen_random_uuid(),
	title		text NOT NULL CHECK (length(title) BETWEEN 1 AND 40),
	body		text,
	tags		text[] NOT NULL DEFAULT '{}',
	stars		integer NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL DEFAULT '2026-01-01 10:00+02',
	PRIMARY KEY (tenant_id, id)
);
SELECT mandant.enable_tenancy('app.note');
CREATE FUNCTION app.note_list(search text DEFAULT NULL) RETURNS SETOF app.note
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT * FROM app.note WHERE search IS NULL OR strpos(title, search) > 0 ORDER BY title
$$;
CREATE FUNCTION app.note_create(title text, body text DEFAULT NULL, tags text[] DEFAULT '{}',
								stars integer DEFAULT 0) RETURNS app.note
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	INSERT INTO app.note (title, body, tags, stars) VALUES (title, body, tags, stars) RETURNING *
$$;
CREATE FUNCTION app.note_get(note_id uuid) RETURNS app.note
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
	n app.note;
BEGIN
	SELECT * INTO n FROM app.note WHERE id = note_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'note % not found', note_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN n;
END
$$;
CREATE FUNCTION app.note_delete(note_id uuid) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	DELETE FROM app.note WHERE id = note_id
$$;
CREATE FUNCTION app.note_count() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT count(*) FROM app.note $$;
CREATE FUNCTION app.broken(secret text) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	RAISE EXCEPTION 'internal detail: table app.note, value %', secret;
END
$$;
CREATE FUNCTION app.unrouted() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;

-- Registering routes: the function's owner (or mandant_admin), for
-- functions it may call, with a shape the dispatcher can serve.
SELECT mandant.http_route('GET', '/v1/notes', 'app.note_list(text)', 'read', paginated => true,
						  summary => 'List notes');
SELECT mandant.http_route('POST', '/v1/notes', 'app.note_create(text,text,text[],integer)', 'write');
SELECT mandant.http_route('GET', '/v1/notes/count', 'app.note_count()', 'read');
SELECT mandant.http_route('GET', '/v1/notes/{noteId}', 'app.note_get(uuid)', 'read');
SELECT mandant.http_route('DELETE', '/v1/notes/{noteId}', 'app.note_delete(uuid)', 'delete');
SELECT mandant.http_route('POST', '/v1/broken', 'app.broken(text)', 'read');
\set ON_ERROR_STOP 0
SELECT mandant.http_route('GET', '/v1/bad', 'app.note_get(uuid)', 'read', paginated => true);
SELECT mandant.http_route('GET', '/v1/bad/{id}', 'app.note_get(uuid)', 'read');
SELECT mandant.http_route('GET', '/v1/bad', 'app.note_count()', 'read', public => true);
SELECT mandant.http_route('GET', 'v1/no-slash', 'app.note_count()');
SELECT mandant.http_route('GET', '/v1/catalog', 'pg_catalog.now()');
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.http_route('GET', '/v1/catalog', 'pg_catalog.now()');
SELECT mandant.http_route('GET', '/v1/internal', 'mandant.tenant_tables()');
SELECT mandant.http_route('GET', '/v1/unrouted', 'app.unrouted()');
RESET ROLE;
SET ROLE regress_user;
SELECT mandant.http_route('GET', '/v1/mine', 'app.note_count()', 'read');
SELECT mandant.drop_http_route('GET', '/v1/notes/count');
RESET ROLE;
\set ON_ERROR_STOP 1
SET ROLE regress_admin;
SELECT mandant.http_route('POST', '/v1/auth/login', 'mandant.login(text,text,text,inet,text)', public => true);
SELECT mandant.http_route('POST', '/v1/auth/refresh', 'mandant.refresh(text)', public => true);
RESET ROLE;
SELECT method, path, function, required_scope, public, paginated FROM mandant.http_route ORDER BY path, method;
-- the gateway may now execute the routed functions (and use their schema), nothing more
SELECT has_function_privilege('mandant_gateway', 'app.note_list(text)', 'EXECUTE') AS list,
	   has_function_privilege('mandant_gateway', 'app.unrouted()', 'EXECUTE') AS unrouted,
	   has_schema_privilege('mandant_gateway', 'app', 'USAGE') AS schema,
	   has_table_privilege('mandant_gateway', 'app.note', 'SELECT') AS table_select;

-- Two tenants; Tara owns acme, Vic is a viewer there, Bob owns beta.
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	('a3000000-0000-4000-8000-00000000000a', 'acme', 'Acme', 'tara@acme.test', 'pro'),
	('b3000000-0000-4000-8000-00000000000b', 'beta', 'Beta', 'bob@beta.test', 'pro');
SET ROLE regress_service;
SELECT mandant.create_user('tara@acme.test', 'taras long password', 'Tara') IS NOT NULL AS tara;
SELECT mandant.create_user('bob@beta.test', 'bobs long password', 'Bob') IS NOT NULL AS bob;
SELECT mandant.create_user('vic@acme.test', 'vics long password', 'Vic') AS vic \gset
BEGIN;
SELECT mandant.set_tenant('a3000000-0000-4000-8000-00000000000a');
SELECT mandant.add_member('a3000000-0000-4000-8000-00000000000a', :'vic', 'viewer');
COMMIT;
RESET ROLE;

-- call(method, path, query, body, token, host, x-tenant): status, extra
-- headers and the envelope without its timestamp.
CREATE FUNCTION pg_temp.call(method text, path text, query text DEFAULT NULL, body text DEFAULT NULL,
							 token text DEFAULT NULL, host text DEFAULT 'acme.example.test:8888',
							 tenant text DEFAULT NULL)
RETURNS TABLE (status integer, headers jsonb, answer jsonb, route text, tenant_id uuid)
LANGUAGE sql AS $$
	SELECT c.status, c.headers, c.body::jsonb #- '{meta,timestamp}', c.route, c.tenant_id
	FROM mandant.http_call(jsonb_strip_nulls(jsonb_build_object(
		'method', method, 'path', path, 'query', query, 'host', host, 'tenant', tenant,
		'token', token, 'requestId', 'req-1', 'clientIp', '192.0.2.7')), body) c
$$;

SET ROLE regress_gateway;
SET mandant.http_base_domain = 'example.test';

-- public route: login by subdomain; the refresh token leaves the body for a cookie
SELECT status, headers ? 'set-cookie' AS cookie,
	   headers ->> 'set-cookie' ~ '^mandant_refresh=[A-Za-z0-9_-]+; Path=/; HttpOnly; Secure; SameSite=Strict$' AS cookie_attributes,
	   answer -> 'data' ? 'refreshToken' AS refresh_in_body, answer #>> '{data,tenant,slug}' AS tenant,
	   answer -> 'meta' AS meta, route
FROM pg_temp.call('POST', '/v1/auth/login', body => '{"email":"tara@acme.test","password":"taras long password"}');
SELECT c.answer #>> '{data,accessToken}' AS tara,
	   split_part(split_part(c.headers ->> 'set-cookie', ';', 1), '=', 2) AS tara_refresh
FROM pg_temp.call('POST', '/v1/auth/login', body => '{"email":"tara@acme.test","password":"taras long password"}') c \gset
SELECT answer #>> '{data,accessToken}' AS vic
FROM pg_temp.call('POST', '/v1/auth/login', body => '{"email":"vic@acme.test","password":"vics long password"}') \gset
SELECT answer #>> '{data,accessToken}' AS bob
FROM pg_temp.call('POST', '/v1/auth/login', host => 'beta.example.test',
				  body => '{"email":"bob@beta.test","password":"bobs long password"}') \gset
-- wrong password: 401 INVALID_CREDENTIALS; the slug of the subdomain fills tenant_slug
SELECT status, headers, answer -> 'error' ->> 'code' AS code
FROM pg_temp.call('POST', '/v1/auth/login', body => '{"email":"tara@acme.test","password":"wrong password!"}');
SELECT status, answer -> 'error' ->> 'code' AS code
FROM pg_temp.call('POST', '/v1/auth/login', host => 'beta.example.test',
				  body => '{"email":"tara@acme.test","password":"taras long password"}');
-- the gateway fills clientIp and tenantSlug; a client may not
SELECT status, answer -> 'error' -> 'details' AS details
FROM pg_temp.call('POST', '/v1/auth/login',
				  body => '{"email":"tara@acme.test","password":"taras long password","clientIp":"10.0.0.1","tenantSlug":"beta"}');
-- refresh with the cookie (cookie header, no body)
SELECT c.status, c.headers ? 'set-cookie' AS new_cookie, c.body::jsonb #>> '{data,tenant,slug}' AS tenant
FROM mandant.http_call(jsonb_build_object('method', 'POST', 'path', '/v1/auth/refresh', 'host', 'acme.example.test',
										  'cookie', 'theme=dark; mandant_refresh=' || :'tara_refresh' || '; x=1')) c;

-- protected routes: writes with their JSON types, arrays included
SELECT status, answer #>> '{data,title}' AS title, answer #> '{data,tags}' AS tags,
	   answer #>> '{data,stars}' AS stars, answer #>> '{data,createdAt}' AS created_at,
	   answer -> 'data' ? 'tenantId' AS camel_keys, tenant_id
FROM pg_temp.call('POST', '/v1/notes', body => '{"title":"Alpha","body":"first","tags":["x","y"],"stars":3}', token => :'tara');
SELECT status, answer #>> '{data,title}' AS title
FROM pg_temp.call('POST', '/v1/notes', body => '{"title":"Beta note"}', token => :'tara');
SELECT answer #>> '{data,0,id}' AS alpha FROM pg_temp.call('GET', '/v1/notes', 'search=Alpha', token => :'tara') \gset
-- pagination: page 2 of size 1, total 2; a literal segment beats {noteId}
SELECT status, answer -> 'pagination' AS pagination, jsonb_array_length(answer -> 'data') AS rows,
	   answer #>> '{data,0,title}' AS title
FROM pg_temp.call('GET', '/v1/notes', 'page=2&pageSize=1', token => :'tara');
SELECT status, answer -> 'data' AS count, route FROM pg_temp.call('GET', '/v1/notes/count', token => :'tara');
SELECT status, answer #>> '{data,title}' AS title, route FROM pg_temp.call('GET', '/v1/notes/' || :'alpha', token => :'tara');
-- percent-encoded query values
SELECT status, answer -> 'pagination' ->> 'total' AS total
FROM pg_temp.call('GET', '/v1/notes', 'search=Beta%20note', token => :'tara');

-- tenants: another tenant's token, X-Tenant, unknown tenants
SELECT status, answer -> 'error' ->> 'code' AS code FROM pg_temp.call('GET', '/v1/notes', token => :'bob');
SELECT status, answer -> 'pagination' ->> 'total' AS total, tenant_id
FROM pg_temp.call('GET', '/v1/notes', token => :'bob', host => 'localhost', tenant => 'beta');
SELECT status, answer -> 'pagination' ->> 'total' AS total
FROM pg_temp.call('GET', '/v1/notes', token => :'tara', host => 'localhost', tenant => 'a3000000-0000-4000-8000-00000000000a');
SELECT status, answer -> 'error' AS error FROM pg_temp.call('GET', '/v1/notes', token => :'tara', host => 'nope.example.test');
-- no tenant addressed: the token's
SELECT status, answer -> 'pagination' ->> 'total' AS total FROM pg_temp.call('GET', '/v1/notes', token => :'bob', host => 'localhost');

-- scopes: a viewer may read, not write or delete
SELECT status FROM pg_temp.call('GET', '/v1/notes', token => :'vic');
SELECT status, answer -> 'error' AS error FROM pg_temp.call('POST', '/v1/notes', body => '{"title":"Vic"}', token => :'vic');
SELECT status FROM pg_temp.call('DELETE', '/v1/notes/' || :'alpha', token => :'vic');

-- tokens: none, malformed, tampered
SELECT status, headers, answer -> 'error' ->> 'code' AS code FROM pg_temp.call('GET', '/v1/notes');
SELECT status, answer -> 'error' ->> 'code' AS code FROM pg_temp.call('GET', '/v1/notes', token => 'x.y.z');
SELECT status, answer -> 'error' ->> 'code' AS code FROM pg_temp.call('GET', '/v1/notes', token => :'tara' || 'A');

-- arguments: unknown, missing, wrong JSON types, bad input, twice, bad body, bad paging
SELECT status, answer -> 'error' AS error
FROM pg_temp.call('POST', '/v1/notes', body => '{"title":5,"bogus":1,"tags":"x","stars":"3"}', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details
FROM pg_temp.call('POST', '/v1/notes', body => '{"body":"no title","tags":[1,[2]]}', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details
FROM pg_temp.call('POST', '/v1/notes', body => '{"title":"x","stars":1.5}', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details FROM pg_temp.call('GET', '/v1/notes/not-a-uuid', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details
FROM pg_temp.call('GET', '/v1/notes/' || :'alpha', 'noteId=' || :'alpha', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details FROM pg_temp.call('POST', '/v1/notes', body => '{"title":', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details FROM pg_temp.call('POST', '/v1/notes', body => '["title"]', token => :'tara');
SELECT status, answer -> 'error' -> 'details' AS details
FROM pg_temp.call('GET', '/v1/notes', 'page=0&pageSize=101&search=%zz', token => :'tara');

-- errors of the function: each SQLSTATE its status; nothing of a 500 leaks
SELECT status, answer -> 'error' AS error FROM pg_temp.call('GET', '/v1/notes/a3000000-0000-4000-8000-000000000999', token => :'tara');
SELECT status, answer -> 'error' AS error FROM pg_temp.call('POST', '/v1/notes', body => '{"title":""}', token => :'tara');
SELECT status, answer AS answer FROM pg_temp.call('POST', '/v1/broken', body => '{"secret":"s3cr3t"}', token => :'tara');
-- a refused write leaves nothing behind
SELECT status, answer -> 'data' AS count FROM pg_temp.call('GET', '/v1/notes/count', token => :'tara');

-- routing: unknown path, wrong method, malformed path
SELECT status, headers, answer -> 'error' ->> 'code' AS code, route FROM pg_temp.call('GET', '/v1/nothing');
SELECT status, headers, answer -> 'error' ->> 'code' AS code FROM pg_temp.call('PUT', '/v1/notes');
SELECT status, answer -> 'error' -> 'details' AS details FROM pg_temp.call('GET', '/v1/notes/%ff');

-- deleting: void answers null
SELECT status, answer -> 'data' AS data FROM pg_temp.call('DELETE', '/v1/notes/' || :'alpha', token => :'tara');
SELECT status, answer -> 'data' AS count FROM pg_temp.call('GET', '/v1/notes/count', token => :'tara');

-- a route changed in another transaction is served at once (cache invalidation)
RESET ROLE;
SET ROLE regress_owner;
SELECT mandant.http_route('GET', '/v1/notes/count', 'app.note_list(text)', 'read');
RESET ROLE;
SET ROLE regress_gateway;
SELECT status, jsonb_typeof(answer -> 'data') AS data FROM pg_temp.call('GET', '/v1/notes/count', token => :'tara');

-- the gateway's role: no transaction block, no nesting, never trusted
\set ON_ERROR_STOP 0
BEGIN;
SELECT status FROM pg_temp.call('GET', '/v1/notes', token => :'tara');
ROLLBACK;
SELECT mandant.http_call('[1]');
SELECT mandant.http_call('{"method":"GET"}');
SELECT mandant.http_call('{"method":"GET","path":7}');
RESET ROLE;
CREATE ROLE regress_trusted_gateway IN ROLE mandant_gateway, mandant_service;
SET ROLE regress_trusted_gateway;
SELECT mandant.http_call('{"method":"GET","path":"/v1/notes"}');
RESET ROLE;
DROP ROLE regress_trusted_gateway;
SET ROLE regress_user;
SELECT mandant.http_call('{"method":"GET","path":"/v1/notes"}');
RESET ROLE;
\set ON_ERROR_STOP 1

-- dropping the last route of a function revokes what it granted
SET ROLE regress_owner;
SELECT mandant.drop_http_route('DELETE', '/v1/notes/{noteId}');
SELECT mandant.drop_http_route('DELETE', '/v1/notes/{noteId}');
RESET ROLE;
SELECT has_function_privilege('mandant_gateway', 'app.note_delete(uuid)', 'EXECUTE') AS delete_granted,
	   has_function_privilege('mandant_gateway', 'app.note_get(uuid)', 'EXECUTE') AS get_granted;
-- nobody writes the registry directly
SET ROLE regress_owner;
\set ON_ERROR_STOP 0
INSERT INTO mandant.http_route (method, path, function, created_by)
VALUES ('GET', '/v1/sneaky', 'app.note_count()', 'regress_owner');
\set ON_ERROR_STOP 1
RESET ROLE;

\c contrib_regression
DROP DATABASE regress_mandant_http;
