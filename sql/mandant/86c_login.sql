
/* ---------------------------------------------------------------------------
 * Passwords and login
 *
 * Passwords are bcrypt (cost 12, pgcrypto).  Failed logins are counted per
 * (account, address), per address and per account by mandant's worker
 * (defer_write/deferred_apply), so that the count survives the refusal's
 * rollback and one address cannot lock an account out for everyone; the
 * address is the client_ip a trusted front end passes (mandant_gateway,
 * mandant_service, mandant_admin), else the address of the connection.
 * rate_limit() is the same sliding window, for the application.
 *
 * Functions whose arguments carry a secret (passwords, client secrets,
 * tokens) run with log_min_error_statement = panic, so that the server log
 * keeps no STATEMENT line of their failures: a SET clause on the SECURITY
 * DEFINER functions called directly, the gate for login, create_user and
 * reset_password (gate.c), whose refusals come before any SET clause.
 * ------------------------------------------------------------------------- */

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
	IF action = 'service_token.failed' THEN
		RAISE EXCEPTION 'invalid client credentials'
			USING ERRCODE = 'MD050',
				  DETAIL = 'The client id or the client secret is wrong, or the service account is disabled.',
				  HINT = 'Check both and try again; repeated failures lock further attempts for 15 minutes.';
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
		SELECT t.id INTO chosen
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.slug = lower(tenant_slug);
		IF chosen IS NULL THEN
			RAISE EXCEPTION 'not a member of tenant "%"', tenant_slug
				USING ERRCODE = 'MD055',
					  DETAIL = 'The account has no membership in a tenant of that slug, or no tenant has it.',
					  HINT = 'Check the slug for typos, or log in without tenant_slug: the answer lists the tenants of the account.';
		END IF;
	ELSE
		SELECT t.id INTO chosen
		FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
		WHERE m.user_id = account.id AND t.status IN ('active', 'pending')
		ORDER BY t.name, t.slug LIMIT 1;
	END IF;
	IF chosen IS NOT NULL THEN
		PERFORM mandant.check_tenant_enterable(chosen);
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

CREATE FUNCTION mandant.change_password(old_password text, new_password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
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

REVOKE ALL ON FUNCTION mandant.login_guard(text[], integer, interval),
	mandant.login_failed_count(text[], interval), mandant.login_reset(text, interval),
	mandant.defer_write(jsonb), mandant.deferred_apply(jsonb) FROM PUBLIC;
