
/* ---------------------------------------------------------------------------
 * Two-factor authentication (TOTP, RFC 6238)
 *
 * A signed-in user enrolls (a secret sealed with AES-256-GCM under the
 * server's key file, bound to the account), confirms with a first code and
 * may disable it again with a code.  Codes are matched within one step of
 * drift and never twice (totp_last_step); wrong codes count like failed
 * logins.
 * ------------------------------------------------------------------------- */

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

REVOKE ALL ON FUNCTION mandant.secret_seal(bytea, uuid), mandant.totp_match(bytea, uuid, text, bigint) FROM PUBLIC;
