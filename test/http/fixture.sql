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
-- A route that takes a while but stays under the tests' statement timeout
-- (outage.sh, lifecycle.sh: requests in flight when the gateway stops).
CREATE FUNCTION http_test.nap(seconds numeric DEFAULT 0.3)
RETURNS jsonb
LANGUAGE sql
AS $$ SELECT pg_sleep(seconds); SELECT jsonb_build_object('slept', seconds) $$;
SELECT mandant.http_route('GET', '/test/v1/nap', 'http_test.nap(numeric)', public => true);

-- Tenants and accounts of the contract tests (contract.sh, tokens.sh,
-- session.sh): acme (Ada owns it, Vic views it), beta (Bob), small on the
-- free plan (Sue and Sid: its two users), sleepy (Sam; suspended by a test).
CREATE ROLE mandant_http_test_service IN ROLE mandant_service;
CREATE ROLE mandant_http_test_owner;
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	('a7000000-0000-4000-8000-00000000000a', 'acme', 'Acme', 'ada@acme.test', 'pro'),
	('b7000000-0000-4000-8000-00000000000b', 'beta', 'Beta', 'bob@beta.test', 'pro'),
	('c7000000-0000-4000-8000-00000000000c', 'small', 'Small', 'sue@small.test', 'free'),
	('d7000000-0000-4000-8000-00000000000d', 'sleepy', 'Sleepy', 'sam@sleepy.test', 'pro');
SET ROLE mandant_http_test_service;
SELECT mandant.create_user(v.email, v.email || ' password', v.name)
FROM (VALUES ('ada@acme.test', 'Ada'), ('bob@beta.test', 'Bob'), ('sue@small.test', 'Sue'),
			 ('sam@sleepy.test', 'Sam')) v (email, name);
SELECT mandant.create_user('vic@acme.test', 'vic@acme.test password', 'Vic') AS vic,
	   mandant.create_user('sid@small.test', 'sid@small.test password', 'Sid') AS sid \gset
BEGIN;
SELECT mandant.set_tenant('a7000000-0000-4000-8000-00000000000a');
SELECT mandant.add_member('a7000000-0000-4000-8000-00000000000a', :'vic', 'viewer');
COMMIT;
BEGIN;
SELECT mandant.set_tenant('c7000000-0000-4000-8000-00000000000c');
SELECT mandant.add_member('c7000000-0000-4000-8000-00000000000c', :'sid', 'agent');
COMMIT;
RESET ROLE;

-- An application of the tests: tasks of a tenant with a status machine
-- (open -> done) and a unique title, served by SECURITY DEFINER functions
-- of their owner; the gateway's role holds no right on the table.
CREATE SCHEMA http_app AUTHORIZATION mandant_http_test_owner;
SET ROLE mandant_http_test_owner;
CREATE TABLE http_app.task (
	tenant_id	uuid NOT NULL DEFAULT mandant.require_tenant(),
	id			bigint GENERATED ALWAYS AS IDENTITY,
	title		text NOT NULL CHECK (title <> '' AND length(title) <= 60),
	status		text,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, title)
);
SELECT mandant.enable_tenancy('http_app.task');
SELECT mandant.create_state_machine('http_task', '{open}', states => '{open,done}');
SELECT mandant.add_transition('http_task', 'open', 'done');
SELECT mandant.enable_state_machine('http_app.task', 'http_task');
CREATE FUNCTION http_app.tasks(status text DEFAULT NULL)
RETURNS SETOF http_app.task
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM http_app.task t
	WHERE t.tenant_id = mandant.require_tenant() AND (tasks.status IS NULL OR t.status = tasks.status)
	ORDER BY t.id
$$;
CREATE FUNCTION http_app.add_task(title text)
RETURNS http_app.task
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ INSERT INTO http_app.task (title) VALUES (add_task.title) RETURNING * $$;
CREATE FUNCTION http_app.move_task(task_id bigint, status text)
RETURNS http_app.task
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	moved http_app.task;
BEGIN
	UPDATE http_app.task t SET status = move_task.status
	WHERE t.tenant_id = mandant.require_tenant() AND t.id = task_id
	RETURNING * INTO moved;
	IF moved.id IS NULL THEN
		RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN moved;
END
$$;
-- fails unexpectedly, with a secret in its message (500, nothing leaks)
CREATE FUNCTION http_app.explode(secret text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'lost track of http_app.task for %', secret;
END
$$;
-- the tenant of the request, MD001 without one
CREATE FUNCTION http_app.whose()
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.require_tenant() $$;
REVOKE ALL ON FUNCTION http_app.tasks(text), http_app.add_task(text), http_app.move_task(bigint, text),
	http_app.explode(text), http_app.whose() FROM PUBLIC;
SELECT mandant.http_route('GET', '/test/v1/tasks', 'http_app.tasks(text)', 'read', paginated => true,
						  summary => 'The tasks of the tenant');
SELECT mandant.http_route('POST', '/test/v1/tasks', 'http_app.add_task(text)', 'write');
SELECT mandant.http_route('PUT', '/test/v1/tasks/{taskId}/status', 'http_app.move_task(bigint,text)', 'write');
SELECT mandant.http_route('POST', '/test/v1/explode', 'http_app.explode(text)', 'read');
SELECT mandant.http_route('GET', '/test/v1/whose', 'http_app.whose()', public => true);
RESET ROLE;
