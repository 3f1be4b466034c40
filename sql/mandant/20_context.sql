
/* ---------------------------------------------------------------------------
 * Tenant context (extension/context.c)
 *
 * app.current_tenant, app.current_user_id and app.current_scopes can only be
 * set through these functions; every other way (SET, set_config, ALTER ROLE
 * ... SET, PGOPTIONS) is refused with 42501.  All settings are
 * transaction-local.
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.set_tenant(tenant_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION mandant.set_tenant(uuid) IS
'Enter a tenant for the rest of the transaction (members of mandant_service or mandant_admin only). Clears user and scopes. MD002 if unknown, MD003 if suspended.';

CREATE FUNCTION mandant.set_scopes(scopes text[])
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_scopes'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION mandant.set_scopes(text[]) IS
'Set the scopes of a trusted backend acting as itself, for the rest of the transaction (read, write, delete, admin, internal). Members of mandant_service or mandant_admin only.';

CREATE FUNCTION mandant.current_tenant()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_current_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.current_tenant() IS
'The tenant of the current transaction, or NULL when none is set.';

CREATE FUNCTION mandant.current_user_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_current_user_id'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.current_user_id() IS
'The end user of the current transaction, or NULL when none is set.';

CREATE FUNCTION mandant.current_scopes()
RETURNS text[]
AS 'MODULE_PATHNAME', 'mandant_current_scopes'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.current_scopes() IS
'The scopes held in the current transaction; an empty array when none.';

CREATE FUNCTION mandant.has_scope(scope text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_has_scope'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION mandant.has_scope(text) IS
'True when the current transaction holds the scope; an unknown scope name is an error (22023).';

CREATE FUNCTION mandant.require_tenant()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_require_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.require_tenant() IS
'The tenant of the current transaction; raises MD001 (TENANT_REQUIRED) when none is set.';

CREATE FUNCTION mandant.tenant_filter()
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_tenant_filter'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.tenant_filter() IS
'The USING side of tenant tables'' policies: the tenant of the transaction, NULL (no rows) without one; MD001 instead with mandant.strict_context on, except for trusted backends.';

CREATE FUNCTION mandant.row_in_tenant(tenant uuid, tbl text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_row_in_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION mandant.row_in_tenant(uuid, text) IS
'The WITH CHECK of tenant tables'' policies: true for a row of the transaction''s tenant; MD001 with no tenant, 42501 naming the table (tbl, its name as text) and both tenants for another tenant''s row.';

CREATE FUNCTION mandant.set_user(user_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_set_user'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.set_user(uuid) IS
'For trusted backends (mandant_service, mandant_admin) acting for an end user: set the user and the scopes of their role in the current tenant (42501 if not a member).';
