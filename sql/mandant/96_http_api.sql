
/* ---------------------------------------------------------------------------
 * The platform's HTTP API: routes that come with the extension
 *
 * Sign-in, the signed-in user, self-service sign-up, members,
 * configuration, the audit trail, the outbox for platform workers, the
 * signing keys and the OpenAPI document.  Most routes call mandant's
 * public functions directly; the mandant.api_* functions below adapt the
 * others to HTTP (the tenant comes from the token, not from an argument).
 * They are SECURITY INVOKER unless they say otherwise: the gateway's role
 * calls them with the context its request's token set, and the functions
 * they call check that context as they would for any caller.
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.api_logout(access_token text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.logout(access_token);
	SELECT jsonb_build_object('loggedOut', true, 'refreshToken', NULL::text);
$$;

COMMENT ON FUNCTION mandant.api_logout(text) IS
'POST /api/v1/auth/logout: revoke the access token and its session (mandant.logout); the gateway clears the refresh cookie.';

/*
 * api_me describes the signed-in user or service account: user, tenant,
 * role and scopes of the token.  SECURITY DEFINER to read the user's and
 * the tenant's rows; it reads only the context's own.
 */
CREATE FUNCTION mandant.api_me()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		uuid := mandant.current_user_id();
	here	uuid := mandant.current_tenant();
	u		mandant.users;
	t		mandant.tenant;
BEGIN
	IF me IS NULL AND here IS NULL THEN
		RAISE EXCEPTION 'nobody is signed in'
			USING ERRCODE = 'MD051',
				  DETAIL = 'The transaction has neither a user nor a tenant.',
				  HINT = 'Call mandant.authenticate(access_token) first.';
	END IF;
	SELECT * INTO u FROM mandant.users x WHERE x.id = me;
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = here;
	RETURN jsonb_build_object(
		'user', CASE WHEN me IS NULL THEN NULL
					 ELSE jsonb_build_object('id', u.id, 'email', u.email, 'displayName', u.display_name,
											 'mfa', u.totp_state = 'on') END,
		'tenant', CASE WHEN here IS NULL THEN NULL
					   ELSE jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name, 'status', t.status) END,
		'role', (SELECT m.role FROM mandant.membership m WHERE m.tenant_id = here AND m.user_id = me),
		'scopes', to_jsonb(mandant.current_scopes()));
END
$$;

COMMENT ON FUNCTION mandant.api_me() IS
'GET /api/v1/auth/me: the signed-in user (none for a service account), the tenant, the role and the scopes of the transaction''s context.';

/*
 * api_sign_up is self-service sign-up: a new account and a new tenant it
 * owns, for anyone, rate-limited per client address.  The tenant goes
 * through the provisioning saga like any other (pending until its
 * provisioning completes when mandant.provisioning = 'external').  The
 * platform does not vouch for the address: the account owns the tenant it
 * signed up, and nothing else (a tenant that names the address as its
 * owner is joined only once a trusted backend confirms the address,
 * mandant.confirm_user_email).  SECURITY DEFINER: it creates the account
 * and the tenant as the platform would; everything else comes from its
 * arguments.
 */
CREATE FUNCTION mandant.api_sign_up(slug text, name text, email text, password text,
									display_name text, client_ip inet DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	account	uuid;
	tenant	uuid;
	t		mandant.tenant;
BEGIN
	PERFORM mandant.rate_limit('sign_up:' || COALESCE(host(client_ip), 'unknown'),
							   COALESCE(current_setting('mandant.sign_ups_per_address', true), '5')::integer,
							   '1 hour');
	PERFORM mandant.check_tenant_slug(slug);
	/* not through the gate: nobody vouches for the address */
	account := mandant.identity_create_user(NULL, jsonb_build_object(
		'email', email, 'password', password, 'displayName', display_name), 'sign_up') #>> '{}';
	tenant := mandant.op_create_tenant(slug, name, email);
	PERFORM mandant.consume(tenant, 'users', 1);
	INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
	VALUES (tenant, account, 'owner', 'sign_up');
	PERFORM mandant.record_event(tenant, 'identity', 'member.added', 'user', account::text,
								 jsonb_build_object('role', 'owner', 'by', 'sign_up'));
	SELECT * INTO t FROM mandant.tenant x WHERE x.id = tenant;
	RETURN jsonb_build_object(
		'tenant', jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name, 'status', t.status),
		'user', jsonb_build_object('id', account, 'email', email));
END
$$;

COMMENT ON FUNCTION mandant.api_sign_up(text, text, text, text, text, inet) IS
'POST /api/v1/tenants: self-service sign-up, a new account that owns a new tenant (through the provisioning saga; the address stays unconfirmed); at most mandant.sign_ups_per_address (default 5) per hour from one address (MD040). Anyone.';

CREATE FUNCTION mandant.api_add_member(user_id uuid, role text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.add_member(mandant.require_tenant(), user_id, role);
	SELECT jsonb_build_object('userId', user_id, 'role', role);
$$;

COMMENT ON FUNCTION mandant.api_add_member(uuid, text) IS
'POST /api/v1/members: make a user a member of the current tenant (mandant.add_member).';

CREATE FUNCTION mandant.api_set_member_role(user_id uuid, role text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.set_member_role(mandant.require_tenant(), user_id, role);
	SELECT jsonb_build_object('userId', user_id, 'role', role);
$$;

COMMENT ON FUNCTION mandant.api_set_member_role(uuid, text) IS
'PATCH /api/v1/members/{userId}: change a member''s role in the current tenant (mandant.set_member_role).';

CREATE FUNCTION mandant.api_remove_member(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.remove_member(mandant.require_tenant(), user_id); $$;

COMMENT ON FUNCTION mandant.api_remove_member(uuid) IS
'DELETE /api/v1/members/{userId}: remove a member from the current tenant (mandant.remove_member).';

CREATE FUNCTION mandant.api_config_get(service text, key text,
									   OUT value jsonb, OUT version bigint, OUT scope text)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	SELECT c.value, c.version, c.scope INTO value, version, scope
	FROM mandant.config_get_all(service) c WHERE c.key = api_config_get.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'configuration key %.% is not set', service, key
			USING ERRCODE = 'no_data_found',
				  DETAIL = 'Neither the tenant nor the platform set it.',
				  HINT = 'Set it with PUT, or use the default of your service.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.api_config_get(text, text) IS
'GET /api/v1/config/{service}/{key}: the value the current tenant sees, its version (for If-Match) and whether it is the tenant''s or global; 404 when unset.';

CREATE FUNCTION mandant.api_config_put(service text, key text, value jsonb, reason text,
									   expected_version bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_build_object('version', mandant.config_set(service, key, value, reason, expected_version));
$$;

COMMENT ON FUNCTION mandant.api_config_put(text, text, jsonb, text, bigint) IS
'PUT /api/v1/config/{service}/{key}: set the current tenant''s value (mandant.config_set); If-Match gives expected_version, a stale one is 409 VERSION_CONFLICT.';

CREATE FUNCTION mandant.api_audit(since timestamptz DEFAULT '-infinity', entity_type text DEFAULT NULL,
								  entity_id text DEFAULT NULL, action text DEFAULT NULL)
RETURNS TABLE (id bigint, occurred_at timestamptz, category text, action text, entity_type text,
			   entity_id text, actor_user_id uuid, request_id text, changes jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.id, a.occurred_at, a.category, a.action, a.entity_type, a.entity_id, a.actor_user_id,
		   a.request_id, a.changes
	FROM mandant.audit_event a
	WHERE a.tenant_id = mandant.require_tenant()
	  AND a.occurred_at >= api_audit.since
	  AND (api_audit.entity_type IS NULL OR a.entity_type = api_audit.entity_type)
	  AND (api_audit.entity_id IS NULL OR a.entity_id = api_audit.entity_id)
	  AND (api_audit.action IS NULL OR a.action = api_audit.action)
	ORDER BY a.id DESC
$$;

COMMENT ON FUNCTION mandant.api_audit(timestamptz, text, text, text) IS
'GET /api/v1/audit: the current tenant''s audit events, newest first, filtered by time, entity and action (row level security keeps them the tenant''s own).';

/*
 * The outbox over HTTP is for the platform's workers: a service account
 * of no tenant with scope internal (a tenant's service account would see
 * every tenant's events).  SECURITY DEFINER: it runs the claim as a
 * trusted backend would, after checking the token's context.
 */
CREATE FUNCTION mandant.api_require_platform_worker()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF mandant.current_tenant() IS NOT NULL OR mandant.current_user_id() IS NOT NULL
		OR NOT mandant.has_scope('internal') THEN
		RAISE EXCEPTION 'permission denied for the outbox'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The token is for %s with scopes %s.',
								  CASE WHEN mandant.current_user_id() IS NOT NULL THEN 'a user'
									   WHEN mandant.current_tenant() IS NOT NULL THEN 'a tenant''s service account'
									   ELSE 'a platform service account' END,
								  mandant.current_scopes()),
				  HINT = 'Use the token of a service account of no tenant with scope internal (mandant.create_service_account(name, ''{internal}'')).';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.api_require_platform_worker() IS
'Internal: refuse unless the context is a platform service account''s token with scope internal.';

CREATE FUNCTION mandant.api_outbox_claim(consumer text, max integer DEFAULT 100,
										 lease interval DEFAULT '30 seconds')
RETURNS TABLE (id bigint, event_id uuid, topic text, tenant_id uuid, aggregate_id text,
			   attempts integer, envelope jsonb, headers jsonb)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.api_require_platform_worker();
	RETURN QUERY SELECT * FROM mandant.op_outbox_claim(consumer, max, lease);
END
$$;

COMMENT ON FUNCTION mandant.api_outbox_claim(text, integer, interval) IS
'POST /internal/v1/outbox/claim: lease pending events for a consumer (mandant.outbox_claim); a platform service account with scope internal only.';

CREATE FUNCTION mandant.api_outbox_ack(ids bigint[])
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.api_require_platform_worker();
	RETURN jsonb_build_object('acknowledged', mandant.op_outbox_ack(ids));
END
$$;

COMMENT ON FUNCTION mandant.api_outbox_ack(bigint[]) IS
'POST /internal/v1/outbox/ack: mark claimed events delivered (mandant.outbox_ack); a platform service account with scope internal only.';

/*
 * openapi_type is the JSON schema of values of a PostgreSQL type, as the
 * gateway reads and writes them.
 */
CREATE FUNCTION mandant.openapi_type(t regtype)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN y.typcategory = 'A' THEN jsonb_build_object('type', 'array', 'items', mandant.openapi_type(y.typelem))
		WHEN b.oid IN ('int2'::regtype, 'int4'::regtype) THEN '{"type": "integer", "format": "int32"}'
		WHEN b.oid = 'int8'::regtype THEN '{"type": "integer", "format": "int64"}'
		WHEN b.typcategory = 'N' THEN '{"type": "number"}'
		WHEN b.oid = 'bool'::regtype THEN '{"type": "boolean"}'
		WHEN b.oid IN ('json'::regtype, 'jsonb'::regtype) THEN '{}'
		WHEN b.oid = 'uuid'::regtype THEN '{"type": "string", "format": "uuid"}'
		WHEN b.oid IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN '{"type": "string", "format": "date-time"}'
		WHEN b.oid = 'date'::regtype THEN '{"type": "string", "format": "date"}'
		WHEN b.oid = 'interval'::regtype THEN '{"type": "string", "format": "duration"}'
		ELSE '{"type": "string"}'
	END::jsonb
	FROM pg_type y JOIN pg_type b ON b.oid = CASE WHEN y.typtype = 'd' THEN y.typbasetype ELSE y.oid END
	WHERE y.oid = t
$$;

COMMENT ON FUNCTION mandant.openapi_type(regtype) IS
'Internal: the JSON schema of a type''s values in the gateway''s requests and answers.';

/*
 * openapi() is the OpenAPI 3.1 document of the routes: paths and their
 * parameters (path, query) and JSON bodies with the types the gateway
 * reads, the scope each needs, summaries (the route's, else the first
 * sentence of COMMENT ON FUNCTION), and the envelope and error schemas.
 * SECURITY DEFINER for its internal helpers; it reads only the catalog
 * and mandant.http_route, which everyone may read.
 */
CREATE FUNCTION mandant.openapi()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	paths		jsonb := '{}';
	r			record;
	op			jsonb;
	params		jsonb;
	props		jsonb;
	required	text[];
	a			record;
	in_path		text[];
	is_write	boolean;
BEGIN
	FOR r IN
		SELECT h.*, p.proname, p.pronargs, p.pronargdefaults,
			   ARRAY(SELECT t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS x(t, i) ORDER BY i) AS types,
			   COALESCE(p.proargnames, '{}') AS names, p.proargmodes AS modes,
			   obj_description(p.oid, 'pg_proc') AS comment
		FROM mandant.http_route h JOIN pg_proc p ON p.oid = h.function
		ORDER BY h.path, h.method
	LOOP
		in_path := ARRAY(SELECT m[1] FROM regexp_matches(r.path, '\{([A-Za-z0-9]+)\}', 'g') AS m);
		is_write := r.method IN ('POST', 'PUT', 'PATCH');
		params := '[]';
		props := '{}';
		required := '{}';
		FOR a IN
			SELECT q.n AS name, mandant.camel_case(q.n) AS camel, r.types[q.k]::regtype AS type,
				   q.k > r.pronargs - r.pronargdefaults AS has_default
			FROM (SELECT u.n, row_number() OVER (ORDER BY u.i) AS k
				  FROM unnest(r.names, COALESCE(r.modes, array_fill('i'::"char", ARRAY[cardinality(r.names)])))
					   WITH ORDINALITY AS u(n, m, i)
				  WHERE u.m IN ('i', 'b')) q
			WHERE q.n NOT IN ('client_ip', 'tenant_slug', 'access_token', 'refresh_token')
		LOOP
			IF a.camel = ANY (in_path) THEN
				params := params || jsonb_build_object('name', a.camel, 'in', 'path', 'required', true,
													   'schema', mandant.openapi_type(a.type));
			ELSIF is_write THEN
				props := props || jsonb_build_object(a.camel, mandant.openapi_type(a.type));
				IF NOT a.has_default THEN
					required := required || a.camel;
				END IF;
			ELSE
				params := params || jsonb_build_object('name', a.camel, 'in', 'query', 'required', NOT a.has_default,
													   'schema', mandant.openapi_type(a.type));
			END IF;
		END LOOP;
		IF r.paginated THEN
			params := params
				|| '{"name": "page", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}}'
				|| '{"name": "pageSize", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100}}';
		END IF;
		op := jsonb_build_object(
			'operationId', lower(r.method) || regexp_replace(r.path, '[^A-Za-z0-9]+', '_', 'g'),
			'summary', COALESCE(r.summary, substring(r.comment FROM '^[^.]*'), r.proname),
			'parameters', params,
			'responses', jsonb_build_object(
				'200', jsonb_build_object('description', 'Success',
					'content', jsonb_build_object('application/json', jsonb_build_object('schema',
						CASE WHEN NOT r.envelope THEN '{"type": "object"}'::jsonb
							 WHEN r.paginated THEN '{"$ref": "#/components/schemas/Page"}'::jsonb
							 ELSE '{"$ref": "#/components/schemas/Success"}'::jsonb END))),
				'4XX', '{"description": "Refused: the request, the token or the data (error.code says which)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}'::jsonb,
				'default', '{"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}'::jsonb));
		IF is_write THEN
			op := op || jsonb_build_object('requestBody', jsonb_build_object('required', cardinality(required) > 0,
				'content', jsonb_build_object('application/json', jsonb_build_object('schema',
					jsonb_build_object('type', 'object', 'additionalProperties', false, 'properties', props)
					|| CASE WHEN cardinality(required) > 0 THEN jsonb_build_object('required', to_jsonb(required))
							ELSE '{}' END))));
		END IF;
		IF r.public THEN
			op := op || '{"security": []}';
		ELSE
			/* OpenAPI 3.1 lets any scheme name the scopes it needs */
			op := op || jsonb_build_object('security', jsonb_build_array(jsonb_build_object('bearer',
						   CASE WHEN r.required_scope IS NULL THEN '[]'::jsonb
								ELSE jsonb_build_array(r.required_scope) END)))
				|| CASE WHEN r.required_scope IS NULL THEN '{}'
						ELSE jsonb_build_object('x-required-scope', r.required_scope) END;
		END IF;
		paths := jsonb_set(paths, ARRAY[r.path], COALESCE(paths -> r.path, '{}') || jsonb_build_object(lower(r.method), op));
	END LOOP;
	RETURN jsonb_build_object(
		'openapi', '3.1.0',
		'info', jsonb_build_object('title', 'mandant', 'version',
								   (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'mandant'),
								   'description', 'The HTTP API of mandant and of the application routes registered with mandant.http_route.'),
		'servers', '[{"url": "/"}]'::jsonb,
		'paths', paths,
		'components', jsonb_build_object(
			'securitySchemes', '{"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}'::jsonb,
			'schemas', jsonb_build_object(
				'Meta', '{"type": "object", "required": ["timestamp", "requestId"], "properties": {"timestamp": {"type": "string", "format": "date-time"}, "requestId": {"type": "string"}}}'::jsonb,
				'Success', '{"type": "object", "required": ["success", "data", "meta"], "properties": {"success": {"const": true}, "data": {}, "meta": {"$ref": "#/components/schemas/Meta"}}}'::jsonb,
				'Page', '{"type": "object", "required": ["success", "data", "pagination", "meta"], "properties": {"success": {"const": true}, "data": {"type": "array"}, "pagination": {"type": "object", "required": ["page", "pageSize", "total", "totalPages"], "properties": {"page": {"type": "integer"}, "pageSize": {"type": "integer"}, "total": {"type": "integer"}, "totalPages": {"type": "integer"}}}, "meta": {"$ref": "#/components/schemas/Meta"}}}'::jsonb,
				'Error', '{"type": "object", "required": ["success", "error", "meta"], "properties": {"success": {"const": false}, "error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}, "hint": {"type": "string"}}}, "meta": {"$ref": "#/components/schemas/Meta"}}}'::jsonb)));
END
$$;

COMMENT ON FUNCTION mandant.openapi() IS
'GET /api/v1/openapi.json: the OpenAPI 3.1 document of every route of mandant.http_route (parameters and bodies with their types, scopes, summaries, envelope and error schemas).';

/* The routes that come with the extension (builtin: pg_dump leaves them out). */
INSERT INTO mandant.http_route (method, path, function, required_scope, public, paginated, summary,
								envelope, builtin, created_by) VALUES
	('POST', '/api/v1/auth/login', 'mandant.login(text,text,text,inet,text)', NULL, true, false,
	 'Sign in with e-mail and password (and a one-time code); the refresh token comes as a cookie', true, true, 'mandant'),
	('POST', '/api/v1/auth/refresh', 'mandant.refresh(text)', NULL, true, false,
	 'New tokens for the refresh cookie, which is rotated', true, true, 'mandant'),
	('POST', '/api/v1/auth/token', 'mandant.service_token(text,text)', NULL, true, false,
	 'A service account''s access token for its client id and secret', true, true, 'mandant'),
	('POST', '/api/v1/auth/logout', 'mandant.api_logout(text)', NULL, false, false,
	 'Sign out: the token and its session stop working, the cookie is cleared', true, true, 'mandant'),
	('GET', '/api/v1/auth/me', 'mandant.api_me()', NULL, false, false,
	 'The signed-in user, tenant, role and scopes', true, true, 'mandant'),
	('POST', '/api/v1/auth/totp/enroll', 'mandant.totp_enroll()', NULL, false, false,
	 'Start enrolling a second factor (TOTP)', true, true, 'mandant'),
	('POST', '/api/v1/auth/totp/confirm', 'mandant.totp_confirm(text)', NULL, false, false,
	 'Confirm the second factor with a one-time code', true, true, 'mandant'),
	('POST', '/api/v1/tenants', 'mandant.api_sign_up(text,text,text,text,text,inet)', NULL, true, false,
	 'Sign up: a new account that owns a new tenant', true, true, 'mandant'),
	('GET', '/api/v1/members', 'mandant.list_members()', 'read', false, true,
	 'The members of the tenant', true, true, 'mandant'),
	('POST', '/api/v1/members', 'mandant.api_add_member(uuid,text)', 'admin', false, false,
	 'Add a member', true, true, 'mandant'),
	('PATCH', '/api/v1/members/{userId}', 'mandant.api_set_member_role(uuid,text)', 'admin', false, false,
	 'Change a member''s role', true, true, 'mandant'),
	('DELETE', '/api/v1/members/{userId}', 'mandant.api_remove_member(uuid)', 'admin', false, false,
	 'Remove a member', true, true, 'mandant'),
	('GET', '/api/v1/config/{service}/{key}', 'mandant.api_config_get(text,text)', 'read', false, false,
	 'A configuration value, its version and scope', true, true, 'mandant'),
	('PUT', '/api/v1/config/{service}/{key}', 'mandant.api_config_put(text,text,jsonb,text,bigint)', 'admin', false, false,
	 'Set a configuration value (If-Match: the version it replaces)', true, true, 'mandant'),
	('GET', '/api/v1/audit', 'mandant.api_audit(timestamptz,text,text,text)', 'admin', false, true,
	 'The tenant''s audit events, newest first', true, true, 'mandant'),
	('POST', '/internal/v1/outbox/claim', 'mandant.api_outbox_claim(text,integer,interval)', 'internal', false, false,
	 'Lease pending outbox events (platform workers)', true, true, 'mandant'),
	('POST', '/internal/v1/outbox/ack', 'mandant.api_outbox_ack(bigint[])', 'internal', false, false,
	 'Mark leased events delivered (platform workers)', true, true, 'mandant'),
	('GET', '/.well-known/jwks.json', 'mandant.jwks()', NULL, true, false,
	 'The public keys that verify access tokens (JWKS)', false, true, 'mandant'),
	('GET', '/api/v1/openapi.json', 'mandant.openapi()', NULL, true, false,
	 'This document', false, true, 'mandant');
