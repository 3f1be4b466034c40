-- fixture.sql: the database of the HTTP tests (test/http/lib.sh): the
-- extension, a login role for the gateway (a member of mandant_gateway,
-- nothing else) and three public test routes.
CREATE EXTENSION mandant CASCADE;

CREATE ROLE mandant_http_test_gateway LOGIN IN ROLE mandant_gateway;

CREATE SCHEMA http_test;

CREATE FUNCTION http_test.echo(message text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
AS $$ SELECT jsonb_build_object('message', message) $$;

CREATE FUNCTION http_test.sleep()
RETURNS jsonb
LANGUAGE sql
AS $$ SELECT pg_sleep(30); SELECT '{}'::jsonb $$;

SELECT mandant.http_route('GET', '/test/v1/echo', 'http_test.echo(text)', public => true);
SELECT mandant.http_route('POST', '/test/v1/echo', 'http_test.echo(text)', public => true);
SELECT mandant.http_route('GET', '/test/v1/sleep', 'http_test.sleep()', public => true);

-- The client address the gateway passes on (test/http/ids.sh).
CREATE FUNCTION http_test.address(client_ip inet DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
AS $$ SELECT jsonb_build_object('clientIp', host(client_ip)) $$;

SELECT mandant.http_route('GET', '/test/v1/address', 'http_test.address(inet)', public => true);
