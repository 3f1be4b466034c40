
/* ---------------------------------------------------------------------------
 * Identity and access
 *
 * Users (global: one person, one e-mail, many tenants), memberships (user x
 * tenant x role), roles (system roles with fixed scopes, tenant roles with
 * a subset), service accounts, refresh tokens in families, the jti
 * denylist and the login log.
 *
 * No table holds a plaintext password, token or key: passwords are bcrypt
 * (cost 12, pgcrypto), refresh tokens and client secrets SHA-256 (they are
 * 256 random bits), TOTP secrets sealed with AES-256-GCM (totp.c), the
 * signing key stays in a file (jwt.c).  Nobody but the extension owner
 * reads these tables directly; the functions below are the interface.
 *
 * Who may do what: management operations go through the C gate
 * mandant.gate_call() (gate.c), which checks the real caller;
 * self-service operations act on app.current_user_id, which only
 * authenticate() and set_user() set; login, refresh and service_token take
 * credentials.  An account becomes the owner of the tenants that name its
 * e-mail (tenant.owner_email) only when the platform vouches for the
 * address: mandant_admin or a trusted backend created the account or
 * confirmed its e-mail (email_confirmed_at); a tenant administrator's new
 * user does not.
 *
 * Failed logins are counted per (account, address), per address and per
 * account (see login): one address cannot lock an account out for
 * everyone.  The address is the client_ip a trusted front end passes
 * (mandant_gateway, mandant_service, mandant_admin), else the address of
 * the connection.
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

/* ---- C building blocks ------------------------------------------------- */

CREATE FUNCTION mandant.authenticate(token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_authenticate'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.authenticate(text) IS
'Verify an access token (RS256, issuer, times with 30 s leeway, not revoked, user active with a current token version and still in the role, tenant enterable) and set tenant, user and scopes for the transaction. MD051 invalid, MD052 expired, MD053 revoked, MD003 suspended tenant.';

CREATE FUNCTION mandant.set_user(user_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_user'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.set_user(uuid) IS
'For trusted backends (mandant_service, mandant_admin) acting for an end user: set the user and the scopes of their role in the current tenant (42501 if not a member).';

CREATE FUNCTION mandant.jwks()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_jwks'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.jwks() IS
'The public keys that verify access tokens, as a JSON Web Key Set (kid: RFC 7638 thumbprint).';

CREATE FUNCTION mandant.jwt_sign(claims jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_jwt_sign'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.jwt_sign(jsonb) IS
'Internal: sign claims with the signing key (RS256).';

CREATE FUNCTION mandant.jwt_verify(token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_jwt_verify'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.jwt_verify(text) IS
'Internal: the claims of a token whose form, signature, issuer and times check out; revocation is not checked.';

CREATE FUNCTION mandant.random_bytes(bytes integer)
RETURNS bytea
AS 'MODULE_PATHNAME', 'mandant_random_bytes'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.random_bytes(integer) IS
'Random bytes from OpenSSL (16 to 64).';

CREATE FUNCTION mandant.random_token(bytes integer DEFAULT 32)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_random_token'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.random_token(integer) IS
'Random bytes (OpenSSL), base64url encoded.';

CREATE FUNCTION mandant.totp_code(secret bytea, at timestamptz DEFAULT pg_catalog.now(), digits integer DEFAULT 6)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_totp_code'
LANGUAGE C STABLE STRICT;

COMMENT ON FUNCTION mandant.totp_code(bytea, timestamptz, integer) IS
'The RFC 6238 code (HMAC-SHA1, 30 s steps) of a secret at a time.';

CREATE FUNCTION mandant.base32_encode(data bytea)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_base32_encode'
LANGUAGE C IMMUTABLE STRICT;

COMMENT ON FUNCTION mandant.base32_encode(bytea) IS
'RFC 4648 base32 without padding (how authenticator apps take secrets).';

CREATE FUNCTION mandant.secret_seal(secret bytea, owner uuid)
RETURNS bytea
AS 'MODULE_PATHNAME', 'mandant_secret_seal'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.secret_seal(bytea, uuid) IS
'Internal: seal a secret for an owner (AES-256-GCM under mandant.secret_key_file).';

CREATE FUNCTION mandant.totp_match(sealed bytea, owner uuid, code text, after_step bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_totp_match'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.totp_match(bytea, uuid, text, bigint) IS
'Internal: the step (now +/- 1) whose code matches and that is later than after_step, else NULL.';

CREATE FUNCTION mandant.rate_limit(key text, max integer, per interval)
RETURNS integer
AS 'MODULE_PATHNAME', 'mandant_rate_limit'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.rate_limit(text, integer, interval) IS
'Count one event for key; MD040 when max events already happened within per (sliding window, shared by all connections, not undone by rollback). Returns how many remain. Keys belong to the tenant of the transaction; without a tenant, to the platform (trusted backends and the gateway only).';

CREATE FUNCTION mandant.login_guard(keys text[], max integer, per interval)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_login_guard'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.login_guard(text[], integer, interval) IS
'Internal: MD040 when a key has max failures within per.';

CREATE FUNCTION mandant.login_failed_count(keys text[], per interval)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_login_failed_count'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.login_failed_count(text[], interval) IS
'Internal: count a failure for each key (survives rollback).';

CREATE FUNCTION mandant.login_reset(key text, per interval)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_login_reset'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.login_reset(text, interval) IS
'Internal: forget the failures of a key.';

CREATE FUNCTION mandant.defer_write(entry jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_defer_write'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION mandant.defer_write(jsonb) IS
'Internal: have mandant''s worker apply the entry (mandant.deferred_apply) in its own transaction, and wait for it.';

CREATE FUNCTION mandant.audit_log_for(tenant uuid, actor uuid, request_id text, category text,
									  action text, entity_type text, entity_id text, payload jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_audit_log_for'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb) IS
'Internal: write an application event for an explicit tenant (NULL: platform), actor and request id.';

REVOKE ALL ON FUNCTION mandant.jwt_sign(jsonb), mandant.jwt_verify(text), mandant.secret_seal(bytea, uuid),
	mandant.totp_match(bytea, uuid, text, bigint), mandant.login_guard(text[], integer, interval),
	mandant.login_failed_count(text[], interval), mandant.login_reset(text, interval),
	mandant.defer_write(jsonb), mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb)
	FROM PUBLIC;

/*
 * Password hashing through pgcrypto, wherever it is installed; the dummy
 * hash (of a random string nobody knows) lets a login for an unknown
 * e-mail cost one bcrypt like any other.
 */
DO $install$
DECLARE
	crypto name := (SELECT n.nspname FROM pg_catalog.pg_extension e
					JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
					WHERE e.extname = 'pgcrypto');
	dummy text;
BEGIN
	EXECUTE format('SELECT %1$I.crypt(mandant.random_token(32), %1$I.gen_salt(''bf'', 12))', crypto) INTO dummy;
	EXECUTE format($f$
		CREATE FUNCTION mandant.password_hash(password text) RETURNS text
		LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
		AS $b$ SELECT %1$I.crypt(password, %1$I.gen_salt('bf', 12)) $b$$f$, crypto);
	EXECUTE format($f$
		CREATE FUNCTION mandant.password_matches(password text, hash text) RETURNS boolean
		LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
		AS $b$ SELECT %1$I.crypt(COALESCE(password, ''), COALESCE(hash, %2$L)) = COALESCE(hash, '') $b$$f$,
		crypto, dummy);
END
$install$;

COMMENT ON FUNCTION mandant.password_hash(text) IS
'Internal: bcrypt (cost 12) of a password.';
COMMENT ON FUNCTION mandant.password_matches(text, text) IS
'Internal: whether a password matches a bcrypt hash; with no hash it costs the same and answers false.';
REVOKE ALL ON FUNCTION mandant.password_hash(text), mandant.password_matches(text, text) FROM PUBLIC;

/* ---- checks ----------------------------------------------------------------- */

/*
 * check_password raises unless a password is acceptable: 12 to 72 bytes
 * (bcrypt ignores what follows 72), not the e-mail.
 */
CREATE FUNCTION mandant.check_password(password text, email text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF password IS NULL OR length(password) < 12 THEN
		RAISE EXCEPTION 'password too short'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It has %s characters; at least 12 are required.', COALESCE(length(password), 0)),
				  HINT = 'Use a passphrase of several words.';
	END IF;
	IF octet_length(password) > 72 THEN
		RAISE EXCEPTION 'password too long'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It has %s bytes; bcrypt uses at most 72.', octet_length(password)),
				  HINT = 'Use at most 72 bytes (fewer characters outside ASCII).';
	END IF;
	IF lower(password) = lower(btrim(email)) THEN
		RAISE EXCEPTION 'password must not be the e-mail address'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The password equals the e-mail address.',
				  HINT = 'Choose a password nobody can guess from the account.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_password(text, text) IS
'Raise 22023 unless a password has at least 12 characters, at most 72 bytes (what bcrypt reads) and differs from the e-mail.';

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

/* ---- tokens ------------------------------------------------------------------ */

CREATE FUNCTION mandant.ttl_seconds(setting text)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT extract(epoch FROM current_setting(setting)::interval)::integer $$;

COMMENT ON FUNCTION mandant.ttl_seconds(text) IS
'Internal: a duration setting (mandant.access_token_ttl, mandant.refresh_token_ttl) in seconds.';

/*
 * issue_tokens creates an access token and a refresh token of family for a
 * user in a tenant (or none), and the answer login and refresh give.
 */
CREATE FUNCTION mandant.issue_tokens(account mandant.users, tenant uuid, family uuid)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t			mandant.tenant;
	member_role	text;
	scopes		text[] := '{}';
	ttl			integer := mandant.ttl_seconds('mandant.access_token_ttl');
	issued		bigint := floor(extract(epoch FROM clock_timestamp()));
	refresh		text := mandant.random_token(32);
	access		text;
BEGIN
	IF tenant IS NOT NULL THEN
		SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
		SELECT m.role INTO member_role FROM mandant.membership m
		WHERE m.tenant_id = tenant AND m.user_id = account.id;
		SELECT r.scopes INTO scopes FROM mandant.role r
		WHERE r.name = member_role AND (r.tenant_id = tenant OR r.tenant_id IS NULL)
		ORDER BY r.tenant_id NULLS LAST LIMIT 1;
	END IF;
	access := mandant.jwt_sign(jsonb_strip_nulls(jsonb_build_object(
		'iss', current_setting('mandant.jwt_issuer'),
		'sub', account.id,
		'typ', 'access',
		'tid', tenant,
		'tslug', t.slug,
		'role', member_role,
		'scopes', to_jsonb(COALESCE(scopes, '{}')),
		'jti', gen_random_uuid(),
		'sid', family,
		'ver', account.token_version,
		'iat', issued,
		'exp', issued + ttl)));
	INSERT INTO mandant.refresh_token (token_hash, family_id, expires_at)
	VALUES (sha256(convert_to(refresh, 'UTF8')), family,
			now() + make_interval(secs => mandant.ttl_seconds('mandant.refresh_token_ttl')));
	RETURN jsonb_build_object(
		'accessToken', access,
		'refreshToken', refresh,
		'tokenType', 'Bearer',
		'expiresIn', ttl,
		'tenant', CASE WHEN tenant IS NULL THEN NULL
					   ELSE jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name) END,
		'role', member_role,
		'user', jsonb_build_object('id', account.id, 'email', account.email,
								   'displayName', account.display_name));
END
$$;

COMMENT ON FUNCTION mandant.issue_tokens(mandant.users, uuid, uuid) IS
'Internal: a signed access token and a new refresh token of family, as login and refresh answer them.';

/*
 * deferred_apply is what mandant's worker runs for a write that must
 * outlive the caller's rollback (extension/deferred.c).
 */
CREATE FUNCTION mandant.deferred_apply(entry jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text := entry ->> 'kind';
BEGIN
	IF kind = 'login_failed' THEN
		INSERT INTO mandant.login_attempt (at, email, user_id, tenant_id, client_ip, success, reason, request_id)
		VALUES ((entry ->> 'at')::timestamptz, entry ->> 'email', (entry ->> 'userId')::uuid,
				(entry ->> 'tenantId')::uuid, (entry ->> 'clientIp')::inet, false,
				entry ->> 'reason', entry ->> 'requestId');
		PERFORM mandant.audit_log_for((entry ->> 'tenantId')::uuid, (entry ->> 'userId')::uuid,
									  entry ->> 'requestId', 'auth', entry ->> 'action', 'user',
									  entry ->> 'userId',
									  jsonb_strip_nulls(jsonb_build_object('login', entry ->> 'email',
																		   'clientIp', entry ->> 'clientIp',
																		   'reason', entry ->> 'reason')));
	ELSIF kind = 'family_revoked' THEN
		UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = entry ->> 'reason'
		WHERE f.id = (entry ->> 'familyId')::uuid AND f.revoked_at IS NULL;
		PERFORM mandant.audit_log_for((entry ->> 'tenantId')::uuid, (entry ->> 'userId')::uuid,
									  entry ->> 'requestId', 'auth', 'token.reuse_detected', 'user',
									  entry ->> 'userId',
									  jsonb_build_object('familyId', entry ->> 'familyId'));
	ELSE
		RAISE EXCEPTION 'unknown deferred write %', COALESCE(quote_literal(kind), 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.deferred_apply(jsonb) IS
'Internal: applies a write of mandant''s worker (failed logins, revoked refresh families).';

REVOKE ALL ON FUNCTION mandant.issue_tokens(mandant.users, uuid, uuid), mandant.deferred_apply(jsonb) FROM PUBLIC;

/*
 * login_failed records a failure where a rollback cannot undo it (the
 * counters in shared memory, the record through the worker), then raises.
 */
CREATE FUNCTION mandant.login_failed(keys text[], email text, account uuid, tenant uuid,
									 client_ip inet, reason text, code text, action text DEFAULT 'login.failed')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.login_failed_count(keys, '15 minutes');
	PERFORM mandant.defer_write(jsonb_build_object(
		'kind', 'login_failed', 'action', action, 'at', clock_timestamp(), 'email', left(email, 254),
		'userId', account, 'tenantId', tenant, 'clientIp', client_ip, 'reason', reason,
		'requestId', NULLIF(current_setting('app.request_id'), '')));
	IF code = 'MD054' THEN
		RAISE EXCEPTION 'a one-time code is required'
			USING ERRCODE = 'MD054',
				  DETAIL = 'The account has two-factor authentication on, and the code was missing or wrong.',
				  HINT = 'Pass the 6-digit code of the authenticator app as totp_code.';
	END IF;
	RAISE EXCEPTION 'invalid credentials'
		USING ERRCODE = 'MD050',
			  DETAIL = 'The e-mail address or the password is wrong, or the account is disabled.',
			  HINT = 'Check both and try again; repeated failures lock further attempts for 15 minutes.';
END
$$;

COMMENT ON FUNCTION mandant.login_failed(text[], text, uuid, uuid, inet, text, text, text) IS
'Internal: count and record a failed login (surviving the rollback), then raise MD050 or MD054.';

REVOKE ALL ON FUNCTION mandant.login_failed(text[], text, uuid, uuid, inet, text, text, text) FROM PUBLIC;

/*
 * login_address is the address a login attempt comes from: the client_ip
 * a trusted front end (the gateway, a trusted backend, a platform
 * administrator) passed the gate with, else the connection's own (NULL
 * over a Unix socket).  Anyone else could claim any address.
 */
CREATE FUNCTION mandant.login_address(client_ip inet)
RETURNS inet
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN client_ip IS NOT NULL AND (mandant.gate_caller_member_of('mandant_gateway')
												OR mandant.gate_caller_member_of('mandant_service')
												OR mandant.gate_caller_member_of('mandant_admin'))
				THEN client_ip ELSE inet_client_addr() END
$$;

COMMENT ON FUNCTION mandant.login_address(inet) IS
'Internal: where a login attempt comes from: client_ip when a trusted front end passed it, else the connection''s address.';

/*
 * login_keys returns the rate limit keys of a login attempt: the pair
 * (account, address), the address and the account.  An IPv6 address
 * counts as its /64 (one subscriber holds a whole /64).  Without an
 * address (a Unix socket, a pooler, a backend that did not pass one) the
 * pair and address keys are NULL: every such caller would share them, so
 * one of them could lock out all the others; only the account's ceiling
 * counts.
 */
CREATE FUNCTION mandant.login_keys(account text, address inet)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY['pair:' || account || '|' || a.origin, 'ip:' || a.origin, 'account:' || account]
	FROM (SELECT CASE WHEN family(address) = 6 THEN host(network(set_masklen(address, 64))) || '/64'
					  ELSE host(address) END AS origin) a
$$;

COMMENT ON FUNCTION mandant.login_keys(text, inet) IS
'Internal: the rate limit keys of a login attempt: (account, address), address (IPv6: its /64), account; NULL address keys when the address is unknown.';

/*
 * login_guard_keys raises MD040 when one of a login's keys has too many
 * failures within 15 minutes: mandant.login_lockout_pair (10) for the
 * account from one address, mandant.login_lockout_address (50) from one
 * address, mandant.login_lockout_account (100) for the account from
 * anywhere.
 */
CREATE FUNCTION mandant.login_guard_keys(keys text[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.login_guard(keys[1:1], current_setting('mandant.login_lockout_pair')::integer, '15 minutes');
	SELECT mandant.login_guard(keys[2:2], current_setting('mandant.login_lockout_address')::integer, '15 minutes');
	SELECT mandant.login_guard(keys[3:3], current_setting('mandant.login_lockout_account')::integer, '15 minutes');
$$;

COMMENT ON FUNCTION mandant.login_guard_keys(text[]) IS
'Internal: MD040 after mandant.login_lockout_pair (10) failures of an account from one address, mandant.login_lockout_address (50) from one address or mandant.login_lockout_account (100) of an account, within 15 minutes.';

REVOKE ALL ON FUNCTION mandant.login_address(inet), mandant.login_keys(text, inet),
	mandant.login_guard_keys(text[]) FROM PUBLIC;

/* ---- login, refresh, logout ------------------------------------------------ */

CREATE FUNCTION mandant.login(email text, password text, totp_code text DEFAULT NULL,
							  client_ip inet DEFAULT NULL, tenant_slug text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('login', NULL,
		jsonb_build_object('email', email, 'password', password, 'totpCode', totp_code,
						   'clientIp', client_ip, 'tenantSlug', tenant_slug))
$$;

CREATE FUNCTION mandant.identity_login(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	email		text := args ->> 'email';
	password	text := args ->> 'password';
	totp_code	text := args ->> 'totpCode';
	client_ip	inet := (args ->> 'clientIp')::inet;
	tenant_slug	text := args ->> 'tenantSlug';
	address		text := lower(btrim(email));
	keys		text[];
	account		mandant.users;
	matches		boolean;
	step		bigint;
	chosen		uuid;
	status		text;
	tenants		jsonb;
	family		uuid;
	answer		jsonb;
BEGIN
	IF email IS NULL OR address = '' OR length(email) > 254 THEN
		RAISE EXCEPTION 'invalid e-mail address'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The e-mail address is empty or longer than 254 characters (%s).', COALESCE(length(email), 0)),
				  HINT = 'Pass the address the account was created with.';
	END IF;
	IF password IS NULL OR password = '' OR octet_length(password) > 1024 THEN
		RAISE EXCEPTION 'invalid password'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The password is empty or longer than 1024 bytes.',
				  HINT = 'Pass the account''s password.';
	END IF;
	client_ip := mandant.login_address(client_ip);
	keys := mandant.login_keys(address, client_ip);
	PERFORM mandant.login_guard_keys(keys);

	SELECT * INTO account FROM mandant.users u WHERE lower(u.email) = address;
	matches := mandant.password_matches(password, account.password_hash);	-- one bcrypt, always
	IF account.id IS NULL OR NOT matches OR account.status <> 'active' THEN
		PERFORM mandant.login_failed(keys, address, account.id, NULL, client_ip,
									 CASE WHEN account.id IS NULL THEN 'unknown e-mail'
										  WHEN NOT matches THEN 'wrong password'
										  ELSE 'account disabled' END, 'MD050');
	END IF;

	IF account.totp_state = 'on' THEN
		IF totp_code IS NULL OR btrim(totp_code) = '' THEN
			RAISE EXCEPTION 'a one-time code is required'
				USING ERRCODE = 'MD054',
					  DETAIL = 'The account has two-factor authentication on.',
					  HINT = 'Pass the 6-digit code of the authenticator app as totp_code.';
		END IF;
		step := mandant.totp_match(account.totp_secret, account.id, btrim(totp_code), account.totp_last_step);
		IF step IS NULL THEN
			PERFORM mandant.login_failed(keys, address, account.id, NULL, client_ip,
										 'wrong one-time code', 'MD054');
		END IF;
		UPDATE mandant.users u SET totp_last_step = step WHERE u.id = account.id;
	END IF;

	SELECT jsonb_agg(jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name, 'role', m.role)
					 ORDER BY t.name, t.slug)
	INTO tenants
	FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
	WHERE m.user_id = account.id AND t.status IN ('active', 'pending', 'suspended');

	IF tenant_slug IS NOT NULL THEN
		SELECT t.id, t.status INTO chosen, status
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.slug = lower(tenant_slug);
		IF chosen IS NULL THEN
			RAISE EXCEPTION 'not a member of tenant "%"', tenant_slug
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'The account exists but has no membership in that tenant.',
					  HINT = 'Log in without a tenant to see the tenants of the account.';
		END IF;
	ELSE
		SELECT t.id, t.status INTO chosen, status
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.status IN ('active', 'pending')
		ORDER BY t.name, t.slug LIMIT 1;
	END IF;
	IF status = 'suspended' THEN
		RAISE EXCEPTION 'tenant "%" is suspended', tenant_slug
			USING ERRCODE = 'MD003',
				  DETAIL = 'Its data is kept but nobody can enter it.',
				  HINT = 'A platform administrator can resume the tenant.';
	ELSIF status NOT IN ('active', 'pending') THEN
		RAISE EXCEPTION 'tenant "%" is not available', tenant_slug
			USING ERRCODE = 'MD002',
				  DETAIL = format('Its status is %s.', status),
				  HINT = 'Only active tenants can be entered.';
	END IF;

	INSERT INTO mandant.refresh_family (user_id, tenant_id) VALUES (account.id, chosen) RETURNING id INTO family;
	answer := mandant.issue_tokens(account, chosen, family) || jsonb_build_object('tenants', COALESCE(tenants, '[]'));
	UPDATE mandant.users u SET last_login_at = now() WHERE u.id = account.id;
	INSERT INTO mandant.login_attempt (email, user_id, tenant_id, client_ip, success, request_id)
	VALUES (address, account.id, chosen, client_ip, true, NULLIF(current_setting('app.request_id'), ''));
	PERFORM mandant.audit_log_for(chosen, account.id, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'login.succeeded', 'user', account.id::text,
								  jsonb_strip_nulls(jsonb_build_object('clientIp', host(client_ip),
																	   'mfa', account.totp_state = 'on')));
	PERFORM mandant.login_reset(keys[1], '15 minutes');
	RETURN answer;
END
$$;

COMMENT ON FUNCTION mandant.login(text, text, text, inet, text) IS
'Log in: {accessToken, refreshToken, tokenType, expiresIn, tenant, role, user, tenants}. MD050 for a wrong e-mail, password or a disabled account alike (one bcrypt always runs); MD054 when the one-time code is missing or wrong; MD040 after 10 failures of the account from one address, 50 from one address or 100 of the account within 15 minutes. client_ip counts only when a trusted front end (mandant_gateway, mandant_service, mandant_admin) passes it. The tenant: tenant_slug, else the first by name.';

CREATE FUNCTION mandant.refresh(refresh_token text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hash	bytea := sha256(convert_to(COALESCE(refresh_token, ''), 'UTF8'));
	token	mandant.refresh_token;
	family	mandant.refresh_family;
	account	mandant.users;
BEGIN
	SELECT * INTO token FROM mandant.refresh_token r WHERE r.token_hash = hash;
	IF token.token_hash IS NULL THEN
		RAISE EXCEPTION 'invalid refresh token'
			USING ERRCODE = 'MD051',
				  DETAIL = 'No such refresh token.',
				  HINT = 'Log in again.';
	END IF;
	SELECT * INTO family FROM mandant.refresh_family f WHERE f.id = token.family_id;
	IF family.revoked_at IS NOT NULL THEN
		RAISE EXCEPTION 'refresh token revoked'
			USING ERRCODE = 'MD053',
				  DETAIL = format('Its session was revoked (%s).', COALESCE(family.revoked_reason, 'revoked')),
				  HINT = 'Log in again.';
	END IF;
	IF token.consumed_at IS NOT NULL THEN
		-- Presented again after rotation: someone else has a copy. Revoke
		-- the session where the rollback of this error cannot undo it.
		PERFORM mandant.defer_write(jsonb_build_object(
			'kind', 'family_revoked', 'familyId', family.id, 'userId', family.user_id,
			'tenantId', family.tenant_id, 'reason', 'refresh token reused',
			'requestId', NULLIF(current_setting('app.request_id'), '')));
		RAISE EXCEPTION 'refresh token reused'
			USING ERRCODE = 'MD053',
				  DETAIL = 'The token was already rotated; its whole session is revoked.',
				  HINT = 'Log in again.';
	END IF;
	IF token.expires_at <= now() THEN
		RAISE EXCEPTION 'refresh token expired'
			USING ERRCODE = 'MD052',
				  DETAIL = format('It expired at %s.', token.expires_at),
				  HINT = 'Log in again.';
	END IF;
	SELECT * INTO account FROM mandant.users u WHERE u.id = family.user_id;
	IF account.status <> 'active' THEN
		RAISE EXCEPTION 'refresh token revoked'
			USING ERRCODE = 'MD053',
				  DETAIL = 'The user is disabled.',
				  HINT = 'Ask an administrator.';
	END IF;
	IF family.tenant_id IS NOT NULL THEN
		PERFORM 1 FROM mandant.membership m WHERE m.tenant_id = family.tenant_id AND m.user_id = account.id;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'refresh token revoked'
				USING ERRCODE = 'MD053',
					  DETAIL = 'The user is no longer a member of the session''s tenant.',
					  HINT = 'Log in again.';
		END IF;
		PERFORM mandant.check_tenant_enterable(family.tenant_id);
	END IF;

	UPDATE mandant.refresh_token r SET consumed_at = now()
	WHERE r.token_hash = hash AND r.consumed_at IS NULL;
	IF NOT FOUND THEN
		-- a concurrent refresh with the same token won
		RAISE EXCEPTION 'refresh token reused'
			USING ERRCODE = 'MD053',
				  DETAIL = 'The token was rotated by a concurrent request.',
				  HINT = 'Use the tokens that request received, or log in again.';
	END IF;
	RETURN mandant.issue_tokens(account, family.tenant_id, family.id);
END
$$;

COMMENT ON FUNCTION mandant.refresh(text) IS
'Rotate a refresh token: a new pair, the old refresh token consumed. Presenting a rotated token again revokes its whole session (MD053).';

CREATE FUNCTION mandant.logout(access_token text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims jsonb := mandant.jwt_verify(access_token);
BEGIN
	INSERT INTO mandant.revoked_jti (jti, expires_at)
	VALUES ((claims ->> 'jti')::uuid, to_timestamp((claims ->> 'exp')::double precision))
	ON CONFLICT (jti) DO NOTHING;
	IF claims ? 'sid' THEN
		UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'logout'
		WHERE f.id = (claims ->> 'sid')::uuid AND f.revoked_at IS NULL;
	END IF;
	PERFORM mandant.audit_log_for((claims ->> 'tid')::uuid, (claims ->> 'sub')::uuid,
								  NULLIF(current_setting('app.request_id'), ''), 'auth', 'logout',
								  'user', claims ->> 'sub', '{}');
END
$$;

COMMENT ON FUNCTION mandant.logout(text) IS
'Revoke an access token until it expires (its jti goes on the denylist) and end its session (refresh family).';

/* ---- self-service ------------------------------------------------------------ */

CREATE FUNCTION mandant.change_password(old_password text, new_password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
	keys	text[];
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	keys := mandant.login_keys(lower(account.email), mandant.login_address(NULL));
	PERFORM mandant.login_guard_keys(keys);
	IF NOT mandant.password_matches(old_password, account.password_hash) THEN
		PERFORM mandant.login_failed(keys, lower(account.email),
									 me, mandant.current_tenant(), NULL, 'wrong password on change',
									 'MD050', 'password.change_failed');
	END IF;
	PERFORM mandant.check_password(new_password, account.email);
	UPDATE mandant.users u SET password_hash = mandant.password_hash(new_password),
		token_version = u.token_version + 1, updated_at = now()
	WHERE u.id = me;
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'password changed'
	WHERE f.user_id = me AND f.revoked_at IS NULL;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'password.changed', 'user', me::text, '{}');
END
$$;

COMMENT ON FUNCTION mandant.change_password(text, text) IS
'Change the signed-in user''s password (the old one is required); revokes every token of the user.';

/*
 * totp_attempt checks a one-time code of a signed-in user outside login
 * (confirming or disabling two-factor authentication): the step it
 * matches, or MD054 with detail and hint.  Wrong codes count like failed
 * logins, per user: after mandant.login_lockout_pair (10) within 15
 * minutes MD040, so that a stolen access token cannot try all 10^6 codes.
 */
CREATE FUNCTION mandant.totp_attempt(me uuid, sealed bytea, code text, after_step bigint,
									 detail text, hint text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keys	text[] := ARRAY['mfa:' || me];
	step	bigint;
BEGIN
	PERFORM mandant.login_guard(keys, current_setting('mandant.login_lockout_pair')::integer, '15 minutes');
	step := mandant.totp_match(sealed, me, btrim(code), after_step);
	IF step IS NULL THEN
		PERFORM mandant.login_failed_count(keys, '15 minutes');
		RAISE EXCEPTION 'wrong one-time code'
			USING ERRCODE = 'MD054', DETAIL = detail, HINT = hint;
	END IF;
	RETURN step;
END
$$;

COMMENT ON FUNCTION mandant.totp_attempt(uuid, bytea, text, bigint, text, text) IS
'Internal: the step a signed-in user''s one-time code matches, else MD054; wrong codes are counted and locked out like failed logins (MD040).';

REVOKE ALL ON FUNCTION mandant.totp_attempt(uuid, bytea, text, bigint, text, text) FROM PUBLIC;

CREATE FUNCTION mandant.identity_totp_enroll(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
	secret	bytea;
	encoded	text;
	issuer	text := current_setting('mandant.jwt_issuer');
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	IF account.totp_state = 'on' THEN
		RAISE EXCEPTION 'two-factor authentication is already on'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Enrolling again would replace a working secret.',
				  HINT = 'Call mandant.totp_disable(code) first.';
	END IF;
	secret := mandant.random_bytes(20);
	encoded := mandant.base32_encode(secret);
	UPDATE mandant.users u SET totp_state = 'pending', totp_secret = mandant.secret_seal(secret, me),
		totp_last_step = NULL, updated_at = now()
	WHERE u.id = me;
	RETURN jsonb_build_object(
		'secret', encoded,
		'uri', format('otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6&period=30',
					  replace(issuer, ' ', '%20'), account.email, encoded, replace(issuer, ' ', '%20')));
END
$$;

/*
 * Two-factor authentication is changed by the signed-in user only, in the
 * role that signed in (the gate's rule "signed in"): a SECURITY DEFINER
 * trigger of a table's owner, fired by the user's request, cannot enroll
 * the user with a secret of its own.
 */
CREATE FUNCTION mandant.totp_enroll()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('totp_enroll', NULL, '{}'); $$;

COMMENT ON FUNCTION mandant.totp_enroll() IS
'Start two-factor authentication for the signed-in user: a new secret (base32) and its otpauth:// URI; confirm with mandant.totp_confirm(code).';

CREATE FUNCTION mandant.identity_totp_confirm(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
	step	bigint;
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	IF account.totp_state <> 'pending' THEN
		RAISE EXCEPTION 'no two-factor enrollment to confirm'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Two-factor authentication is %s.', account.totp_state),
				  HINT = 'Call mandant.totp_enroll() first.';
	END IF;
	step := mandant.totp_attempt(me, account.totp_secret, args ->> 'code', NULL,
		'The code does not match the enrolled secret (the current 30-second step, or one either side).',
		'Check the device''s clock and enter the current code.');
	UPDATE mandant.users u SET totp_state = 'on', totp_last_step = step, updated_at = now() WHERE u.id = me;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'mfa.enabled', 'user', me::text, '{}');
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.totp_confirm(code text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('totp_confirm', NULL, jsonb_build_object('code', code)); $$;

COMMENT ON FUNCTION mandant.totp_confirm(text) IS
'Turn two-factor authentication on with a code of the enrolled secret.';

CREATE FUNCTION mandant.identity_totp_disable(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.require_user();
	account	mandant.users;
BEGIN
	SELECT * INTO account FROM mandant.users u WHERE u.id = me FOR UPDATE;
	IF account.totp_state <> 'on' THEN
		RAISE EXCEPTION 'two-factor authentication is not on'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('It is %s.', account.totp_state),
				  HINT = 'Nothing to disable.';
	END IF;
	PERFORM mandant.totp_attempt(me, account.totp_secret, args ->> 'code', account.totp_last_step,
		'Disabling needs a current code that was not used before.',
		'Enter the next code of the authenticator app.');
	UPDATE mandant.users u SET totp_state = 'off', totp_secret = NULL, totp_last_step = NULL, updated_at = now()
	WHERE u.id = me;
	PERFORM mandant.audit_log_for(mandant.current_tenant(), me, NULLIF(current_setting('app.request_id'), ''),
								  'auth', 'mfa.disabled', 'user', me::text, '{}');
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.totp_disable(code text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('totp_disable', NULL, jsonb_build_object('code', code)); $$;

COMMENT ON FUNCTION mandant.totp_disable(text) IS
'Turn two-factor authentication off; needs a current, unused code (wrong codes count like failed logins: MD040 after 10 within 15 minutes).';

/* ---- service accounts ---------------------------------------------------------- */

CREATE FUNCTION mandant.service_token(client_id text, client_secret text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account	mandant.service_account;
	keys	text[] := mandant.login_keys('client:' || COALESCE(left(client_id, 100), ''), mandant.login_address(NULL));
	ttl		integer := mandant.ttl_seconds('mandant.access_token_ttl');
	issued	bigint := floor(extract(epoch FROM clock_timestamp()));
	slug	text;
BEGIN
	PERFORM mandant.login_guard_keys(keys);
	SELECT * INTO account FROM mandant.service_account s WHERE s.client_id = service_token.client_id;
	IF account.id IS NULL OR account.status <> 'active'
		OR account.secret_hash <> sha256(convert_to(COALESCE(client_secret, ''), 'UTF8')) THEN
		PERFORM mandant.login_failed(keys, left(client_id, 100), NULL, account.tenant_id, NULL,
									 CASE WHEN account.id IS NULL THEN 'unknown client'
										  WHEN account.status <> 'active' THEN 'client disabled'
										  ELSE 'wrong secret' END, 'MD050', 'service_token.failed');
	END IF;
	IF account.tenant_id IS NOT NULL THEN
		PERFORM mandant.check_tenant_enterable(account.tenant_id);
		SELECT t.slug INTO slug FROM mandant.tenant t WHERE t.id = account.tenant_id;
	END IF;
	UPDATE mandant.service_account s SET last_used_at = now() WHERE s.id = account.id;
	RETURN jsonb_build_object(
		'accessToken', mandant.jwt_sign(jsonb_strip_nulls(jsonb_build_object(
			'iss', current_setting('mandant.jwt_issuer'), 'sub', account.id, 'typ', 'm2m',
			'tid', account.tenant_id, 'tslug', slug, 'scopes', to_jsonb(account.scopes),
			'jti', gen_random_uuid(), 'iat', issued, 'exp', issued + ttl))),
		'tokenType', 'Bearer',
		'expiresIn', ttl,
		'scopes', to_jsonb(account.scopes));
END
$$;

COMMENT ON FUNCTION mandant.service_token(text, text) IS
'Client credentials: an access token of type m2m with the service account''s scopes (MD050 for a wrong id or secret, MD040 after 10 failures per client in 15 minutes).';

/* ---- management (through the gate) ----------------------------------------------- */

CREATE FUNCTION mandant.check_tenant_enterable(tenant uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status text := (SELECT t.status FROM mandant.tenant t WHERE t.id = tenant);
BEGIN
	IF status IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.',
				  HINT = 'Check the tenant id.';
	ELSIF status = 'suspended' THEN
		RAISE EXCEPTION 'tenant "%" is suspended', tenant
			USING ERRCODE = 'MD003', DETAIL = 'Its data is kept but nobody can enter it.',
				  HINT = 'A platform administrator can resume the tenant.';
	ELSIF status NOT IN ('active', 'pending') THEN
		RAISE EXCEPTION 'tenant "%" is not available', tenant
			USING ERRCODE = 'MD002', DETAIL = format('Its status is %s.', status),
				  HINT = 'Only active tenants can be entered.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_tenant_enterable(uuid) IS
'Internal: MD002 or MD003 unless the tenant can be entered.';

/* The role of the signed-in user in a tenant, if any. */
CREATE FUNCTION mandant.actor_role(tenant uuid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m.role FROM mandant.membership m
	WHERE m.tenant_id = tenant AND m.user_id = mandant.current_user_id()
$$;

COMMENT ON FUNCTION mandant.actor_role(uuid) IS
'Internal: the role of the signed-in user in a tenant.';

/*
 * check_role raises unless role exists for tenant, and unless the actor
 * may hand it out: owner only by owners (or trusted callers).
 */
CREATE FUNCTION mandant.check_role(tenant uuid, role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.role r WHERE r.name = role AND (r.tenant_id = tenant OR r.tenant_id IS NULL)) THEN
		RAISE EXCEPTION 'role "%" does not exist', role
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Roles are owner, admin, manager, agent, viewer and those the tenant added.',
				  HINT = 'See mandant.role, or create the role with mandant.create_role().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_role(uuid, text) IS
'Internal: 22023 unless role exists for the tenant.';

/*
 * check_owner_change raises when an actor who is not an owner touches the
 * owner role (grants it, changes or removes an owner).  Trusted callers
 * (no signed-in user) may.
 */
CREATE FUNCTION mandant.check_owner_change(tenant uuid, old_role text, new_role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF 'owner' IN (old_role, new_role) AND mandant.current_user_id() IS NOT NULL
		AND mandant.actor_role(tenant) IS DISTINCT FROM 'owner' THEN
		RAISE EXCEPTION 'only owners grant or take the owner role'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The signed-in user is %s of the tenant.', COALESCE(mandant.actor_role(tenant), 'not a member')),
				  HINT = 'Ask an owner of the tenant.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_owner_change(uuid, text, text) IS
'Internal: 42501 when a non-owner grants, changes or removes the owner role.';

/*
 * keep_an_owner raises when no owner would be left.  The caller holds the
 * tenant's row lock, which serializes concurrent changes of its members.
 */
CREATE FUNCTION mandant.keep_an_owner(tenant uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.role = 'owner') THEN
		RAISE EXCEPTION 'a tenant keeps at least one owner'
			USING ERRCODE = 'check_violation',
				  DETAIL = format('The change would leave tenant %s without an owner.', tenant),
				  HINT = 'Make another member owner first.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.keep_an_owner(uuid) IS
'Internal: 23514 when the tenant has no owner.';

CREATE FUNCTION mandant.lock_tenant(tenant uuid)
RETURNS mandant.tenant
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t mandant.tenant;
BEGIN
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	RETURN t;
END
$$;

COMMENT ON FUNCTION mandant.lock_tenant(uuid) IS
'Internal: lock a tenant''s row (MD002 when there is none) so that changes of it and its members happen one at a time; returns the row. Inserts into its tables (key share) are not blocked.';

CREATE FUNCTION mandant.identity_create_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	address	text := mandant.check_email(args ->> 'email');
	name	text := btrim(args ->> 'displayName');
	new_id	uuid;
	vouched	boolean := mandant.gate_caller_member_of('mandant_admin')
					   OR mandant.gate_caller_member_of('mandant_service');
BEGIN
	IF name IS NULL OR length(name) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'invalid display name'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('A display name has 1 to 200 characters; this one has %s.', COALESCE(length(name), 0)),
				  HINT = 'Pass the name the user goes by.';
	END IF;
	PERFORM mandant.check_password(args ->> 'password', address);
	IF EXISTS (SELECT 1 FROM mandant.users u WHERE lower(u.email) = lower(address)) THEN
		RAISE EXCEPTION 'a user with this e-mail address exists'
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'E-mail addresses are unique, whatever their case.',
				  HINT = 'Add the existing user to the tenant with mandant.add_member().';
	END IF;
	INSERT INTO mandant.users (email, display_name, password_hash, email_confirmed_at)
	VALUES (address, name, mandant.password_hash(args ->> 'password'), CASE WHEN vouched THEN now() END)
	RETURNING id INTO new_id;
	PERFORM mandant.record_event(tenant, 'identity', 'user.created', 'user', new_id::text,
								  jsonb_build_object('email', address, 'by', caller));
	/* The platform vouches for the address: the owner named by a tenant joins it now. */
	IF vouched THEN
		PERFORM mandant.join_owned_tenants(new_id);
	END IF;
	RETURN to_jsonb(new_id);
END
$$;

/*
 * join_owned_tenants makes a user whose e-mail the platform vouched for
 * the owner of every tenant that names that e-mail as its owner and has
 * none yet.
 */
CREATE FUNCTION mandant.join_owned_tenants(account uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	joined uuid;
BEGIN
	FOR joined IN
		SELECT t.id FROM mandant.tenant t, mandant.users u
		WHERE u.id = account AND u.email_confirmed_at IS NOT NULL
		  AND lower(t.owner_email) = lower(u.email) AND t.status IN ('pending', 'active', 'suspended')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.role = 'owner')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.user_id = account)
		ORDER BY t.id
		FOR UPDATE OF t
	LOOP
		PERFORM mandant.consume(joined, 'users', 1);
		INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
		VALUES (joined, account, 'owner', 'owner_email');
		PERFORM mandant.record_event(joined, 'identity', 'member.added', 'user', account::text,
									 jsonb_build_object('role', 'owner', 'by', 'owner_email'));
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.join_owned_tenants(uuid) IS
'Internal: a user whose e-mail is confirmed becomes the owner of the tenants that name it as owner_email and have no owner.';

/*
 * identity_confirm_user_email: a trusted backend that verified the user's
 * address (a link sent to it was followed) vouches for it; the user then
 * owns the tenants that name it.
 */
CREATE FUNCTION mandant.identity_confirm_user_email(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET email_confirmed_at = now(), updated_at = now()
	WHERE u.id = account AND u.email_confirmed_at IS NULL;
	IF FOUND THEN
		PERFORM mandant.record_event(NULL, 'identity', 'email.confirmed', 'user', account::text,
									 jsonb_build_object('by', caller));
	END IF;
	PERFORM mandant.join_owned_tenants(account);
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_add_member(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	new_role	text := args ->> 'role';
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	PERFORM mandant.check_role(tenant, new_role);
	PERFORM mandant.check_owner_change(tenant, NULL, new_role);
	IF NOT EXISTS (SELECT 1 FROM mandant.users u WHERE u.id = member) THEN
		RAISE EXCEPTION 'user % does not exist', member
			USING ERRCODE = 'no_data_found', DETAIL = 'No row of mandant.users has that id.',
				  HINT = 'Create the user with mandant.create_user() first.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member) THEN
		RAISE EXCEPTION 'user % is already a member', member
			USING ERRCODE = 'unique_violation', DETAIL = 'A user has one role per tenant.',
				  HINT = 'Change the role with mandant.set_member_role().';
	END IF;
	PERFORM mandant.consume(tenant, 'users', 1);		-- MD030 past the plan's users
	INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
	VALUES (tenant, member, new_role, COALESCE(mandant.current_user_id()::text, caller));
	PERFORM mandant.record_event(tenant, 'identity', 'member.added', 'user', member::text,
								  jsonb_build_object('role', new_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_set_member_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	new_role	text := args ->> 'role';
	old_role	text;
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	PERFORM mandant.check_role(tenant, new_role);
	SELECT m.role INTO old_role FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	IF old_role IS NULL THEN
		RAISE EXCEPTION 'user % is not a member of tenant %', member, tenant
			USING ERRCODE = 'no_data_found', DETAIL = 'mandant.membership has no row for them.',
				  HINT = 'Add them with mandant.add_member().';
	END IF;
	PERFORM mandant.check_owner_change(tenant, old_role, new_role);
	UPDATE mandant.membership m SET role = new_role WHERE m.tenant_id = tenant AND m.user_id = member;
	PERFORM mandant.keep_an_owner(tenant);
	PERFORM mandant.record_event(tenant, 'identity', 'member.role_changed', 'user', member::text,
								  jsonb_build_object('from', old_role, 'to', new_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_remove_member(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	old_role	text;
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	SELECT m.role INTO old_role FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	IF old_role IS NULL THEN
		RAISE EXCEPTION 'user % is not a member of tenant %', member, tenant
			USING ERRCODE = 'no_data_found', DETAIL = 'mandant.membership has no row for them.',
				  HINT = 'See mandant.list_members().';
	END IF;
	PERFORM mandant.check_owner_change(tenant, old_role, NULL);
	PERFORM mandant.consume(tenant, 'users', -1);
	DELETE FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	PERFORM mandant.keep_an_owner(tenant);
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'removed from tenant'
	WHERE f.user_id = member AND f.tenant_id = tenant AND f.revoked_at IS NULL;
	PERFORM mandant.record_event(tenant, 'identity', 'member.removed', 'user', member::text,
								  jsonb_build_object('role', old_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_create_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name	text := args ->> 'name';
	role_scopes	text[] := ARRAY(SELECT jsonb_array_elements_text(args -> 'scopes'));
BEGIN
	IF EXISTS (SELECT 1 FROM mandant.role r WHERE r.tenant_id IS NULL AND r.name = role_name) THEN
		RAISE EXCEPTION 'role "%" is a system role', role_name
			USING ERRCODE = 'unique_violation', DETAIL = 'owner, admin, manager, agent and viewer are defined by mandant.',
				  HINT = 'Choose another name.';
	END IF;
	IF role_name IS NULL OR role_name !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid role name %', COALESCE(quote_literal(role_name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A role name has 1 to 63 characters: a-z first, then a-z, 0-9, ''_'' or ''-''.',
				  HINT = 'For example ''auditor''.';
	END IF;
	IF NOT role_scopes <@ ARRAY['read', 'write', 'delete', 'admin'] OR cardinality(role_scopes) = 0 THEN
		RAISE EXCEPTION 'invalid scopes for role "%"', role_name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The scopes were %s; a tenant role holds some of read, write, delete, admin.', role_scopes),
				  HINT = 'For example ''{read,write}''.';
	END IF;
	BEGIN
		INSERT INTO mandant.role (tenant_id, name, scopes, description)
		VALUES (tenant, role_name, role_scopes, args ->> 'description');
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'role "%" exists', role_name
			USING ERRCODE = 'unique_violation', DETAIL = 'Role names are unique per tenant.', HINT = 'Choose another name.';
	END;
	PERFORM mandant.record_event(tenant, 'identity', 'role.created', 'role', role_name,
								  jsonb_build_object('scopes', role_scopes, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_drop_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name text := args ->> 'name';
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	IF EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.role = role_name) THEN
		RAISE EXCEPTION 'role "%" is in use', role_name
			USING ERRCODE = 'dependent_objects_still_exist', DETAIL = 'Members of the tenant hold it.',
				  HINT = 'Give them another role first.';
	END IF;
	DELETE FROM mandant.role r WHERE r.tenant_id = tenant AND r.name = role_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'role "%" does not exist in this tenant', role_name
			USING ERRCODE = 'no_data_found', DETAIL = 'System roles cannot be dropped.', HINT = 'See mandant.role.';
	END IF;
	PERFORM mandant.record_event(tenant, 'identity', 'role.dropped', 'role', role_name, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_create_service_account(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	scopes	text[] := ARRAY(SELECT jsonb_array_elements_text(args -> 'scopes'));
	secret	text := mandant.random_token(32);
	client	text := 'sa-' || encode(sha256(convert_to(mandant.random_token(16), 'UTF8')), 'hex');
	new_id	uuid;
BEGIN
	IF tenant IS NOT NULL AND 'internal' = ANY (scopes) THEN
		RAISE EXCEPTION 'scope internal is for platform service accounts'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A tenant''s service account holds some of read, write, delete, admin.',
				  HINT = 'Create it without a tenant, as a platform administrator.';
	END IF;
	IF NOT scopes <@ ARRAY['read', 'write', 'delete', 'admin', 'internal'] OR cardinality(scopes) = 0 THEN
		RAISE EXCEPTION 'invalid scopes for a service account'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The scopes were %s.', scopes),
				  HINT = 'Use some of read, write, delete, admin (and internal for platform accounts).';
	END IF;
	client := left(client, 27);
	INSERT INTO mandant.service_account (client_id, secret_hash, name, tenant_id, scopes, created_by)
	VALUES (client, sha256(convert_to(secret, 'UTF8')), btrim(COALESCE(args ->> 'name', '')), tenant, scopes,
			COALESCE(mandant.current_user_id()::text, caller))
	RETURNING id INTO new_id;
	PERFORM mandant.record_event(tenant, 'identity', 'service_account.created', 'service_account', new_id::text,
								  jsonb_build_object('name', args ->> 'name', 'scopes', scopes, 'by', caller));
	RETURN jsonb_build_object('id', new_id, 'clientId', client, 'clientSecret', secret, 'scopes', scopes);
END
$$;

CREATE FUNCTION mandant.identity_disable_service_account(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'id')::uuid;
BEGIN
	UPDATE mandant.service_account s SET status = 'disabled'
	WHERE s.id = account AND s.tenant_id IS NOT DISTINCT FROM tenant;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'service account % does not exist here', account
			USING ERRCODE = 'no_data_found', DETAIL = 'No service account of this tenant has that id.',
				  HINT = 'Platform accounts are disabled without a tenant.';
	END IF;
	PERFORM mandant.record_event(tenant, 'identity', 'service_account.disabled', 'service_account', account::text,
								  jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

/* revoke_tokens_of: every token of a user stops working. */
CREATE FUNCTION mandant.revoke_tokens_of(account uuid, reason text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE mandant.users u SET token_version = u.token_version + 1, updated_at = now() WHERE u.id = account;
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = reason
	WHERE f.user_id = account AND f.revoked_at IS NULL;
$$;

COMMENT ON FUNCTION mandant.revoke_tokens_of(uuid, text) IS
'Internal: raise the user''s token version (access tokens fail) and revoke every refresh family.';

CREATE FUNCTION mandant.check_user_exists(account uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.users u WHERE u.id = account) THEN
		RAISE EXCEPTION 'user % does not exist', account
			USING ERRCODE = 'no_data_found', DETAIL = 'No row of mandant.users has that id.', HINT = 'Check the id.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_user_exists(uuid) IS
'Internal: P0002 unless the user exists.';

CREATE FUNCTION mandant.identity_disable_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET status = 'disabled', updated_at = now() WHERE u.id = account;
	PERFORM mandant.revoke_tokens_of(account, 'user disabled');
	PERFORM mandant.record_event(NULL, 'identity', 'user.disabled', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_enable_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET status = 'active', updated_at = now() WHERE u.id = account;
	PERFORM mandant.record_event(NULL, 'identity', 'user.enabled', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_reset_password(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
	address text;
BEGIN
	PERFORM mandant.check_user_exists(account);
	SELECT u.email INTO address FROM mandant.users u WHERE u.id = account;
	PERFORM mandant.check_password(args ->> 'password', address);
	UPDATE mandant.users u SET password_hash = mandant.password_hash(args ->> 'password'), updated_at = now()
	WHERE u.id = account;
	PERFORM mandant.revoke_tokens_of(account, 'password reset');
	PERFORM mandant.record_event(NULL, 'identity', 'password.reset', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_revoke_user_tokens(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	IF account = mandant.current_user_id() THEN
		PERFORM mandant.revoke_tokens_of(account, 'signed out everywhere');
		PERFORM mandant.audit_log_for(mandant.current_tenant(), account, NULLIF(current_setting('app.request_id'), ''),
									  'identity', 'tokens.revoked', 'user', account::text, '{}');
	ELSE
		PERFORM mandant.revoke_tokens_of(account, 'revoked');
		PERFORM mandant.record_event(NULL, 'identity', 'tokens.revoked', 'user', account::text,
									 jsonb_build_object('by', caller));
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_purge_tokens(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	jtis		bigint;
	refreshes	bigint;
BEGIN
	DELETE FROM mandant.revoked_jti j WHERE j.expires_at < now() - interval '1 minute';
	GET DIAGNOSTICS jtis = ROW_COUNT;
	DELETE FROM mandant.refresh_token r WHERE r.expires_at < now();
	GET DIAGNOSTICS refreshes = ROW_COUNT;
	DELETE FROM mandant.refresh_family f
	WHERE NOT EXISTS (SELECT 1 FROM mandant.refresh_token r WHERE r.family_id = f.id);
	RETURN jsonb_build_object('revokedJtis', jtis, 'refreshTokens', refreshes);
END
$$;

DO $revoke$
DECLARE
	fn regprocedure;
BEGIN
	FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE 'identity\_%'
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn,
					   'Internal: an identity operation, run by mandant.gate_call() after it checked the caller.');
	END LOOP;
END
$revoke$;

REVOKE ALL ON FUNCTION mandant.revoke_tokens_of(uuid, text), mandant.lock_tenant(uuid), mandant.join_owned_tenants(uuid) FROM PUBLIC;

/* ---- the public management API ----------------------------------------------- */

CREATE FUNCTION mandant.create_user(email text, password text, display_name text)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (mandant.gate_call('create_user', mandant.current_tenant(),
		jsonb_build_object('email', email, 'password', password, 'displayName', display_name)) #>> '{}')::uuid
$$;

COMMENT ON FUNCTION mandant.create_user(text, text, text) IS
'Create a user (password: at least 12 characters, at most 72 bytes, not the e-mail; bcrypt cost 12). For trusted backends, mandant_admin, and tenant administrators (then add them with add_member). Returns the id.';

CREATE FUNCTION mandant.add_member(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('add_member', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.add_member(uuid, uuid, text) IS
'Add a user to a tenant in a role. For the tenant''s administrators inside the tenant, trusted backends there and mandant_admin; the owner role only by owners.';

CREATE FUNCTION mandant.set_member_role(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('set_member_role', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.set_member_role(uuid, uuid, text) IS
'Change a member''s role (the tenant keeps at least one owner; owners change owners). Tokens issued for the old role stop working.';

CREATE FUNCTION mandant.remove_member(tenant uuid, user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('remove_member', tenant, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.remove_member(uuid, uuid) IS
'Remove a member (not the last owner); their sessions in the tenant end.';

CREATE FUNCTION mandant.create_role(name text, scopes text[], description text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_role', mandant.current_tenant(),
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes), 'description', description));
$$;

COMMENT ON FUNCTION mandant.create_role(text, text[], text) IS
'Add a role to the current tenant with a subset of read, write, delete, admin.';

CREATE FUNCTION mandant.drop_role(name text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('drop_role', mandant.current_tenant(), jsonb_build_object('name', name)); $$;

COMMENT ON FUNCTION mandant.drop_role(text) IS
'Drop a role of the current tenant that nobody holds.';

CREATE FUNCTION mandant.disable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('disable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.disable_user(uuid) IS
'Disable a user everywhere and revoke all their tokens. For trusted backends and mandant_admin.';

CREATE FUNCTION mandant.enable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('enable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.enable_user(uuid) IS
'Enable a disabled user again (their old tokens stay revoked).';

CREATE FUNCTION mandant.reset_password(user_id uuid, new_password text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('reset_password', NULL, jsonb_build_object('userId', user_id, 'password', new_password)); $$;

COMMENT ON FUNCTION mandant.reset_password(uuid, text) IS
'Set a user''s password (the reset flow of a trusted backend, or mandant_admin); revokes all their tokens.';

CREATE FUNCTION mandant.revoke_user_tokens(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('revoke_user_tokens', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.revoke_user_tokens(uuid) IS
'Revoke every token of a user: the signed-in user for themselves, trusted backends and mandant_admin for anyone.';

CREATE FUNCTION mandant.confirm_user_email(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('confirm_user_email', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.confirm_user_email(uuid) IS
'Vouch for a user''s e-mail address (after the trusted backend verified it): the user becomes owner of the tenants that name the address as owner_email and have no owner. Trusted backends and mandant_admin only; users created by them are confirmed already.';

CREATE FUNCTION mandant.create_service_account(name text, scopes text[], tenant uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_service_account', tenant,
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes)));
$$;

COMMENT ON FUNCTION mandant.create_service_account(text, text[], uuid) IS
'Create a service account: {id, clientId, clientSecret, scopes}. The secret is shown once (stored as SHA-256). Tenant accounts by the tenant''s administrators; platform accounts (scope internal allowed) by mandant_admin.';

CREATE FUNCTION mandant.disable_service_account(id uuid, tenant uuid DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('disable_service_account', tenant, jsonb_build_object('id', id)); $$;

COMMENT ON FUNCTION mandant.disable_service_account(uuid, uuid) IS
'Disable a service account; its tokens stop working at once.';

CREATE FUNCTION mandant.purge_tokens()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('purge_tokens', NULL, '{}'); $$;

COMMENT ON FUNCTION mandant.purge_tokens() IS
'Delete expired denylist entries, refresh tokens and empty sessions; schedule it daily.';

CREATE FUNCTION mandant.list_members()
RETURNS TABLE (user_id uuid, email text, display_name text, role text, status text, mfa boolean,
			   joined_at timestamptz, last_login_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant uuid := mandant.require_tenant();
BEGIN
	IF NOT (mandant.has_scope('read') OR mandant.has_scope('admin')) THEN
		RAISE EXCEPTION 'permission denied to list the members of tenant %', tenant
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The transaction holds scopes %s.', mandant.current_scopes()),
				  HINT = 'Listing members needs scope read.';
	END IF;
	RETURN QUERY
	SELECT u.id, u.email, u.display_name, m.role, u.status, u.totp_state = 'on', m.created_at, u.last_login_at
	FROM mandant.membership m JOIN mandant.users u ON u.id = m.user_id
	WHERE m.tenant_id = tenant
	ORDER BY lower(u.email);
END
$$;

COMMENT ON FUNCTION mandant.list_members() IS
'The members of the current tenant (needs scope read). Never returns secrets.';
