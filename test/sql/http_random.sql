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

\i test/fixtures/http_random.sql

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
