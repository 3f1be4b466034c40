
/* ---------------------------------------------------------------------------
 * Versioned configuration
 *
 * mandant.config_entry holds the current value of every (tenant, service,
 * key); tenant_id NULL is the global value every tenant falls back to.
 * Each change bumps the key's version by one and takes the next global
 * revision, under a row lock on mandant.config_clock held until commit: so
 * writers commit in revision order, and a reader that remembers the highest
 * revision it has seen never misses a later change (config_changes).
 * mandant.config_history keeps every change (append-only).  Commit sends
 * NOTIFY mandant_config with the new revision as its only payload: anyone
 * may LISTEN, so the notification names no tenant, service or key;
 * clients read what changed through config_changes(), under their own
 * tenant.
 *
 * Who writes: a tenant's values, trusted backends (mandant_service,
 * mandant_admin) in that tenant and end users holding scope admin; global
 * values, mandant_admin without a tenant.  Everyone reads their tenant's
 * and the global values (row level security).
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.config_clock (
	id			integer PRIMARY KEY CONSTRAINT config_clock_one_row CHECK (id = 1),
	revision	bigint NOT NULL
);

COMMENT ON TABLE mandant.config_clock IS
'The global configuration revision (its one row is written by the first change, so that a dump restores it); its row lock orders configuration writers by commit.';

CREATE TABLE mandant.config_entry (
	tenant_id	uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE,
	service		text NOT NULL,
	key			text NOT NULL,
	value		jsonb,
	version		bigint NOT NULL,
	revision	bigint NOT NULL,
	updated_at	timestamptz NOT NULL,
	updated_by	text NOT NULL,
	deleted_at	timestamptz,
	CONSTRAINT config_entry_key UNIQUE NULLS NOT DISTINCT (tenant_id, service, key),
	CONSTRAINT config_entry_deleted CHECK ((value IS NULL) = (deleted_at IS NOT NULL))
);

CREATE INDEX config_entry_revision_idx ON mandant.config_entry (revision);

COMMENT ON TABLE mandant.config_entry IS
'Current configuration values per (tenant, service, key); tenant_id NULL: global. A deleted key keeps its row (value NULL) so that its version continues.';

CREATE TABLE mandant.config_history (
	revision		bigint PRIMARY KEY,
	tenant_id		uuid,
	service			text NOT NULL,
	key				text NOT NULL,
	version			bigint NOT NULL,
	old_value		jsonb,
	new_value		jsonb,
	reason			text NOT NULL,
	changed_by		text NOT NULL,
	actor_user_id	uuid,
	request_id		text,
	changed_at		timestamptz NOT NULL
);

CREATE INDEX config_history_key_idx ON mandant.config_history (service, key, tenant_id, version);

COMMENT ON TABLE mandant.config_history IS
'Every configuration change: who (user id or role), when, old and new value, reason, request id. Append-only.';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.config_history
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.config_history ENABLE ALWAYS TRIGGER append_only;

ALTER TABLE mandant.config_entry ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_global ON mandant.config_entry
	FOR SELECT USING (tenant_id IS NULL OR tenant_id = mandant.current_tenant());
ALTER TABLE mandant.config_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_global ON mandant.config_history
	FOR SELECT USING (tenant_id IS NULL OR tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.config_entry, mandant.config_history, mandant.config_clock TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.config_entry', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.config_history', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.config_clock', '');

/*
 * check_config_input raises on a malformed service, key or reason, and on a
 * secret stored as a plain value.
 */
CREATE FUNCTION mandant.check_config_input(service text, key text, value jsonb, reason text, deleting boolean)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF service IS NULL OR service !~ '^[a-z][a-z0-9_.-]{0,99}$' THEN
		RAISE EXCEPTION 'invalid configuration service %', COALESCE(quote_literal(service), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A service name has 1 to 100 characters: a-z first, then a-z, 0-9, ''_'', ''.'' or ''-''.',
				  HINT = 'Name the service that reads the value, e.g. ''mailer''.';
	END IF;
	IF key IS NULL OR key = '' OR length(key) > 200 OR key ~ '[[:space:][:cntrl:]]' THEN
		RAISE EXCEPTION 'invalid configuration key %', COALESCE(quote_literal(left(key, 60)), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('A key has 1 to 200 characters and no whitespace; this one has %s.', COALESCE(length(key), 0)),
				  HINT = 'Use a dotted name such as ''smtp.host''.';
	END IF;
	PERFORM mandant.require_reason(reason, 'change configuration',
								   format('The change of %s/%s has no reason.', service, key),
								   'Say why, e.g. ''new SMTP relay''; the reason is kept in mandant.config_history.');
	IF NOT deleting AND value IS NULL THEN
		RAISE EXCEPTION 'configuration value must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = format('mandant.config_set(%L, %L) was called with NULL.', service, key),
				  HINT = 'Use mandant.config_delete() to remove a key, or pass JSON null (''null''::jsonb).';
	END IF;
	IF NOT deleting AND key ~* '(password|secret|token|api_?key|private_?key)'
		AND NOT (jsonb_typeof(value) = 'object' AND value ?& ARRAY['secretRef']
				 AND (SELECT count(*) FROM jsonb_object_keys(value)) = 1
				 AND jsonb_typeof(value -> 'secretRef') = 'string') THEN
		RAISE EXCEPTION 'configuration key "%" looks like a secret', key
			USING ERRCODE = 'MD060',
				  DETAIL = 'Keys naming a password, secret, token, API key or private key may only hold a reference to the secret.',
				  HINT = 'Store the secret in your secret manager and set {"secretRef": "<where to find it>"}.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_config_input(text, text, jsonb, text, boolean) IS
'Internal: raise on a malformed configuration service, key, reason or value (MD060 for plain secrets).';

/*
 * config_apply is the one path for every change: it takes the next
 * revision (locking the clock until commit), checks the expected version,
 * writes entry and history and queues the notification.  Returns the new
 * version.  Only mandant.config_write() (C, extension/config.c) calls it,
 * after checking that the caller may change the configuration of tenant;
 * no role holds EXECUTE on it.
 */
CREATE FUNCTION mandant.config_apply(tenant uuid, service text, key text, value jsonb,
									 reason text, expected_version bigint, changed_by text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rev		bigint;
	current	mandant.config_entry;
	version	bigint;
	who		text := COALESCE(mandant.current_user_id()::text, changed_by);
BEGIN
	PERFORM mandant.check_config_input(service, key, value, reason, value IS NULL);
	INSERT INTO mandant.config_clock AS c (id, revision) VALUES (1, 1)
	ON CONFLICT (id) DO UPDATE SET revision = c.revision + 1
	RETURNING c.revision INTO rev;
	SELECT * INTO current FROM mandant.config_entry e
	WHERE e.tenant_id IS NOT DISTINCT FROM tenant AND e.service = config_apply.service AND e.key = config_apply.key
	FOR UPDATE;
	version := COALESCE(current.version, 0);

	IF expected_version IS NOT NULL AND expected_version <> version THEN
		RAISE EXCEPTION 'configuration %/% changed: version % is not the current one', service, key, expected_version
			USING ERRCODE = 'MD020',
				  DETAIL = format('The current version is %s (the change expected %s).', version, expected_version),
				  HINT = 'Read the value again with mandant.config_get() and retry with its version.';
	END IF;
	IF value IS NULL AND (current.value IS NULL) THEN
		RAISE EXCEPTION 'configuration %/% does not exist', service, key
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('There is no %s value to delete.', CASE WHEN tenant IS NULL THEN 'global' ELSE 'tenant' END),
				  HINT = 'See mandant.config_get_all() for the keys that are set.';
	END IF;

	version := version + 1;
	INSERT INTO mandant.config_entry AS e (tenant_id, service, key, value, version, revision,
										   updated_at, updated_by, deleted_at)
	VALUES (tenant, service, key, value, version, rev, now(), who,
			CASE WHEN value IS NULL THEN now() END)
	ON CONFLICT ON CONSTRAINT config_entry_key DO UPDATE
	SET value = EXCLUDED.value, version = EXCLUDED.version, revision = EXCLUDED.revision,
		updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by, deleted_at = EXCLUDED.deleted_at;
	INSERT INTO mandant.config_history (revision, tenant_id, service, key, version, old_value, new_value,
										reason, changed_by, actor_user_id, request_id, changed_at)
	VALUES (rev, tenant, service, key, version, current.value, value, reason,
			changed_by, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''), now());
	PERFORM pg_notify('mandant_config', rev::text);
	RETURN version;
END
$$;

COMMENT ON FUNCTION mandant.config_apply(uuid, text, text, jsonb, text, bigint, text) IS
'Internal: applies a configuration change for mandant.config_write(), which checks the caller first.';

REVOKE ALL ON FUNCTION mandant.config_apply(uuid, text, text, jsonb, text, bigint, text) FROM PUBLIC;

CREATE FUNCTION mandant.config_write(service text, key text, value jsonb, reason text,
									 expected_version bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_config_write'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.config_write(text, text, jsonb, text, bigint) IS
'Internal: changes a value of the current tenant (no tenant: global; value NULL deletes) after checking that the calling role may; use config_set, config_delete or config_rollback.';

CREATE FUNCTION mandant.config_set(service text, key text, value jsonb, reason text,
								   expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_config_input(service, key, value, reason, false);
	RETURN mandant.config_write(service, key, value, reason, expected_version);
END
$$;

COMMENT ON FUNCTION mandant.config_set(text, text, jsonb, text, bigint) IS
'Set a value for the current tenant (no tenant: global, mandant_admin only) and return its new version. With expected_version it is a compare-and-set: a stale version fails with MD020. Secret-looking keys take only {"secretRef": ...} (MD060).';

CREATE FUNCTION mandant.config_delete(service text, key text, reason text,
									  expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_config_input(service, key, NULL, reason, true);
	RETURN mandant.config_write(service, key, NULL, reason, expected_version);
END
$$;

COMMENT ON FUNCTION mandant.config_delete(text, text, text, bigint) IS
'Remove a value of the current tenant (no tenant: global); the tenant falls back to the global value. Returns the new version (deletions are versions too).';

CREATE FUNCTION mandant.config_rollback(service text, key text, to_version bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant	uuid := mandant.current_tenant();
	old		jsonb;
	current	bigint;
BEGIN
	PERFORM mandant.check_config_input(service, key, NULL, reason, true);
	SELECT h.new_value INTO old FROM mandant.config_history h
	WHERE h.tenant_id IS NOT DISTINCT FROM tenant AND h.service = config_rollback.service
	  AND h.key = config_rollback.key AND h.version = to_version;
	IF NOT FOUND THEN
		SELECT max(h.version) INTO current FROM mandant.config_history h
		WHERE h.tenant_id IS NOT DISTINCT FROM tenant AND h.service = config_rollback.service
		  AND h.key = config_rollback.key;
		RAISE EXCEPTION 'configuration %/% has no version %', service, key, COALESCE(to_version::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Its versions run from 1 to %s.', COALESCE(current, 0)),
				  HINT = 'See mandant.config_history for the versions and their values.';
	END IF;
	RETURN mandant.config_write(service, key, old, format('rollback to version %s: %s', to_version, reason), NULL);
END
$$;

COMMENT ON FUNCTION mandant.config_rollback(text, text, bigint, text) IS
'Write a new version holding the value of an earlier version (of the current tenant, or global without one). Returns the new version.';

CREATE FUNCTION mandant.config_get(service text, key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_config_get'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION mandant.config_get(text, text) IS
'The value of a key: the current tenant''s, else the global one, else NULL.';

CREATE FUNCTION mandant.config_get_all(service text)
RETURNS TABLE (key text, value jsonb, version bigint, revision bigint, scope text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT DISTINCT ON (e.key) e.key, e.value, e.version, e.revision,
		   CASE WHEN e.tenant_id IS NULL THEN 'global' ELSE 'tenant' END
	FROM mandant.config_entry e
	WHERE e.service = config_get_all.service AND e.value IS NOT NULL
	  AND (e.tenant_id = mandant.current_tenant() OR e.tenant_id IS NULL)
	ORDER BY e.key, e.tenant_id NULLS LAST
$$;

COMMENT ON FUNCTION mandant.config_get_all(text) IS
'Every key of a service with its effective value (the tenant''s, else the global one), version, revision and scope.';

CREATE FUNCTION mandant.config_changes(since_revision bigint)
RETURNS TABLE (tenant_id uuid, service text, key text, value jsonb, version bigint,
			   revision bigint, deleted boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT e.tenant_id, e.service, e.key, e.value, e.version, e.revision, e.value IS NULL
	FROM mandant.config_entry e
	WHERE e.revision > COALESCE(since_revision, 0)
	  AND (e.tenant_id = mandant.current_tenant() OR e.tenant_id IS NULL)
	ORDER BY e.revision
$$;

COMMENT ON FUNCTION mandant.config_changes(bigint) IS
'Every entry (of the current tenant, and global) changed after since_revision, with its current value: warm load with 0, then reconcile from the highest revision seen.';

CREATE FUNCTION mandant.config_revision()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE((SELECT c.revision FROM mandant.config_clock c WHERE c.id = 1), 0)
$$;

COMMENT ON FUNCTION mandant.config_revision() IS
'The highest committed configuration revision.';
