
/* ---------------------------------------------------------------------------
 * HTTP gateway (extension/httproute.c, httpargs.c, httpanswer.c, httpcall.c)
 *
 * A route maps a method and a path template to a function.  The gateway
 * (shim/) hands every request to mandant.http_call(), which matches the
 * route, resolves the tenant, authenticates the bearer token, maps the
 * arguments and calls the function as the gateway's role, in one
 * statement.  Registering a route grants EXECUTE on its function to
 * mandant_gateway; removing the last route of a function revokes it.
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.http_route (
	method			text NOT NULL
					CONSTRAINT http_route_method
						CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
	path			text NOT NULL
					CONSTRAINT http_route_path
						CHECK (path ~ '^(/([A-Za-z0-9._~-]+|\{[a-z][A-Za-z0-9]*\}))+$'),
	function		regprocedure NOT NULL,
	required_scope	text
					CONSTRAINT http_route_scope
						CHECK (required_scope IN ('read', 'write', 'delete', 'admin', 'internal')),
	public			boolean NOT NULL DEFAULT false,
	paginated		boolean NOT NULL DEFAULT false,
	summary			text,
	envelope		boolean NOT NULL DEFAULT true,
	builtin			boolean NOT NULL DEFAULT false,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by		name NOT NULL,
	PRIMARY KEY (method, path),
	CONSTRAINT http_route_public_scope CHECK (NOT (public AND required_scope IS NOT NULL))
);

COMMENT ON TABLE mandant.http_route IS
'Routes of the HTTP gateway: method and path template ({param} segments) to a function, with the scope it requires, whether it is public and paginated, and whether its answer is the envelope or the function''s JSON as it is (written by mandant.http_route() through the gate; builtin rows come with the extension).';

ALTER TABLE mandant.http_route ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_route_read ON mandant.http_route FOR SELECT USING (true);
GRANT SELECT ON mandant.http_route TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.http_route', 'WHERE NOT builtin');

CREATE FUNCTION mandant.camel_case(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'mandant_camel_case'
LANGUAGE C IMMUTABLE STRICT;

COMMENT ON FUNCTION mandant.camel_case(text) IS
'Internal: the camelCase JSON name of an argument or column (note_id: noteId), the dispatcher''s own rule (httproute.c).';

CREATE FUNCTION mandant.http_routes_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_http_routes_changed'
LANGUAGE C;

COMMENT ON FUNCTION mandant.http_routes_changed() IS
'Internal: statement trigger of mandant.http_route; every backend reloads its routes after commit.';

REVOKE ALL ON FUNCTION mandant.http_routes_changed() FROM PUBLIC;

CREATE TRIGGER http_routes_changed
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.http_route
FOR EACH STATEMENT EXECUTE FUNCTION mandant.http_routes_changed();

CREATE FUNCTION mandant.http_route(method text, path text, function regprocedure,
								   required_scope text DEFAULT NULL, public boolean DEFAULT false,
								   paginated boolean DEFAULT false, summary text DEFAULT NULL,
								   envelope boolean DEFAULT true)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('http_route', NULL, jsonb_build_object(
		'function', function::oid, 'method', method, 'path', path,
		'requiredScope', required_scope, 'public', public, 'paginated', paginated,
		'summary', summary, 'envelope', envelope));
$$;

COMMENT ON FUNCTION mandant.http_route(text, text, regprocedure, text, boolean, boolean, text, boolean) IS
'Route method and path (e.g. ''/v1/notes/{noteId}'') of the HTTP gateway to function: its arguments come by camelCase name from path, query and JSON body; the call needs a token with required_scope unless public; a paginated function returns a set; without envelope the answer is the function''s JSON as it is. Replaces the route of the same method and path. Grants EXECUTE on the function to mandant_gateway. The function''s owner or mandant_admin.';

CREATE FUNCTION mandant.drop_http_route(method text, path text)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN r.function IS NULL THEN false
				ELSE (mandant.gate_call('drop_http_route', NULL, jsonb_build_object(
						  'function', r.function::oid, 'method', r.method, 'path', r.path)) ->> 'dropped')::boolean
		   END
	FROM (SELECT NULL) n
	LEFT JOIN mandant.http_route r ON r.method = drop_http_route.method AND r.path = drop_http_route.path;
$$;

COMMENT ON FUNCTION mandant.drop_http_route(text, text) IS
'Remove the route of method and path; returns whether there was one. Revokes EXECUTE on its function from mandant_gateway when no other route calls it. The function''s owner or mandant_admin.';

/*
 * registry_http_route: http_route's privileged half, run by the gate for
 * the function's owner and mandant_admin.  Checks what the dispatcher
 * needs of the function before anything is written.
 */
CREATE FUNCTION mandant.registry_http_route(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fn			regprocedure := (args ->> 'function')::oid::regprocedure;
	method		text := upper(args ->> 'method');
	path		text := args ->> 'path';
	scope		text := args ->> 'requiredScope';
	is_public	boolean := COALESCE((args ->> 'public')::boolean, false);
	paginated	boolean := COALESCE((args ->> 'paginated')::boolean, false);
	envelope	boolean := COALESCE((args ->> 'envelope')::boolean, true);
	p			pg_proc;
	in_names	text[];
	param		text;
	other		text;
	other_owner	text;
BEGIN
	SELECT * INTO p FROM pg_proc WHERE oid = fn;
	IF p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
		OR (p.pronamespace = 'mandant'::regnamespace AND NOT has_function_privilege('public', fn, 'EXECUTE')) THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'System functions and mandant''s internal functions are not served over HTTP.',
				  HINT = 'Route a function of your application, or one of mandant''s public functions.';
	END IF;
	IF NOT has_function_privilege(caller, fn, 'EXECUTE') THEN
		RAISE EXCEPTION 'role "%" may not execute function %', caller, fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A route lets the gateway call the function; you may route only what you may call.',
				  HINT = format('Ask the owner of %s to grant you EXECUTE, or to route it.', fn);
	END IF;
	IF p.provariadic <> 0 OR p.pronargs > 64 THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'It is variadic or takes more than 64 arguments.',
				  HINT = 'Route a function with at most 64 named arguments.';
	END IF;
	SELECT array_agg(n ORDER BY i) INTO in_names
	FROM unnest(COALESCE(p.proargnames, array_fill(''::text, ARRAY[p.pronargs])),
				COALESCE(p.proargmodes, array_fill('i'::"char", ARRAY[p.pronargs]))) WITH ORDINALITY AS a(n, m, i)
	WHERE m IN ('i', 'b');
	IF p.pronargs > 0 AND (in_names IS NULL OR '' = ANY (in_names)
		OR EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) t(oid) JOIN pg_type y ON y.oid = t.oid
				   WHERE y.typtype = 'p')) THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'Every argument must have a name and a concrete type (no polymorphic or pseudo-types).',
				  HINT = 'Name the arguments: the gateway maps camelCase keys to them.';
	END IF;
	IF p.prokind <> 'f' OR (p.prorettype = 'record'::regtype
		AND NOT COALESCE(p.proargmodes && ARRAY['o', 'b', 't']::"char"[], false)) THEN
		RAISE EXCEPTION 'function % cannot be routed', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'It is a procedure, an aggregate or a window function, or it returns record without naming its columns.',
				  HINT = 'Route a plain function; give a function returning record OUT parameters or RETURNS TABLE.';
	END IF;
	IF ARRAY['access_token', 'refresh_token'] && in_names
		AND NOT pg_has_role(caller, 'mandant_admin', 'USAGE') THEN
		RAISE EXCEPTION 'function % takes the request''s credentials', fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The gateway fills access_token and refresh_token with the bearer token and the refresh cookie of whoever calls the route.',
				  HINT = 'Only a platform administrator (mandant_admin) routes such a function.';
	END IF;
	IF paginated AND NOT p.proretset THEN
		RAISE EXCEPTION 'function % returns no set', fn
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A paginated route pages through the rows its function returns.',
				  HINT = 'Route a set-returning function, or pass paginated => false.';
	END IF;
	IF is_public AND scope IS NOT NULL THEN
		RAISE EXCEPTION 'a public route requires no scope'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The route was given public => true and required_scope => %L.', scope),
				  HINT = 'Drop one of them: public routes are called without a token.';
	END IF;
	IF path !~ '^(/([A-Za-z0-9._~-]+|\{[a-z][A-Za-z0-9]*\}))+$' THEN
		RAISE EXCEPTION 'invalid route path "%"', path
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A path is one or more /segments of letters, digits and ._~- or {parameter} in camelCase.',
				  HINT = 'Write e.g. ''/v1/notes/{noteId}''.';
	END IF;
	FOR param IN SELECT m[1] FROM regexp_matches(path, '\{([A-Za-z0-9]+)\}', 'g') AS m
	LOOP
		/* the dispatcher's match: an argument's camelCase name, or its own */
		IF NOT EXISTS (SELECT 1 FROM unnest(in_names) n WHERE param IN (n, mandant.camel_case(n))) THEN
			RAISE EXCEPTION 'path parameter "%" is not an argument of function %', param, fn
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('The function''s arguments are %s.', COALESCE(array_to_string(in_names, ', '), 'none')),
					  HINT = 'Name each {parameter} after an argument, in camelCase (note_id: {noteId}).';
		END IF;
	END LOOP;
	IF (SELECT count(*) FROM regexp_matches(path, '\{([A-Za-z0-9]+)\}', 'g'))
		<> (SELECT count(DISTINCT m[1]) FROM regexp_matches(path, '\{([A-Za-z0-9]+)\}', 'g') AS m) THEN
		RAISE EXCEPTION 'path "%" names a parameter twice', path
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Each {parameter} fills one argument.',
				  HINT = 'Name every parameter once.';
	END IF;

	/*
	 * Another role's route: a route of the same method that matches a path
	 * this one matches (the same path, or one that differs only where
	 * either has a {parameter}) belongs to the owner of its function (or,
	 * if that is gone, to the role that created it); only that owner and
	 * mandant_admin may replace or shadow it.
	 */
	SELECT r.method || ' ' || r.path, COALESCE(o.rolname, r.created_by) INTO other, other_owner
	FROM mandant.http_route r
	LEFT JOIN pg_proc f ON f.oid = r.function
	LEFT JOIN pg_roles o ON o.oid = f.proowner
	WHERE r.method = upper(args ->> 'method')
	  AND NOT pg_has_role(caller, 'mandant_admin', 'USAGE')
	  AND NOT COALESCE((SELECT pg_has_role(caller, x.oid, 'USAGE') FROM pg_roles x
						WHERE x.rolname = COALESCE(o.rolname, r.created_by)), false)
	  AND array_length(string_to_array(r.path, '/'), 1)
		  = array_length(string_to_array(args ->> 'path', '/'), 1)
	  AND NOT EXISTS (SELECT 1 FROM unnest(string_to_array(r.path, '/'),
										   string_to_array(args ->> 'path', '/')) AS s(a, b)
					  WHERE a <> b AND a NOT LIKE '{%}' AND b NOT LIKE '{%}')
	LIMIT 1;
	IF other IS NOT NULL THEN
		RAISE EXCEPTION 'route % belongs to role "%"', other, other_owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('%s %s would replace it or take requests meant for it.', method, path),
				  HINT = 'Choose another path, or ask its owner or a platform administrator.';
	END IF;

	/* a builtin route that is replaced becomes the database's own (pg_dump keeps it) */
	INSERT INTO mandant.http_route AS r (method, path, function, required_scope, public, paginated,
										 summary, envelope, created_by)
	VALUES (method, path, fn, scope, is_public, paginated, args ->> 'summary', envelope, caller)
	ON CONFLICT ON CONSTRAINT http_route_pkey DO UPDATE
	SET function = EXCLUDED.function, required_scope = EXCLUDED.required_scope,
		public = EXCLUDED.public, paginated = EXCLUDED.paginated, summary = EXCLUDED.summary,
		envelope = EXCLUDED.envelope, builtin = false,
		created_at = EXCLUDED.created_at, created_by = EXCLUDED.created_by;
	PERFORM mandant.http_route_grants();
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.registry_drop_http_route(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped	boolean;
BEGIN
	DELETE FROM mandant.http_route r
	WHERE r.method = args ->> 'method' AND r.path = args ->> 'path'
	  AND r.function = (args ->> 'function')::oid::regprocedure;
	dropped := FOUND;
	PERFORM mandant.http_route_grants();
	RETURN jsonb_build_object('dropped', dropped);
END
$$;

/*
 * http_route_grants makes mandant_gateway's rights match the routes:
 * EXECUTE on every routed function and USAGE on its schema, granted when
 * the gateway lacks them and remembered in http_route_grant, so that they
 * are revoked again when the last route that needed them is dropped.
 */
CREATE TABLE mandant.http_route_grant (
	kind		text NOT NULL CONSTRAINT http_route_grant_kind CHECK (kind IN ('function', 'schema')),
	object		oid NOT NULL,
	PRIMARY KEY (kind, object)
);

COMMENT ON TABLE mandant.http_route_grant IS
'Rights mandant.http_route() granted to mandant_gateway: EXECUTE on routed functions, USAGE on their schemas (revoked when no route needs them).';

ALTER TABLE mandant.http_route_grant ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('mandant.http_route_grant', '');

CREATE FUNCTION mandant.http_route_grants()
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g	record;
BEGIN
	FOR g IN
		SELECT DISTINCT 'function' AS kind, r.function::oid AS object FROM mandant.http_route r
		UNION
		SELECT DISTINCT 'schema', p.pronamespace FROM mandant.http_route r JOIN pg_proc p ON p.oid = r.function
	LOOP
		CONTINUE WHEN EXISTS (SELECT 1 FROM mandant.http_route_grant x WHERE (x.kind, x.object) = (g.kind, g.object));
		IF g.kind = 'function' AND NOT has_function_privilege('mandant_gateway', g.object, 'EXECUTE') THEN
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO mandant_gateway', g.object::regprocedure);
			INSERT INTO mandant.http_route_grant (kind, object) VALUES (g.kind, g.object);
		ELSIF g.kind = 'schema' AND NOT has_schema_privilege('mandant_gateway', g.object, 'USAGE') THEN
			EXECUTE format('GRANT USAGE ON SCHEMA %s TO mandant_gateway', g.object::regnamespace);
			INSERT INTO mandant.http_route_grant (kind, object) VALUES (g.kind, g.object);
		END IF;
	END LOOP;
	FOR g IN
		DELETE FROM mandant.http_route_grant x
		WHERE NOT EXISTS (SELECT 1 FROM mandant.http_route r JOIN pg_proc p ON p.oid = r.function
						  WHERE CASE x.kind WHEN 'function' THEN r.function::oid ELSE p.pronamespace END = x.object)
		RETURNING x.kind, x.object
	LOOP
		IF g.kind = 'function' AND EXISTS (SELECT 1 FROM pg_proc WHERE oid = g.object) THEN
			EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM mandant_gateway', g.object::regprocedure);
		ELSIF g.kind = 'schema' AND EXISTS (SELECT 1 FROM pg_namespace WHERE oid = g.object) THEN
			EXECUTE format('REVOKE USAGE ON SCHEMA %s FROM mandant_gateway', g.object::regnamespace);
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.http_route_grants() IS
'Internal: grant mandant_gateway EXECUTE on routed functions and USAGE on their schemas; revoke what only dropped routes needed.';

REVOKE ALL ON FUNCTION mandant.http_route_grants() FROM PUBLIC;

CREATE FUNCTION mandant.http_call(request jsonb, request_body text DEFAULT NULL,
								  OUT status integer, OUT headers jsonb, OUT body text,
								  OUT route text, OUT tenant_id uuid)
RETURNS record
AS 'MODULE_PATHNAME', 'mandant_http_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.http_call(jsonb, text) IS
'Answer one HTTP request (method, path, query, host, tenant, token, cookie, requestId, traceId, clientIp; body as text) in one statement: route, tenant, token, scope, arguments, call, envelope. Outside a transaction block; not as a trusted role. mandant_gateway only.';

REVOKE ALL ON FUNCTION mandant.http_call(jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.http_call(jsonb, text) TO mandant_gateway;
