
/* ---------------------------------------------------------------------------
 * Tokens: access tokens (RS256 JWT), refresh tokens in families, the jti
 denylist, and random tokens
 *
 * authenticate() verifies an access token and sets the context (C, see
 * the JWT files of extension/); login and refresh issue tokens
 * (issue_tokens), refresh rotates a family's refresh token and revokes the
 * whole family when a used one comes back, logout puts the access token's
 * jti on the denylist and ends the family.  Refresh tokens are stored as
 * SHA-256 (256 random bits each); the signing key stays in a file.
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.authenticate(token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_authenticate'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.authenticate(text) IS
'Verify an access token (RS256, issuer, times with 30 s leeway, not revoked, user active with a current token version and still in the role, tenant enterable) and set tenant, user and scopes for the transaction. MD051 invalid, MD052 expired, MD053 revoked, MD003 suspended tenant.';

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

CREATE FUNCTION mandant.refresh(refresh_token text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
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
SET log_min_error_statement = panic
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

CREATE FUNCTION mandant.revoke_user_tokens(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('revoke_user_tokens', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.revoke_user_tokens(uuid) IS
'Revoke every token of a user: the signed-in user for themselves, trusted backends and mandant_admin for anyone.';

CREATE FUNCTION mandant.purge_tokens()
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('purge_tokens', NULL, '{}'); $$;

COMMENT ON FUNCTION mandant.purge_tokens() IS
'Delete expired denylist entries, refresh tokens and empty sessions; schedule it daily.';

REVOKE ALL ON FUNCTION mandant.jwt_sign(jsonb), mandant.jwt_verify(text),
	mandant.issue_tokens(mandant.users, uuid, uuid), mandant.revoke_tokens_of(uuid, text) FROM PUBLIC;
