-- demo.sql: the data `make run` loads into database "mandant".  Idempotent:
-- running it again changes nothing.  Passwords come from scripts/run.sh as
-- psql variables (app_password, admin_password, owner_password).
SET client_min_messages = warning;
\o /dev/null

CREATE EXTENSION IF NOT EXISTS mandant CASCADE;

-- Login roles of the demo: a trusted backend, a platform administrator,
-- the owner of the application schema (who runs its migrations) and the
-- HTTP gateway (a member of mandant_gateway and nothing else; it connects
-- over the private socket, so it has no password).
SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY['mandant_demo_app', 'mandant_demo_admin', 'mandant_demo_owner', 'mandant_demo_gateway']) r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec
ALTER ROLE mandant_demo_app PASSWORD :'app_password';
ALTER ROLE mandant_demo_admin PASSWORD :'admin_password';
ALTER ROLE mandant_demo_owner PASSWORD :'owner_password';
GRANT mandant_service TO mandant_demo_app;
GRANT mandant_admin TO mandant_demo_admin;
GRANT mandant_gateway TO mandant_demo_gateway;

-- The application schema, created by its owner like a migration would.
CREATE SCHEMA IF NOT EXISTS demo AUTHORIZATION mandant_demo_owner;
SET ROLE mandant_demo_owner;
CREATE TABLE IF NOT EXISTS demo.note (
	tenant_id	uuid,
	id			bigint GENERATED ALWAYS AS IDENTITY,
	title		text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
	body		text,
	status		text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id)
);
SELECT mandant.enable_tenancy('demo.note');
SELECT mandant.enable_audit('demo.note', 'notes');
SELECT mandant.create_state_machine('note', '{open}', states => '{open,done}')
WHERE NOT EXISTS (SELECT 1 FROM mandant.state_machine WHERE name = 'note');
SELECT mandant.add_transition('note', 'open', 'done')
WHERE NOT EXISTS (SELECT 1 FROM mandant.state_transition WHERE machine = 'note');
SELECT mandant.enable_state_machine('demo.note', 'note');
SELECT mandant.enable_quota('demo.note', 'records');		-- free: 5 notes, pro: 100
GRANT USAGE ON SCHEMA demo TO mandant_demo_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON demo.note TO mandant_demo_app;

-- The notes over HTTP: functions of the owner, called by the gateway with
-- the context of the request's token (row level security applies to the
-- owner too: enable_tenancy forces it), and their routes.  PL/pgSQL keeps
-- its plans per session; a SECURITY DEFINER function in LANGUAGE sql would
-- be parsed again on every request.
CREATE OR REPLACE FUNCTION demo.note_list(only_status text DEFAULT NULL)
RETURNS TABLE (id bigint, title text, body text, status text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	SELECT n.id, n.title, n.body, n.status, n.created_at FROM demo.note n
	WHERE n.tenant_id = mandant.require_tenant()
	  AND (only_status IS NULL OR n.status = only_status)
	ORDER BY n.id;
END
$$;
CREATE OR REPLACE FUNCTION demo.note_create(title text, body text DEFAULT NULL)
RETURNS demo.note
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n demo.note;
BEGIN
	INSERT INTO demo.note (tenant_id, title, body)
	VALUES (mandant.require_tenant(), note_create.title, note_create.body) RETURNING * INTO n;
	RETURN n;
END
$$;
CREATE OR REPLACE FUNCTION demo.note_set_status(note_id bigint, status text)
RETURNS demo.note
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n demo.note;
BEGIN
	UPDATE demo.note SET status = note_set_status.status
	WHERE tenant_id = mandant.require_tenant() AND id = note_id RETURNING * INTO n;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'note % does not exist', note_id USING ERRCODE = 'no_data_found',
			DETAIL = 'The tenant has no note with this id.', HINT = 'List the notes with GET /api/v1/notes.';
	END IF;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION demo.note_list(text), demo.note_create(text, text),
	demo.note_set_status(bigint, text) FROM PUBLIC;
SELECT mandant.http_route('GET', '/api/v1/notes', 'demo.note_list(text)', 'read', paginated => true,
						  summary => 'The notes of the tenant');
SELECT mandant.http_route('POST', '/api/v1/notes', 'demo.note_create(text,text)', 'write',
						  summary => 'Write a note');
SELECT mandant.http_route('PUT', '/api/v1/notes/{noteId}/status', 'demo.note_set_status(bigint,text)', 'write',
						  summary => 'Move a note to another status (its state machine decides)');
RESET ROLE;

-- Two tenants, created the way a platform administrator would; the
-- operation ids make this idempotent.
SET ROLE mandant_demo_admin;
SELECT mandant.create_tenant('acme', 'Acme Risk GmbH', 'owner@acme.example', 'pro',
							 '5f0c6a52-3f8e-4b7e-9a51-0d6c1a7e2b01') AS acme \gset
SELECT mandant.create_tenant('globex', 'Globex Facilities', 'it@globex.example', 'free',
							 '5f0c6a52-3f8e-4b7e-9a51-0d6c1a7e2b02') AS globex \gset
-- Platform-wide configuration defaults (global values).
SELECT mandant.config_set('mailer', 'smtp.host', '"smtp.mandant.example"', 'platform relay')
WHERE mandant.config_get('mailer', 'smtp.host') IS NULL;
SELECT mandant.config_set('mailer', 'smtp.password', '{"secretRef": "vault:mailer/smtp"}', 'relay credentials')
WHERE mandant.config_get('mailer', 'smtp.password') IS NULL;
RESET ROLE;

-- Ada, owner of acme, logs in with the password generated into .run/demo-login.
SET ROLE mandant_demo_admin;
SELECT mandant.create_user('ada@acme.example', :'ada_password', 'Ada Lovelace')
WHERE NOT EXISTS (SELECT 1 FROM mandant.users WHERE email = 'ada@acme.example');
SELECT mandant.add_member(:'acme', u.id, 'owner') FROM mandant.users u
WHERE u.email = 'ada@acme.example'
  AND NOT EXISTS (SELECT 1 FROM mandant.membership m WHERE m.user_id = u.id);
RESET ROLE;

-- Their notes, written through the tenant context like the application does.
SET ROLE mandant_demo_app;
BEGIN;
SELECT mandant.set_tenant(:'acme');
INSERT INTO demo.note (title, body)
SELECT v.title, v.body
FROM (VALUES ('Dust explosion risk in silo 3', 'Assessment due next week.'),
			 ('Forklift training', 'Two drivers still need the refresher.')) v (title, body)
WHERE NOT EXISTS (SELECT 1 FROM demo.note);
COMMIT;
BEGIN;
SELECT mandant.set_tenant(:'globex');
INSERT INTO demo.note (title, body)
SELECT 'Quarterly fire drill', 'Building B, Friday 10:00.'
WHERE NOT EXISTS (SELECT 1 FROM demo.note);
COMMIT;
RESET ROLE;
