
/* ---------------------------------------------------------------------------
 * Identity and access: the tables, and the checks every identity topic uses
 *
 * Users (global: one person, one e-mail, many tenants), memberships (user x
 * tenant x role), roles (system roles with fixed scopes, tenant roles with
 * a subset), service accounts, refresh tokens in families, the jti
 * denylist and the login log.  The functions live by topic in the files
 * that follow: 86b_tokens.sql, 86c_login.sql, 86d_mfa.sql,
 * 86e_service_accounts.sql and 86f_members.sql.
 *
 * No table holds a plaintext password, token or key: passwords are bcrypt
 * (cost 12, pgcrypto), refresh tokens and client secrets SHA-256 (they are
 * 256 random bits), TOTP secrets sealed with AES-256-GCM, the signing key
 * stays in a file.  Nobody but the extension owner reads these tables
 * directly; the functions are the interface.
 *
 * Who may do what: management operations go through the C gate
 * mandant.gate_call() (gate.c), which checks the real caller;
 * self-service operations act on app.current_user_id, which only
 * authenticate() and set_user() set; login, refresh and service_token take
 * credentials.
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.users (
	id				uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	email			text NOT NULL
					CONSTRAINT users_email_format
						CHECK (pg_catalog.length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
	display_name	text NOT NULL
					CONSTRAINT users_display_name_length
						CHECK (pg_catalog.length(pg_catalog.btrim(display_name)) BETWEEN 1 AND 200),
	password_hash	text NOT NULL,
	status			text NOT NULL DEFAULT 'active'
					CONSTRAINT users_status_value CHECK (status IN ('active', 'disabled')),
	totp_state		text NOT NULL DEFAULT 'off'
					CONSTRAINT users_totp_state_value CHECK (totp_state IN ('off', 'pending', 'on')),
	totp_secret		bytea,
	totp_last_step	bigint,
	token_version	bigint NOT NULL DEFAULT 1,
	last_login_at	timestamptz,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	email_confirmed_at timestamptz,
	CONSTRAINT users_totp_secret CHECK ((totp_state = 'off') = (totp_secret IS NULL))
);

CREATE UNIQUE INDEX users_email_key ON mandant.users (pg_catalog.lower(email));

COMMENT ON TABLE mandant.users IS
'People who log in. E-mail unique case-insensitively; password_hash is bcrypt, totp_secret sealed (AES-256-GCM); token_version invalidates every token when it grows; email_confirmed_at is set when the platform vouches for the address.';

CREATE TABLE mandant.role (
	tenant_id	uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	name		text NOT NULL
				CONSTRAINT role_name_format CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
	scopes		text[] NOT NULL
				CONSTRAINT role_scopes_known
					CHECK (scopes <@ ARRAY['read', 'write', 'delete', 'admin']::text[]),
	description	text,
	CONSTRAINT role_key UNIQUE NULLS NOT DISTINCT (tenant_id, name)
);

COMMENT ON TABLE mandant.role IS
'Roles and their scopes: system roles (tenant_id NULL) owner, admin, manager, agent, viewer; tenants add their own with a subset of read, write, delete, admin.';

INSERT INTO mandant.role (tenant_id, name, scopes, description) VALUES
	(NULL, 'owner', '{read,write,delete,admin}', 'Owns the tenant; the only role that grants or removes owners.'),
	(NULL, 'admin', '{read,write,delete,admin}', 'Manages the tenant and its members.'),
	(NULL, 'manager', '{read,write}', 'Works with the data.'),
	(NULL, 'agent', '{read,write}', 'Works with the data.'),
	(NULL, 'viewer', '{read}', 'Reads.');

CREATE TABLE mandant.membership (
	tenant_id	uuid NOT NULL REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	user_id		uuid NOT NULL REFERENCES mandant.users (id) ON DELETE CASCADE ON UPDATE CASCADE,
	role		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	text NOT NULL,
	PRIMARY KEY (tenant_id, user_id)
);

CREATE INDEX membership_user_idx ON mandant.membership (user_id);

COMMENT ON TABLE mandant.membership IS
'Who belongs to which tenant, in which role. A tenant keeps at least one owner.';

CREATE TABLE mandant.service_account (
	id			uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	client_id	text NOT NULL CONSTRAINT service_account_client_id_key UNIQUE,
	secret_hash	bytea NOT NULL,
	name		text NOT NULL
				CONSTRAINT service_account_name_length
					CHECK (pg_catalog.length(pg_catalog.btrim(name)) BETWEEN 1 AND 200),
	tenant_id	uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	scopes		text[] NOT NULL
				CONSTRAINT service_account_scopes_known
					CHECK (scopes <@ ARRAY['read', 'write', 'delete', 'admin', 'internal']::text[]),
	status		text NOT NULL DEFAULT 'active'
				CONSTRAINT service_account_status_value CHECK (status IN ('active', 'disabled')),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	text NOT NULL,
	last_used_at timestamptz,
	CONSTRAINT service_account_internal_platform
		CHECK (tenant_id IS NULL OR NOT 'internal' = ANY (scopes))
);

COMMENT ON TABLE mandant.service_account IS
'Machine clients: client id + secret (stored as SHA-256) give tokens of type m2m. Platform accounts (no tenant) may hold scope internal.';

CREATE TABLE mandant.refresh_family (
	id				uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	user_id			uuid NOT NULL REFERENCES mandant.users (id) ON DELETE CASCADE ON UPDATE CASCADE,
	tenant_id		uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	revoked_at		timestamptz,
	revoked_reason	text
);

CREATE INDEX refresh_family_user_idx ON mandant.refresh_family (user_id) WHERE revoked_at IS NULL;

COMMENT ON TABLE mandant.refresh_family IS
'One login session: every refresh token rotated from the first one. Presenting a rotated token again revokes the family.';

CREATE TABLE mandant.refresh_token (
	token_hash	bytea PRIMARY KEY,
	family_id	uuid NOT NULL REFERENCES mandant.refresh_family (id) ON DELETE CASCADE,
	issued_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at	timestamptz NOT NULL,
	consumed_at	timestamptz
);

CREATE INDEX refresh_token_family_idx ON mandant.refresh_token (family_id);

COMMENT ON TABLE mandant.refresh_token IS
'Refresh tokens by SHA-256; consumed_at is set when the token is rotated.';

CREATE TABLE mandant.revoked_jti (
	jti			uuid PRIMARY KEY,
	expires_at	timestamptz NOT NULL,
	revoked_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE mandant.revoked_jti IS
'Access tokens logged out before they expire (checked by mandant.authenticate); rows can go once expires_at has passed.';

CREATE TABLE mandant.login_attempt (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	email		text,
	user_id		uuid,
	tenant_id	uuid,
	client_ip	inet,
	success		boolean NOT NULL,
	reason		text,
	request_id	text
);

CREATE INDEX login_attempt_at_idx ON mandant.login_attempt (at);

COMMENT ON TABLE mandant.login_attempt IS
'Every login and service token attempt, successful or not (failures are written by mandant''s worker, so they survive the refusal''s rollback).';

-- Nobody reads these tables directly but platform administrators (never
-- the secret columns); tenants see their own memberships and roles.
REVOKE ALL ON mandant.users, mandant.role, mandant.membership, mandant.service_account,
	mandant.refresh_family, mandant.refresh_token, mandant.revoked_jti, mandant.login_attempt FROM PUBLIC;
GRANT SELECT (id, email, display_name, status, totp_state, token_version, last_login_at, created_at, updated_at,
			   email_confirmed_at)
	ON mandant.users TO mandant_admin;
GRANT SELECT (id, client_id, name, tenant_id, scopes, status, created_at, created_by, last_used_at)
	ON mandant.service_account TO mandant_admin;
GRANT SELECT ON mandant.login_attempt, mandant.refresh_family TO mandant_admin;
GRANT SELECT ON mandant.membership, mandant.role TO PUBLIC;
ALTER TABLE mandant.membership ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.membership FOR SELECT
	USING (tenant_id = mandant.current_tenant() OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'));
ALTER TABLE mandant.role ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_system ON mandant.role FOR SELECT
	USING (tenant_id IS NULL OR tenant_id = mandant.current_tenant() OR pg_catalog.pg_has_role('mandant_admin', 'USAGE'));

SELECT pg_catalog.pg_extension_config_dump('mandant.users', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.role', 'WHERE tenant_id IS NOT NULL');
SELECT pg_catalog.pg_extension_config_dump('mandant.membership', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.service_account', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.refresh_family', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.refresh_token', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.revoked_jti', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.login_attempt', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.login_attempt_id_seq', '');

CREATE FUNCTION mandant.check_email(email text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF email IS NULL OR length(email) > 254 OR btrim(email) !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'invalid e-mail address'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s is not an address of at most 254 characters.',
								  COALESCE(quote_literal(left(email, 60)), 'NULL')),
				  HINT = 'Pass an address such as ''ada@example.com''.';
	END IF;
	RETURN btrim(email);
END
$$;

COMMENT ON FUNCTION mandant.check_email(text) IS
'Internal: the trimmed e-mail, or 22023 when it is not an address of at most 254 characters.';

CREATE FUNCTION mandant.require_user()
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me uuid := mandant.current_user_id();
BEGIN
	IF me IS NULL THEN
		RAISE EXCEPTION 'no user is signed in'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'This acts for the signed-in user, and app.current_user_id is not set.',
				  HINT = 'Call mandant.authenticate(access_token) first, in the same transaction.';
	END IF;
	RETURN me;
END
$$;

COMMENT ON FUNCTION mandant.require_user() IS
'The signed-in user (set by authenticate or set_user), or 42501.';

/*
 * record_event writes an identity event for a tenant (NULL: platform) with
 * the signed-in user as actor and the request id of the transaction.
 */
CREATE FUNCTION mandant.record_event(tenant uuid, category text, action text, entity_type text,
									 entity_id text, payload jsonb)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								 category, action, entity_type, entity_id, payload);
$$;

COMMENT ON FUNCTION mandant.record_event(uuid, text, text, text, text, jsonb) IS
'Internal: an audit event of an identity operation, by the signed-in user, with the request id.';

REVOKE ALL ON FUNCTION mandant.record_event(uuid, text, text, text, text, jsonb) FROM PUBLIC;
