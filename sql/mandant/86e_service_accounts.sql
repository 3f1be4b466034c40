
/* ---------------------------------------------------------------------------
 * Service accounts: machine clients with a client id and secret
 *
 * service_token() is the client-credentials grant: an access token of type
 * m2m with the account's scopes.  Client secrets are stored as SHA-256
 * (256 random bits each) and shown once, at creation.
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.service_token(client_id text, client_secret text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
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
