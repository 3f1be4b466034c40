
/* ---------------------------------------------------------------------------
 * Roles
 *
 * Three group roles, NOLOGIN, created only if missing (roles are cluster-wide
 * and outlive the extension).  Grant them to login roles:
 *   mandant_admin    platform operators: create tenants, manage across tenants
 *   mandant_service  trusted backends and jobs: may choose their tenant
 *   mandant_gateway  the HTTP gateway (its rights come with its issue)
 * ------------------------------------------------------------------------- */

DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['mandant_admin', 'mandant_service', 'mandant_gateway']
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

COMMENT ON ROLE mandant_admin IS 'mandant: platform administrators (create tenants, act across tenants)';
COMMENT ON ROLE mandant_service IS 'mandant: trusted backends that may call mandant.set_tenant()';
COMMENT ON ROLE mandant_gateway IS 'mandant: the HTTP gateway''s database role';

GRANT USAGE ON SCHEMA mandant TO PUBLIC;
