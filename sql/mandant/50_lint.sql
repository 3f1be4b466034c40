
/* ---------------------------------------------------------------------------
 * tenancy_lint: what in this database could let one tenant see another
 *
 * A "tenant table" is a registered table, or any table outside the system
 * schemas with a tenant_id column or a foreign key to mandant.tenant.
 * Objects that belong to extensions are skipped.  A clean schema returns no
 * rows.  Codes are stable; severities are error (tenants can leak or the
 * schema cannot be distributed by tenant_id) and warning (risky, check it).
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.tenancy_lint()
RETURNS TABLE (severity text, code text, object text, message text, hint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH RECURSIVE
extension_member AS (
	SELECT d.classid, d.objid FROM pg_depend d
	WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
),
candidate AS (
	SELECT c.oid AS relid, c.relname, c.relrowsecurity, c.relforcerowsecurity,
		   r.relid IS NOT NULL AS registered,
		   COALESCE(r.tenant_column,
					(SELECT a.attname FROM pg_attribute a
					 WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped),
					(SELECT a.attname FROM pg_constraint k
					 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
					 WHERE k.conrelid = c.oid AND k.contype = 'f'
					   AND k.confrelid = 'mandant.tenant'::regclass
					 ORDER BY k.conname LIMIT 1)) AS tenant_column
	FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace
	LEFT JOIN mandant.tenant_table r ON r.relid = c.oid
	WHERE c.relkind IN ('r', 'p')
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid)
	  AND (r.relid IS NOT NULL
		   OR EXISTS (SELECT 1 FROM pg_attribute a
					  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
		   OR EXISTS (SELECT 1 FROM pg_constraint k
					  WHERE k.conrelid = c.oid AND k.contype = 'f'
						AND k.confrelid = 'mandant.tenant'::regclass))
),
tenant_rel AS (
	SELECT cd.*, cd.relid::regclass::text AS name, a.attnum AS tenant_attnum,
		   a.atttypid, a.attnotnull
	FROM candidate cd
	LEFT JOIN pg_attribute a
		ON a.attrelid = cd.relid AND a.attname = cd.tenant_column AND NOT a.attisdropped
),
view_reads_direct AS (
	SELECT DISTINCT rw.ev_class AS viewid, d.refobjid AS relid
	FROM pg_rewrite rw
	JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
					AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> rw.ev_class
),
view_reads (viewid, relid) AS (
	SELECT viewid, relid FROM view_reads_direct
	UNION
	SELECT d.viewid, vr.relid FROM view_reads_direct d JOIN view_reads vr ON vr.viewid = d.relid
),
finding (severity, code, object, message, hint) AS (
	SELECT 'warning', 'not_registered', t.name,
		   format('table %s looks like a tenant table but is not registered', t.name),
		   format('Call mandant.enable_tenancy(%L) so that its rows are isolated, exported and deleted with their tenant.', t.name)
	FROM tenant_rel t WHERE NOT t.registered
	  AND t.relid NOT IN (SELECT u::oid FROM mandant.tenant_tables_unregistered() u)

	UNION ALL
	SELECT 'error', 'policy_unregistered', u::text,
		   format('table %s has mandant''s tenant policy but is not registered', u),
		   format('Call mandant.enable_tenancy(%L) again: Citus re-creates a table it converts, and until then deleting, exporting and moving a tenant are refused.', u::text)
	FROM mandant.tenant_tables_unregistered() u

	UNION ALL
	SELECT 'error', 'tenant_column_missing', t.name,
		   format('tenant table %s has no tenant column %s', t.name, quote_ident(COALESCE(t.tenant_column, 'tenant_id'))),
		   format('Call mandant.enable_tenancy(%L) again, or re-register it with the right column.', t.name)
	FROM tenant_rel t WHERE t.tenant_attnum IS NULL

	UNION ALL
	SELECT 'error', 'tenant_column_type', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s is of type %s, not uuid', quote_ident(t.tenant_column), t.name, t.atttypid::regtype),
		   'Change the column to uuid; mandant.current_tenant() returns uuid.'
	FROM tenant_rel t WHERE t.tenant_attnum IS NOT NULL AND t.atttypid <> 'uuid'::regtype

	UNION ALL
	SELECT 'error', 'tenant_column_nullable', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s allows NULL', quote_ident(t.tenant_column), t.name),
		   format('Call mandant.enable_tenancy(%L), which sets NOT NULL.', t.name)
	FROM tenant_rel t WHERE t.tenant_attnum IS NOT NULL AND NOT t.attnotnull

	UNION ALL
	SELECT 'error', 'rls_disabled', t.name,
		   format('row level security is disabled on tenant table %s', t.name),
		   format('Call mandant.enable_tenancy(%L).', t.name)
	FROM tenant_rel t WHERE NOT t.relrowsecurity

	UNION ALL
	SELECT 'error', 'rls_not_forced', t.name,
		   format('row level security is not forced on tenant table %s, so its owner sees every tenant', t.name),
		   format('ALTER TABLE %s FORCE ROW LEVEL SECURITY, or call mandant.enable_tenancy(%L).', t.name, t.name)
	FROM tenant_rel t WHERE t.relrowsecurity AND NOT t.relforcerowsecurity

	UNION ALL
	SELECT 'error', 'policy_missing', t.name,
		   format('tenant table %s has no tenant_isolation policy', t.name),
		   format('Call mandant.enable_tenancy(%L).', t.name)
	FROM tenant_rel t
	WHERE NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.relid AND p.polname = 'tenant_isolation')

	UNION ALL
	SELECT 'error', 'policy_changed', t.name,
		   format('policy tenant_isolation on %s is not the one mandant.enable_tenancy() creates', t.name),
		   format('Call mandant.enable_tenancy(%L) to restore it; narrow access with RESTRICTIVE policies instead.', t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.relid AND p.polname = 'tenant_isolation')
	  AND NOT mandant.tenant_policy_is_current(t.relid, t.tenant_column)

	UNION ALL
	SELECT 'warning', 'policy_permissive', t.name || '.' || quote_ident(p.polname),
		   format('permissive policy %s on %s is OR-ed with tenant_isolation and can widen access across tenants',
				  quote_ident(p.polname), t.name),
		   CASE WHEN mandant.citus_distribution_column(t.relid) IS NULL
				THEN 'Recreate it AS RESTRICTIVE (ALTER cannot change that), so that it can only narrow tenant_isolation.'
				ELSE 'Drop it and narrow access in the queries or a security_invoker view: Citus creates restrictive policies on the shards as permissive.' END
	FROM tenant_rel t
	JOIN pg_policy p ON p.polrelid = t.relid
	WHERE p.polpermissive AND p.polname <> 'tenant_isolation'

	UNION ALL
	SELECT 'error', 'policy_restrictive_on_citus', t.name || '.' || quote_ident(p.polname),
		   format('restrictive policy %s on distributed table %s is permissive on its shards',
				  quote_ident(p.polname), t.name),
		   'Citus 13 creates every policy on the shards as PERMISSIVE, where it is OR-ed with tenant_isolation: drop it, and narrow access in the queries or a security_invoker view.'
	FROM tenant_rel t
	JOIN pg_policy p ON p.polrelid = t.relid
	WHERE NOT p.polpermissive AND mandant.citus_distribution_column(t.relid) IS NOT NULL

	UNION ALL
	SELECT 'error', 'citus_twin_executable', p.oid::regprocedure::text || ' ' || quote_ident(r.rolname),
		   format('%s, which mandant alone attaches to distributed tables, is executable by role %s',
				  p.oid::regprocedure, quote_ident(r.rolname)),
		   format('REVOKE EXECUTE ON FUNCTION %s FROM %I on every node (run_command_on_all_nodes); grant it only for the length of a shard move (README, "Scale out").',
				  p.oid::regprocedure, r.rolname)
	FROM pg_proc p
	CROSS JOIN pg_roles r
	WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE '%\_on\_shards'
	  AND NOT r.rolsuper AND r.rolname !~ '^pg_' AND has_function_privilege(r.oid, p.oid, 'EXECUTE')

	UNION ALL
	SELECT 'warning', 'tenant_fk_missing', t.name || '.' || quote_ident(t.tenant_column),
		   format('tenant column %s of %s does not reference mandant.tenant', quote_ident(t.tenant_column), t.name),
		   format('Call mandant.enable_tenancy(%L), which adds the foreign key.', t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND to_regclass('pg_catalog.pg_dist_partition') IS NULL	-- no such key on Citus (enable_tenancy)
	  AND NOT EXISTS (SELECT 1 FROM pg_constraint k
					  WHERE k.conrelid = t.relid AND k.contype = 'f'
						AND k.confrelid = 'mandant.tenant'::regclass AND k.conkey = ARRAY[t.tenant_attnum])

	UNION ALL
	SELECT 'warning', 'tenant_index_missing', t.name,
		   format('no index of %s starts with its tenant column %s', t.name, quote_ident(t.tenant_column)),
		   format('Lead the primary key with %s, or call mandant.enable_tenancy(%L).', quote_ident(t.tenant_column), t.name)
	FROM tenant_rel t
	WHERE t.tenant_attnum IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM pg_index i
					  WHERE i.indrelid = t.relid AND i.indkey[0] = t.tenant_attnum AND i.indpred IS NULL)

	UNION ALL
	SELECT 'error', 'unique_without_tenant', t.name || '.' || quote_ident(ic.relname),
		   format('%s %s of %s does not include the tenant column %s',
				  CASE WHEN i.indisprimary THEN 'primary key' ELSE 'unique key' END,
				  quote_ident(ic.relname), t.name, quote_ident(t.tenant_column)),
		   format('Add %s to it: a key without it makes values unique across tenants (one tenant learns what another stored) and cannot be distributed by tenant.',
				  quote_ident(t.tenant_column))
	FROM tenant_rel t
	JOIN pg_index i ON i.indrelid = t.relid AND i.indisunique
	JOIN pg_class ic ON ic.oid = i.indexrelid
	WHERE t.tenant_attnum IS NOT NULL
	  AND NOT (t.tenant_attnum = ANY (i.indkey::int2[]))

	UNION ALL
	SELECT 'error', 'fk_without_tenant', child.name || '.' || quote_ident(k.conname),
		   format('foreign key %s from %s to %s does not match %s on both sides, so a row of one tenant can point at a row of another',
				  quote_ident(k.conname), child.name, parent.name, quote_ident(child.tenant_column)),
		   format('Make the referenced key (%s, ...) and the foreign key (%s, ...) both start from the tenant column.',
				  quote_ident(parent.tenant_column), quote_ident(child.tenant_column))
	FROM pg_constraint k
	JOIN tenant_rel child ON child.relid = k.conrelid
	JOIN tenant_rel parent ON parent.relid = k.confrelid
	WHERE k.contype = 'f'
	  AND child.tenant_attnum IS NOT NULL AND parent.tenant_attnum IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM generate_subscripts(k.conkey, 1) s
					  WHERE k.conkey[s] = child.tenant_attnum AND k.confkey[s] = parent.tenant_attnum)

	UNION ALL
	SELECT CASE WHEN owner.rolsuper OR owner.rolbypassrls THEN 'error' ELSE 'warning' END,
		   'view_not_security_invoker', v.oid::regclass::text,
		   format('view %s reads tenant table %s with the rights of its owner %s%s',
				  v.oid::regclass, min(t.name), quote_ident(owner.rolname),
				  CASE WHEN owner.rolsuper OR owner.rolbypassrls THEN ', who bypasses row level security' ELSE '' END),
		   format('ALTER VIEW %s SET (security_invoker = true).', v.oid::regclass)
	FROM pg_class v
	JOIN pg_roles owner ON owner.oid = v.relowner
	JOIN view_reads vr ON vr.viewid = v.oid
	JOIN tenant_rel t ON t.relid = vr.relid
	WHERE v.relkind = 'v'
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_class'::regclass AND e.objid = v.oid)
	  AND NOT EXISTS (SELECT 1 FROM pg_options_to_table(v.reloptions) o
					  WHERE o.option_name = 'security_invoker' AND o.option_value::boolean)
	GROUP BY v.oid, owner.rolname, owner.rolsuper, owner.rolbypassrls

	UNION ALL
	SELECT 'error', 'matview_over_tenant_table', v.oid::regclass::text,
		   format('materialized view %s stores rows of tenant table %s outside row level security',
				  v.oid::regclass, min(t.name)),
		   'Replace it with a tenant table refreshed per tenant, or with a security_invoker view.'
	FROM pg_class v
	JOIN view_reads vr ON vr.viewid = v.oid
	JOIN tenant_rel t ON t.relid = vr.relid
	WHERE v.relkind = 'm'
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_class'::regclass AND e.objid = v.oid)
	GROUP BY v.oid

	UNION ALL
	SELECT 'warning', 'security_definer_reads_tenant_table', p.oid::regprocedure::text,
		   format('SECURITY DEFINER function %s reads tenant table %s with the rights of its owner',
				  p.oid::regprocedure, min(t.name)),
		   'Make it SECURITY INVOKER, or make sure its owner is subject to row level security and that it calls mandant.require_tenant().'
	FROM pg_proc p
	JOIN pg_namespace n ON n.oid = p.pronamespace
	JOIN pg_language l ON l.oid = p.prolang
	JOIN tenant_rel t
	  ON EXISTS (SELECT 1 FROM pg_depend d
				 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
				   AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid)
	  OR (l.lanname NOT IN ('c', 'internal')
		  AND p.prosrc ~* ('\m' || regexp_replace(t.relname, '([^[:alnum:]_])', '\\\1', 'g') || '\M'))
	JOIN pg_class tc ON tc.oid = t.relid
	JOIN pg_roles o ON o.oid = p.proowner
	WHERE p.prosecdef
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	  AND NOT EXISTS (SELECT 1 FROM extension_member e
					  WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid)
	GROUP BY p.oid
	/* what the hint asks: the owner is held to the tables' policies and the
	   function insists on a tenant (the routes of the HTTP gateway) */
	HAVING NOT (bool_and(NOT o.rolsuper AND NOT o.rolbypassrls AND tc.relrowsecurity
						 AND (tc.relforcerowsecurity OR NOT pg_has_role(p.proowner, tc.relowner, 'USAGE')))
				AND min(p.prosrc) ~ 'mandant\.require_tenant\s*\(')

	UNION ALL
	SELECT 'error', 'privilege_bypasses_rls', t.name,
		   format('%s holds %s on tenant table %s, which row level security does not cover',
				  CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END,
				  acl.privilege_type, t.name),
		   format('REVOKE %s ON %s FROM %s: TRUNCATE empties every tenant at once, and a trigger sees every tenant''s writes.',
				  acl.privilege_type, t.name,
				  CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END)
	FROM tenant_rel t
	JOIN pg_class c ON c.oid = t.relid
	CROSS JOIN LATERAL aclexplode(c.relacl) acl
	WHERE acl.privilege_type IN ('TRUNCATE', 'TRIGGER')
	  AND acl.grantee <> c.relowner

	UNION ALL
	SELECT 'error', 'login_role_bypassrls', quote_ident(r.rolname),
		   format('login role %s bypasses row level security', quote_ident(r.rolname)),
		   format('ALTER ROLE %s NOBYPASSRLS; applications must log in as roles subject to row level security.',
				  quote_ident(r.rolname))
	FROM pg_roles r
	WHERE r.rolcanlogin AND r.rolbypassrls AND NOT r.rolsuper
)
SELECT f.severity, f.code, f.object, f.message, f.hint
FROM finding f
ORDER BY f.severity, f.code, f.object
$$;

COMMENT ON FUNCTION mandant.tenancy_lint() IS
'Report what could let one tenant see or touch another tenant''s rows: (severity, code, object, message, hint). A clean schema returns no rows.';
