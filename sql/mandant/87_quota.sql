
/* ---------------------------------------------------------------------------
 * Plans and quotas (extension/quota.c)
 *
 * A tenant's limit of a resource (users, records, storage_bytes, or any
 * key of mandant.plan.limits) is the newest quota change already in effect,
 * else its plan's.  mandant.quota_change is the append-only history of
 * overrides.  mandant.tenant_usage counts per tenant and resource and
 * caches the limit in effect (until the next scheduled change); tables
 * count through mandant.enable_quota, other resources through
 * mandant.charge.  Members count as "users" (mandant.consume in the
 * identity functions).  A resource either counts rows or is charged, never
 * both.  mandant.quota_table is written only through the gate, by the
 * table's owner (enable_quota); counting rows runs none of their code
 * (mandant.tenant_row_count).  On Citus the coordinator counts each
 * statement that writes a distributed table under quota (quota.c).
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.quota_change (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id		uuid NOT NULL REFERENCES mandant.tenant (id),
	resource		text NOT NULL,
	"limit"			bigint CONSTRAINT quota_change_limit_positive CHECK ("limit" >= 0),
	effective_at	timestamptz NOT NULL,
	reason			text NOT NULL,
	actor			text NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX quota_change_lookup_idx ON mandant.quota_change (tenant_id, resource, effective_at);

COMMENT ON TABLE mandant.quota_change IS
'Quota overrides per tenant and resource ("limit" NULL: unlimited), effective from effective_at. Append-only.';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.quota_change
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.quota_change ENABLE ALWAYS TRIGGER append_only;

CREATE TABLE mandant.tenant_usage (
	tenant_id	uuid NOT NULL REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	resource	text NOT NULL,
	used		bigint NOT NULL DEFAULT 0,
	limit_value	bigint,
	limit_until	timestamptz NOT NULL DEFAULT '-infinity',
	PRIMARY KEY (tenant_id, resource)
);

COMMENT ON TABLE mandant.tenant_usage IS
'What each tenant uses of each resource, with the limit in effect until limit_until (NULL limit: unlimited). Written by mandant only.';

CREATE TABLE mandant.quota_table (
	relid			regclass PRIMARY KEY,
	resource		text NOT NULL,
	tenant_column	name NOT NULL
);

COMMENT ON TABLE mandant.quota_table IS
'Tables whose rows count against a resource (mandant.enable_quota), and their tenant column.';

ALTER TABLE mandant.quota_change ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.quota_change FOR SELECT USING (tenant_id = mandant.current_tenant());
ALTER TABLE mandant.tenant_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.tenant_usage FOR SELECT USING (tenant_id = mandant.current_tenant());
ALTER TABLE mandant.quota_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY quota_table_read ON mandant.quota_table FOR SELECT USING (true);
GRANT SELECT ON mandant.quota_change, mandant.tenant_usage TO PUBLIC;
GRANT SELECT ON mandant.quota_table TO PUBLIC;
GRANT SELECT ON mandant.quota_change, mandant.tenant_usage TO mandant_admin;
CREATE POLICY platform ON mandant.quota_change FOR SELECT TO mandant_admin, mandant_service USING (true);
CREATE POLICY platform ON mandant.tenant_usage FOR SELECT TO mandant_admin, mandant_service USING (true);

SELECT pg_catalog.pg_extension_config_dump('mandant.quota_change', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.quota_change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_usage', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.quota_table', 'WHERE relid <> ''mandant.membership''::regclass');

CREATE FUNCTION mandant.quota_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_quota_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.quota_trigger() IS
'Trigger of mandant.enable_quota: counts inserted and deleted rows against the tenant''s limit (MD030), refuses moving rows between tenants.';

CREATE FUNCTION mandant.charge(resource text, amount bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_charge'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.charge(text, bigint) IS
'Count amount of a resource that is not rows (e.g. storage_bytes) against the current tenant''s limit (MD030 past it); a negative amount gives back; resources that tables count are refused (22023). Trusted backends (mandant_service) and mandant_admin only: a negative charge frees quota.';

CREATE FUNCTION mandant.check_resource(resource text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF resource IS NULL OR NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.limits ? resource) THEN
		RAISE EXCEPTION 'unknown resource %', COALESCE(quote_literal(resource), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'No plan names it in its limits.',
				  HINT = format('Known resources: %s. Add new ones to mandant.plan.limits (null: unlimited).',
								(SELECT string_agg(DISTINCT k, ', ') FROM mandant.plan p, jsonb_object_keys(p.limits) k));
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_resource(text) IS
'Internal: raise 22023 unless some plan names the resource in its limits.';

/*
 * effective_limit is the limit of a resource for a tenant now: the newest
 * quota change in effect, else the plan's (NULL: unlimited).
 */
CREATE FUNCTION mandant.effective_limit(tenant uuid, resource text)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (COALESCE(
		(SELECT jsonb_build_object('v', q."limit") FROM mandant.quota_change q
		 WHERE q.tenant_id = tenant AND q.resource = effective_limit.resource AND q.effective_at <= now()
		 ORDER BY q.effective_at DESC, q.id DESC LIMIT 1),
		(SELECT jsonb_build_object('v', p.limits -> effective_limit.resource)
		 FROM mandant.tenant t JOIN mandant.plan p ON p.key = t.plan_key WHERE t.id = tenant)
	) ->> 'v')::bigint
$$;

COMMENT ON FUNCTION mandant.effective_limit(uuid, text) IS
'The limit of a resource for a tenant now: the newest quota change in effect, else the plan''s; NULL means unlimited.';

/*
 * count_rows: rows of the tenant in the tables that count as resource,
 * counted without running any code of the tables' owners (on Citus,
 * through Citus as the caller: quota.c, usertable.c).
 */
CREATE FUNCTION mandant.count_rows(tenant uuid, resource text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_count_rows'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.count_rows(uuid, text) IS
'Internal: how many rows of a tenant the tables under quota for resource hold.';

/*
 * quota_refresh (called by quota.c as the extension owner) creates the
 * usage row of a tenant and resource, starting from counted, or
 * recomputes the limit in effect and until when it holds.  Every counter
 * starts here, so this is where an unknown resource is refused (charge).
 */
CREATE FUNCTION mandant.quota_refresh(tenant uuid, resource text, counted bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.check_resource(resource);
	INSERT INTO mandant.tenant_usage AS u (tenant_id, resource, used, limit_value, limit_until)
	VALUES (tenant, resource, COALESCE(counted, 0), mandant.effective_limit(tenant, resource),
			COALESCE((SELECT min(q.effective_at) FROM mandant.quota_change q
					  WHERE q.tenant_id = tenant AND q.resource = quota_refresh.resource AND q.effective_at > now()),
					 'infinity'))
	ON CONFLICT (tenant_id, resource) DO UPDATE
	SET limit_value = EXCLUDED.limit_value, limit_until = EXCLUDED.limit_until;
$$;

COMMENT ON FUNCTION mandant.quota_refresh(uuid, text, bigint) IS
'Internal: create the usage row of a tenant and resource (starting at counted), or refresh its limit.';

REVOKE ALL ON FUNCTION mandant.quota_refresh(uuid, text, bigint), mandant.count_rows(uuid, text) FROM PUBLIC;

/* Registering a table (or changing its resource) recounts that resource. */
CREATE FUNCTION mandant.quota_table_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		DELETE FROM mandant.tenant_usage u WHERE u.resource = NEW.resource;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		DELETE FROM mandant.tenant_usage u WHERE u.resource = OLD.resource;
	END IF;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.quota_table_changed() IS
'Trigger: forget the counters of a resource whose tables changed (registered, moved to another resource, unregistered); they are recounted on next use.';

CREATE TRIGGER recount AFTER INSERT OR UPDATE OR DELETE ON mandant.quota_table
	FOR EACH ROW EXECUTE FUNCTION mandant.quota_table_changed();

/*
 * quota_truncated: TRUNCATE fires no row triggers, so the counters of the
 * table's resource are forgotten and recounted on next use.  Only for a
 * table registered for that resource (nobody resets charged usage by
 * attaching this trigger to a table of their own).
 */
CREATE FUNCTION mandant.quota_truncated()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_NARGS = 1 AND EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.relid = TG_RELID AND q.resource = TG_ARGV[0]) THEN
		DELETE FROM mandant.tenant_usage u WHERE u.resource = TG_ARGV[0];
	END IF;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.quota_truncated() IS
'Trigger of mandant.enable_quota: after TRUNCATE of a table under quota, forget the counters of its resource (recounted on next use).';

REVOKE ALL ON FUNCTION mandant.quota_table_changed() FROM PUBLIC;

/*
 * enable_quota makes the rows of a tenant table count against a resource
 * of each tenant's plan.  The table owner only; the table must be a tenant
 * table (mandant.enable_tenancy).
 */
CREATE FUNCTION mandant.enable_quota(tbl regclass, resource text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_quota');
	PERFORM mandant.gate_call('attach_quota', NULL, jsonb_build_object('table', tbl::oid, 'resource', resource));
END
$$;

COMMENT ON FUNCTION mandant.enable_quota(regclass, text) IS
'Count the rows of a tenant table against a resource of each tenant''s plan (C trigger; the insert past the limit fails with MD030, also under concurrency). Not for a resource that is charged (mandant.charge). Idempotent; the table owner only.';

/*
 * registry_attach_quota: enable_quota's privileged half, run by the gate
 * for the table's owner.
 */
CREATE FUNCTION mandant.registry_attach_quota(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<registry_attach_quota>>
DECLARE
	tbl				regclass := (args ->> 'table')::oid::regclass;
	resource		text := args ->> 'resource';
	tenant_column	name;
	other			record;
BEGIN
	SELECT r.tenant_column INTO tenant_column FROM mandant.tenant_table r WHERE r.relid = tbl;
	IF tenant_column IS NULL THEN
		RAISE EXCEPTION 'table % is not a tenant table', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Quotas count rows per tenant, and the table has no registered tenant column.',
				  HINT = format('Call mandant.enable_tenancy(%L) first.', tbl::text);
	END IF;
	PERFORM mandant.check_resource(resource);
	/*
	 * On Citus the coordinator counts a statement's rows for the
	 * transaction's tenant, which the policy on the tenant column holds
	 * every row to; that column must place the rows, so that no update
	 * moves one to another tenant (Citus refuses those).
	 */
	IF mandant.citus_distribution_column(tbl) IS DISTINCT FROM tenant_column
		AND mandant.citus_distribution_column(tbl) IS NOT NULL THEN
		RAISE EXCEPTION 'table % is distributed by another column than its tenant column %', tbl, tenant_column
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = format('Citus distributes it by %s; quotas count its rows per tenant.', mandant.citus_distribution_column(tbl)),
				  HINT = format('Distribute it by %I.', tenant_column);
	END IF;
	/*
	 * Nor a partition of a distributed table alone: rows that an UPDATE of
	 * the partition key, or a cascade, moves into it on the workers pass
	 * the coordinator's count by (quota.c counts the statements it runs).
	 */
	IF mandant.citus_distribution_column(tbl) IS NOT NULL
		AND (SELECT c.relispartition FROM pg_class c WHERE c.oid = tbl) THEN
		RAISE EXCEPTION 'partition % of a distributed table cannot count against a quota alone', tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'On Citus the coordinator counts the rows of the statements it runs; rows moved into a partition on the workers (an UPDATE of the partition key, a cascade) would not be counted.',
				  HINT = format('Call mandant.enable_quota() on the partitioned table %s.', pg_partition_root(tbl));
	END IF;
	IF NOT EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = registry_attach_quota.resource)
		AND EXISTS (SELECT 1 FROM mandant.tenant_usage u WHERE u.resource = registry_attach_quota.resource) THEN
		RAISE EXCEPTION 'resource "%" is charged, not counted', resource
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Tenants were charged %s with mandant.charge(); counting rows would replace what they were charged.', resource),
				  HINT = 'Count rows against a resource of their own: add one to mandant.plan.limits.';
	END IF;
	/* A counter is fed by its owners' tables only: rows another owner
	   wrote (or pre-filled) would otherwise count against every tenant. */
	SELECT q.relid, c.relowner::regrole AS owner INTO other
	FROM mandant.quota_table q JOIN pg_class c ON c.oid = q.relid
	WHERE q.resource = registry_attach_quota.resource AND q.relid <> tbl
	  AND NOT mandant.gate_caller_member_of(c.relowner::regrole::name)
	ORDER BY q.relid::text LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'resource "%" is counted by tables of another owner', resource
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('%s, owned by %s, counts rows against %s.', other.relid, other.owner, resource),
				  HINT = 'Count your rows against a resource of your own: add one to mandant.plan.limits.';
	END IF;
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.quota_table AS q (relid, resource, tenant_column)
	VALUES (tbl, resource, tenant_column)
	ON CONFLICT (relid) DO UPDATE SET resource = EXCLUDED.resource, tenant_column = EXCLUDED.tenant_column
	WHERE (q.resource, q.tenant_column) IS DISTINCT FROM (EXCLUDED.resource, EXCLUDED.tenant_column);
	PERFORM mandant.attach_trigger(tbl, 'mandant_quota',
		format('CREATE TRIGGER mandant_quota AFTER INSERT OR DELETE OR UPDATE OF %I ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.quota_trigger(%L, %L)',
			   tenant_column, tbl, resource, tenant_column));
	/* on Citus the coordinator forgets the counters of a truncated table (quota.c) */
	IF mandant.citus_distribution_column(tbl) IS NULL THEN
		PERFORM mandant.attach_trigger(tbl, 'mandant_quota_truncate',
			format('CREATE TRIGGER mandant_quota_truncate AFTER TRUNCATE ON %s '
				   'FOR EACH STATEMENT EXECUTE FUNCTION mandant.quota_truncated(%L)', tbl, resource));
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.disable_quota(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_quota');
	PERFORM mandant.gate_call('detach_quota', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_quota(regclass) IS
'Stop counting a table''s rows. The table owner only.';

CREATE FUNCTION mandant.registry_detach_quota(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'mandant_quota');
	PERFORM mandant.detach_trigger(tbl, 'mandant_quota_truncate');
	DELETE FROM mandant.quota_table q WHERE q.relid = tbl;
	RETURN NULL;
END
$$;

/*
 * Members count as users: the identity functions call mandant.consume()
 * (no trigger on mandant's own table, see quota.c); the registration lets
 * counters be recounted from the memberships.
 */
INSERT INTO mandant.quota_table (relid, resource, tenant_column) VALUES ('mandant.membership', 'users', 'tenant_id');

CREATE FUNCTION mandant.consume(tenant uuid, resource text, amount bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_consume'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.consume(uuid, text, bigint) IS
'Internal: count amount of a resource for a tenant (MD030 past the limit); call before writing the row it counts.';

REVOKE ALL ON FUNCTION mandant.consume(uuid, text, bigint) FROM PUBLIC;

CREATE FUNCTION mandant.check_limit(tenant uuid, resource text, "limit" bigint)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.tenant t WHERE t.id = tenant) THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant
			USING ERRCODE = 'MD002', DETAIL = 'No row of mandant.tenant has that id.', HINT = 'Check the tenant id.';
	END IF;
	PERFORM mandant.check_resource(resource);
	IF "limit" < 0 THEN
		RAISE EXCEPTION 'a limit must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The limit given for %s was %s.', resource, "limit"),
				  HINT = 'Pass 0 or more, or NULL for unlimited.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_limit(uuid, text, bigint) IS
'Internal: raise unless the tenant exists, the resource is known and the limit is not negative.';

CREATE FUNCTION mandant.op_set_quota(tenant uuid, resource text, "limit" bigint,
									 effective_at timestamptz DEFAULT now(), reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	change_id bigint;
BEGIN
	PERFORM mandant.check_limit(tenant, resource, "limit");
	PERFORM mandant.require_reason(reason, 'change a quota',
								   'Quota changes are kept in mandant.quota_change with their reason.',
								   'Say why, e.g. ''contract amendment 2026-11''.');
	INSERT INTO mandant.quota_change (tenant_id, resource, "limit", effective_at, reason, actor)
	VALUES (tenant, resource, "limit", COALESCE(effective_at, now()), reason,
			COALESCE(mandant.current_user_id()::text, session_user))
	RETURNING id INTO change_id;
	UPDATE mandant.tenant_usage u SET limit_until = '-infinity'
	WHERE u.tenant_id = tenant AND u.resource = op_set_quota.resource;
	PERFORM mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'quota.changed', 'tenant', tenant::text,
								  jsonb_build_object('resource', resource, 'limit', "limit",
													 'effectiveAt', COALESCE(effective_at, now()), 'reason', reason));
	RETURN change_id;
END
$$;

COMMENT ON FUNCTION mandant.op_set_quota(uuid, text, bigint, timestamptz, text) IS
'Internal: the body of mandant.set_quota(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.set_quota(tenant uuid, resource text, "limit" bigint,
								  effective_at timestamptz DEFAULT now(), reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('set_quota');
	RETURN mandant.op_set_quota(tenant, resource, "limit", effective_at, reason);
END
$$;

COMMENT ON FUNCTION mandant.set_quota(uuid, text, bigint, timestamptz, text) IS
'Override a tenant''s limit of a resource from effective_at on (NULL limit: unlimited); kept in mandant.quota_change. mandant_admin only.';

CREATE FUNCTION mandant.op_change_plan(tenant uuid, plan_key text, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old_plan text := (mandant.lock_tenant(tenant)).plan_key;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.plan p WHERE p.key = op_change_plan.plan_key) THEN
		RAISE EXCEPTION 'plan "%" does not exist', plan_key
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('No row of mandant.plan has key %L.', plan_key),
				  HINT = format('Use one of: %s.', (SELECT string_agg(p.key, ', ' ORDER BY p.key) FROM mandant.plan p));
	END IF;
	PERFORM mandant.require_reason(reason, 'change a plan', 'The reason is recorded in the audit trail.',
								   'Say why, e.g. ''upgrade ordered by the customer''.');
	UPDATE mandant.tenant t SET plan_key = op_change_plan.plan_key, updated_at = now() WHERE t.id = tenant;
	UPDATE mandant.tenant_usage u SET limit_until = '-infinity' WHERE u.tenant_id = tenant;
	PERFORM mandant.audit_log_for(tenant, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
								  'platform', 'plan.changed', 'tenant', tenant::text,
								  jsonb_build_object('from', old_plan, 'to', plan_key, 'reason', reason));
	PERFORM mandant.emit_for(NULL, 'platform.tenant.plan_changed', tenant::text,
							 jsonb_build_object('tenantId', tenant, 'from', old_plan, 'to', plan_key));
END
$$;

COMMENT ON FUNCTION mandant.op_change_plan(uuid, text, text) IS
'Internal: the body of mandant.change_plan(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.change_plan(tenant uuid, plan_key text, reason text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('change_plan');
	PERFORM mandant.op_change_plan(tenant, plan_key, reason);
END
$$;

COMMENT ON FUNCTION mandant.change_plan(uuid, text, text) IS
'Move a tenant to another plan; its limits change at once (usage above a lower limit stays, new rows are refused). mandant_admin only.';

/*
 * usage_of: what a tenant uses of each resource and its limit, as a JSON
 * array; run by the gate for sessions of the tenant and for mandant_admin
 * (usage).
 */
CREATE FUNCTION mandant.usage_of(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(jsonb_agg(jsonb_build_object('resource', x.resource, 'used', x.used, 'limit', x."limit")
							  ORDER BY x.resource), '[]')
	FROM (SELECT r.resource,
				 COALESCE((SELECT u.used FROM mandant.tenant_usage u WHERE u.tenant_id = usage_of.tenant AND u.resource = r.resource),
						  CASE WHEN EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = r.resource)
							   THEN mandant.count_rows(usage_of.tenant, r.resource) ELSE 0 END) AS used,
				 mandant.effective_limit(usage_of.tenant, r.resource) AS "limit"
		  FROM (SELECT DISTINCT k AS resource FROM mandant.plan p, jsonb_object_keys(p.limits) k) r) x
$$;

CREATE FUNCTION mandant.usage(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (resource text, used bigint, "limit" bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT r.resource, r.used, r."limit"
	FROM jsonb_to_recordset(mandant.gate_call('usage', tenant, '{}')) AS r (resource text, used bigint, "limit" bigint)
	ORDER BY r.resource
$$;

COMMENT ON FUNCTION mandant.usage(uuid) IS
'What a tenant uses of each resource and its limit (NULL: unlimited). The current tenant, or any for mandant_admin.';

CREATE FUNCTION mandant.op_usage_reconcile()
RETURNS TABLE (tenant_id uuid, resource text, recorded bigint, actual bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	u record;
	n bigint;
BEGIN
	FOR u IN SELECT x.tenant_id, x.resource, x.used FROM mandant.tenant_usage x
			 WHERE EXISTS (SELECT 1 FROM mandant.quota_table q WHERE q.resource = x.resource)
			 ORDER BY x.tenant_id, x.resource FOR UPDATE
	LOOP
		n := mandant.count_rows(u.tenant_id, u.resource);
		IF n <> u.used THEN
			UPDATE mandant.tenant_usage x SET used = n WHERE x.tenant_id = u.tenant_id AND x.resource = u.resource;
			tenant_id := u.tenant_id;
			resource := u.resource;
			recorded := u.used;
			actual := n;
			RETURN NEXT;
		END IF;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.op_usage_reconcile() IS
'Internal: the body of mandant.usage_reconcile(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.usage_reconcile()
RETURNS TABLE (tenant_id uuid, resource text, recorded bigint, actual bigint)
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('usage_reconcile');
	RETURN QUERY SELECT * FROM mandant.op_usage_reconcile();
END
$$;

COMMENT ON FUNCTION mandant.usage_reconcile() IS
'Recount the rows behind every usage counter, fix the counters that drifted and report them. mandant_admin only.';

REVOKE ALL ON FUNCTION mandant.op_set_quota(uuid, text, bigint, timestamptz, text), mandant.op_change_plan(uuid, text, text),
	mandant.op_usage_reconcile() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_set_quota(uuid, text, bigint, timestamptz, text), mandant.op_change_plan(uuid, text, text),
	mandant.op_usage_reconcile() TO mandant_admin;
