
/* ---------------------------------------------------------------------------
 * Audit trail (extension/audit.c)
 *
 * mandant.audit_event is written only by mandant's C code (the row trigger
 * and audit_log), never through SQL: nobody holds INSERT on it, and UPDATE,
 * DELETE and TRUNCATE fail for everyone.  A tenant reads its own events;
 * mandant_admin reads across tenants through mandant.audit_events().
 * Events of no tenant (platform events) carry the nil uuid, so that the
 * primary key (tenant_id, id) is the table's only btree: it serves tenant
 * reads, verification and distribution by tenant_id, and stays cheap to
 * append to.
 *
 * Tables are audited through mandant.enable_audit(), which registers them
 * in mandant.audit_table and attaches the trigger through the gate.  The
 * trigger function stays executable by everyone (a new partition of an
 * audited table inherits its trigger as its creator), and refuses tables
 * the registry does not list, or lists with other arguments.
 *
 * Tamper evidence: mandant.audit_seal() chains each tenant's events into
 * mandant.audit_seal, chain_n = sha256(chain_(n-1) || hash_n), in the order
 * it seals them; mandant.audit_verify() recomputes event hashes and chain.
 * mandant.audit_verify_since_checkpoint() continues from the last
 * checkpoint (mandant.audit_checkpoint): it re-checks that checkpoint
 * against its seal row and against the platform event that recorded it,
 * re-derives the seals after it from its chain value, and records a new
 * checkpoint when they pass.
 * ------------------------------------------------------------------------- */

GRANT SET ON PARAMETER mandant.audit_max_value_bytes TO mandant_admin;

/* Cached per backend: ids are unique, not in commit or time order. */
CREATE SEQUENCE mandant.audit_event_id_seq CACHE 32;

CREATE TABLE mandant.audit_event (
	id				bigint NOT NULL DEFAULT pg_catalog.nextval('mandant.audit_event_id_seq'),
	tenant_id		uuid NOT NULL,
	occurred_at		timestamptz NOT NULL,
	txid			bigint NOT NULL,
	category		text NOT NULL,
	action			text NOT NULL,
	entity_type		text COLLATE "C" NOT NULL,
	entity_id		text COLLATE "C",
	actor_user_id	uuid,
	request_id		text,
	changes			jsonb,
	hash			bytea NOT NULL,
	PRIMARY KEY (tenant_id, id)
);

ALTER SEQUENCE mandant.audit_event_id_seq OWNED BY mandant.audit_event.id;

COMMENT ON TABLE mandant.audit_event IS
'One row per audited write or application event. Append-only; written by mandant''s C code only. Platform events carry tenant_id 00000000-0000-0000-0000-000000000000.';

/* Sealing finds new events by transaction id. */
CREATE INDEX audit_event_txid_idx ON mandant.audit_event USING brin (txid);

ALTER TABLE mandant.audit_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.audit_event
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.audit_event TO PUBLIC;

CREATE TABLE mandant.audit_seal (
	tenant_id		uuid NOT NULL,
	seq				bigint NOT NULL,
	event_id		bigint NOT NULL,
	chain			bytea NOT NULL,
	sealed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (tenant_id, seq),
	CONSTRAINT audit_seal_event UNIQUE (tenant_id, event_id)
);

COMMENT ON TABLE mandant.audit_seal IS
'The hash chain of each tenant''s audit events: position seq, chain = sha256(previous chain || event hash). Append-only.';

ALTER TABLE mandant.audit_seal ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.audit_seal
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.audit_seal TO PUBLIC;

CREATE TABLE mandant.audit_seal_run (
	run_id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	sealed_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	horizon			bigint NOT NULL,
	events			bigint NOT NULL
);

COMMENT ON TABLE mandant.audit_seal_run IS
'One row per mandant.audit_seal() run: events sealed, and the horizon (snapshot xmin) below which every transaction had ended.';

CREATE TABLE mandant.audit_checkpoint (
	tenant_id		uuid NOT NULL,
	seq				bigint NOT NULL,
	event_id		bigint NOT NULL,
	chain			bytea NOT NULL,
	from_seq		bigint NOT NULL,
	record_id		bigint NOT NULL,
	verified_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	verified_by		text NOT NULL,
	PRIMARY KEY (tenant_id, seq)
);

COMMENT ON TABLE mandant.audit_checkpoint IS
'Verified points of each tenant''s chain, written by mandant.audit_verify_since_checkpoint() when the seals from_seq+1 .. seq passed: the seal row (seq, event_id, chain) and record_id, the platform audit event (action audit.verified) that records the same values. Append-only.';

ALTER TABLE mandant.audit_checkpoint ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.audit_checkpoint
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.audit_checkpoint TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.audit_event', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_seal', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_seal_run', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_seal_run_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_checkpoint', '');

CREATE FUNCTION mandant.audit_append_only()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_append_only'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_append_only() IS
'Trigger: refuses UPDATE, DELETE and TRUNCATE of mandant''s append-only tables (42501).';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_event
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_seal
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_seal_run
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.audit_checkpoint
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
/* ALWAYS: session_replication_role = replica must not switch them off. */
ALTER TABLE mandant.audit_event ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE mandant.audit_seal ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE mandant.audit_seal_run ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE mandant.audit_checkpoint ENABLE ALWAYS TRIGGER append_only;

CREATE FUNCTION mandant.audit_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_trigger() IS
'Row trigger attached by mandant.enable_audit(): one audit event per inserted, updated or deleted row.';

REVOKE ALL ON FUNCTION mandant.audit_append_only() FROM PUBLIC;

CREATE FUNCTION mandant.audit_event_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_audit_event_guard'
LANGUAGE C;

COMMENT ON FUNCTION mandant.audit_event_guard() IS
'Trigger on the shards of mandant.audit_event on Citus (mandant.citus_setup()): an event inserted through Citus is held to what mandant.audit_log() writes in the writer''s context, and gets this node''s transaction id and its hash.';

REVOKE ALL ON FUNCTION mandant.audit_event_guard() FROM PUBLIC;

CREATE TABLE mandant.audit_table (
	relid			regclass PRIMARY KEY,
	category		text,
	exclude_columns	text[] NOT NULL DEFAULT '{}',
	enabled_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by		name NOT NULL
);

COMMENT ON TABLE mandant.audit_table IS
'Registry of audited tables (written by mandant.enable_audit through the gate): category (NULL: the schema name) and excluded columns.';

ALTER TABLE mandant.audit_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_table_read ON mandant.audit_table FOR SELECT USING (true);
GRANT SELECT ON mandant.audit_table TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.audit_table', '');

CREATE FUNCTION mandant.audit_log(category text, action text, entity_type text,
								  entity_id text, payload jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_audit_log'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log(text, text, text, text, jsonb) IS
'Write an application event (login, export, approval ...) with the context of the transaction; returns its id. Actions insert/update/delete/transition are reserved.';

CREATE FUNCTION mandant.audit_event_hash(event mandant.audit_event)
RETURNS bytea
AS 'MODULE_PATHNAME', 'mandant_audit_event_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION mandant.audit_event_hash(mandant.audit_event) IS
'Recompute the sha256 of an event''s canonical form (what its hash column should hold).';

/*
 * check_excluded_columns returns the distinct, sorted excluded columns of
 * tbl and raises 42703 when one of them does not exist.
 */
CREATE FUNCTION mandant.check_excluded_columns(tbl regclass, exclude_columns text[])
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	excluded	text[];
	unknown		text;
BEGIN
	SELECT COALESCE(array_agg(DISTINCT c ORDER BY c), '{}') INTO excluded
	FROM unnest(COALESCE(exclude_columns, '{}')) c;
	SELECT c INTO unknown
	FROM unnest(excluded) c
	WHERE c IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a
								   WHERE a.attrelid = tbl AND a.attname = c
									 AND a.attnum > 0 AND NOT a.attisdropped)
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', unknown, tbl
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('exclude_columns names %L.', unknown),
				  HINT = format('Columns of %s: %s.', tbl,
								(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
								 FROM pg_attribute a
								 WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped));
	END IF;
	RETURN excluded;
END
$$;

COMMENT ON FUNCTION mandant.check_excluded_columns(regclass, text[]) IS
'Internal: the distinct, sorted excluded columns of a table; 42703 when one does not exist.';

/*
 * check_primary_key raises 55000 unless tbl has a primary key, which
 * audit events and outbox events name their row by.
 */
CREATE FUNCTION mandant.check_primary_key(tbl regclass, why text, function_name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary) THEN
		RAISE EXCEPTION 'table % has no primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = why,
				  HINT = format('Add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (id), then call %s() again.', tbl, function_name);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_primary_key(regclass, text, text) IS
'Internal: 55000 unless the table has a primary key.';

/*
 * attach_trigger creates a trigger of mandant's on tbl, or replaces the
 * one of that name (CREATE OR REPLACE TRIGGER) when its definition
 * differs.  Only the gate's
 * operations call it (nobody else may attach mandant's trigger functions).
 */
CREATE FUNCTION mandant.attach_trigger(tbl regclass, name text, statement text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	existing	text;
	fn			text;
	twin		text;
	unsafe		text;
BEGIN
	/*
	 * On a table that Citus distributes, the trigger fires on the shards,
	 * on the workers: it calls the twin of the function that only mandant
	 * may attach (97_citus.sql), and Citus must be told to take it.
	 */
	IF mandant.citus_distribution_column(tbl) IS NOT NULL THEN
		fn := substring(statement FROM 'EXECUTE FUNCTION (mandant\.[a-z_]+)\(');
		/* the quota trigger only marks the table: the coordinator counts (quota.c) */
		twin := CASE WHEN fn = 'mandant.quota_trigger' THEN fn ELSE fn || '_on_shards' END;
		IF to_regproc(twin) IS NULL THEN
			RAISE EXCEPTION '% is not supported on distributed tables yet', substring(fn FROM '^mandant\.(.*)$')
				USING ERRCODE = 'feature_not_supported',
					  DETAIL = format('Citus distributes %s; mandant cannot yet store what this trigger writes beside the table''s shards.', tbl),
					  HINT = 'README, "Scale out", lists what works on distributed tables.';
		END IF;
		statement := replace(statement, fn || '(', twin || '(');
		unsafe := current_setting('citus.enable_unsafe_triggers');
		PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
	END IF;
	SELECT pg_get_triggerdef(t.oid) INTO existing
	FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = name;
	IF existing IS DISTINCT FROM statement THEN
		/*
		 * One statement, also on Citus: a DROP and a CREATE would be two
		 * DDL commands on placements that the caller's checks read over
		 * another connection, which Citus refuses.
		 */
		IF existing IS NOT NULL THEN
			statement := regexp_replace(statement, '^CREATE TRIGGER ', 'CREATE OR REPLACE TRIGGER ');
		END IF;
		EXECUTE statement;
	END IF;
	IF unsafe IS NOT NULL THEN
		PERFORM set_config('citus.enable_unsafe_triggers', unsafe, true);
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.attach_trigger(regclass, text, text) IS
'Internal: create one of mandant''s triggers on a table, or replace it when its definition changed.';

/*
 * detach_trigger drops one of mandant's triggers from tbl if it is there;
 * on a table that Citus distributes, from its shards too (Citus must be
 * told to take the DROP, as attach_trigger tells it to take the CREATE).
 */
CREATE FUNCTION mandant.detach_trigger(tbl regclass, name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	unsafe		text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = name) THEN
		IF mandant.citus_distribution_column(tbl) IS NOT NULL THEN
			unsafe := current_setting('citus.enable_unsafe_triggers');
			PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
		END IF;
		EXECUTE format('DROP TRIGGER %I ON %s', name, tbl);
		IF unsafe IS NOT NULL THEN
			PERFORM set_config('citus.enable_unsafe_triggers', unsafe, true);
		END IF;
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.detach_trigger(regclass, text) IS
'Internal: drop one of mandant''s triggers from a table, if it exists.';

REVOKE ALL ON FUNCTION mandant.attach_trigger(regclass, text, text), mandant.detach_trigger(regclass, text) FROM PUBLIC;

/*
 * enable_audit attaches the audit trigger, or replaces it when its category
 * or excluded columns changed.  Idempotent; the table owner only.
 */
CREATE FUNCTION mandant.enable_audit(tbl regclass, category text DEFAULT NULL,
									 exclude_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_audit');
	PERFORM mandant.gate_call('attach_audit', NULL,
							  jsonb_build_object('table', tbl::oid, 'category', category,
												 'excludeColumns', to_jsonb(exclude_columns)));
END
$$;

COMMENT ON FUNCTION mandant.enable_audit(regclass, text, text[]) IS
'Audit every insert, update and delete of tbl (which needs a primary key) into mandant.audit_event. category defaults to the schema name; exclude_columns never appear in any event. Idempotent; the table owner only.';

/*
 * registry_attach_audit: enable_audit's privileged half, run by the gate
 * for the table's owner.
 */
CREATE FUNCTION mandant.registry_attach_audit(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl			regclass := (args ->> 'table')::oid::regclass;
	category	text := args ->> 'category';
	excluded	text[];
BEGIN
	PERFORM mandant.check_primary_key(tbl, 'Audit events name the row they are about by its primary key.',
									  'mandant.enable_audit');
	/* on Citus, a table's events are kept in the shard of mandant.audit_event beside its own */
	PERFORM mandant.check_kept_beside(tbl, 'mandant.audit_event', 'changes', 'or leave it unaudited');
	IF category IS NOT NULL AND category !~ '^[a-z][a-z0-9_.:-]{0,99}$' THEN
		RAISE EXCEPTION 'invalid audit category "%"', category
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A category has 1 to 100 characters: a-z first, then a-z, 0-9, ''_'', ''.'', '':'' or ''-''.',
				  HINT = 'Use a lower-case name such as ''risk'' or ''billing'', or NULL for the schema name.';
	END IF;
	excluded := mandant.check_excluded_columns(tbl, ARRAY(SELECT jsonb_array_elements_text(
		CASE jsonb_typeof(args -> 'excludeColumns') WHEN 'array' THEN args -> 'excludeColumns' ELSE '[]' END)));
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.audit_table AS r (relid, category, exclude_columns, enabled_by)
	VALUES (tbl, category, excluded, caller)
	ON CONFLICT (relid) DO UPDATE SET category = EXCLUDED.category, exclude_columns = EXCLUDED.exclude_columns,
		enabled_at = EXCLUDED.enabled_at, enabled_by = EXCLUDED.enabled_by
	WHERE (r.category, r.exclude_columns) IS DISTINCT FROM (EXCLUDED.category, EXCLUDED.exclude_columns);
	PERFORM mandant.attach_trigger(tbl, 'mandant_audit',
		format('CREATE TRIGGER mandant_audit AFTER INSERT OR DELETE OR UPDATE ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger(%s)',
			   tbl,
			   (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
				FROM unnest(ARRAY[COALESCE(category, '')] || excluded) WITH ORDINALITY u (a, o))));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.registry_detach_audit(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'mandant_audit');
	DELETE FROM mandant.audit_table r WHERE r.relid = tbl;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.disable_audit(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_audit');
	PERFORM mandant.gate_call('detach_audit', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_audit(regclass) IS
'Stop auditing tbl (its past events stay). The table owner only.';

/*
 * audit_seal_events chains the events of the table events (mandant.audit_event
 * or the placement of one of its shards) whose transaction ids lie in
 * [previous, horizon) and that are not sealed yet into seals (mandant.audit_seal
 * or the placement of the colocated shard), each tenant's after its last
 * seal there, in the order of tenant and id; returns how many.
 */
CREATE FUNCTION mandant.audit_seal_events(events regclass, seals regclass, previous bigint, horizon bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e			record;
	last_tenant	uuid;
	chain		bytea;
	seq			bigint;
	tenants		uuid[] := '{}';
	seqs		bigint[] := '{}';
	event_ids	bigint[] := '{}';
	chains		bytea[] := '{}';
BEGIN
	FOR e IN EXECUTE format(
		'SELECT a.id, a.tenant_id, a.hash FROM %s a
		 WHERE a.txid >= $1 AND a.txid < $2
		   AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.tenant_id = a.tenant_id AND s.event_id = a.id)
		 ORDER BY a.tenant_id, a.id', events, seals) USING previous, horizon
	LOOP
		IF last_tenant IS DISTINCT FROM e.tenant_id THEN
			EXECUTE format('SELECT s.chain, s.seq FROM %s s WHERE s.tenant_id = $1 ORDER BY s.seq DESC LIMIT 1', seals)
				INTO chain, seq USING e.tenant_id;
			IF seq IS NULL THEN
				chain := ''::bytea;
				seq := 0;
			END IF;
			last_tenant := e.tenant_id;
		END IF;
		chain := sha256(chain || e.hash);
		seq := seq + 1;
		tenants := tenants || e.tenant_id;
		seqs := seqs || seq;
		event_ids := event_ids || e.id;
		chains := chains || chain;
	END LOOP;
	/* one statement for the run, not one planned per event */
	EXECUTE format('INSERT INTO %s (tenant_id, seq, event_id, chain)
					SELECT * FROM unnest($1, $2, $3, $4)', seals)
		USING tenants, seqs, event_ids, chains;
	RETURN cardinality(seqs);
END
$$;

COMMENT ON FUNCTION mandant.audit_seal_events(regclass, regclass, bigint, bigint) IS
'Internal: chain the events of one audit table (or shard) in a window of transaction ids into its seal table (or colocated shard); how many.';

/*
 * audit_seal_node seals, on this node, every event whose transaction has
 * ended since this node's last run, and records the run in this node's
 * mandant.audit_seal_run.  It reads the events with its snapshot and only
 * locks the seal tables, so writers never wait for it; concurrent runs
 * wait for each other.  Events of transactions still open are left for the
 * next run: the window is [xmin of the previous run, xmin of this run).
 * On Citus, where each node gives its own transaction ids, the tables are
 * the placements of the shards on this node, each pair of colocated
 * shards sealed on its own.
 */
CREATE FUNCTION mandant.audit_seal_node()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pairs		text[][] := ARRAY[['mandant.audit_event', 'mandant.audit_seal']];
	horizon		bigint;
	previous	bigint;
	sealed		bigint := 0;
BEGIN
	IF mandant.citus_distribution_column('mandant.audit_event') IS NOT NULL THEN
		/* mandant's own writes to the shards it keeps, as Citus's own rebalancer does */
		PERFORM set_config('citus.enable_manual_changes_to_shards', 'on', true);
		/* a run over its own connection must not wait forever on its caller's locks */
		PERFORM set_config('lock_timeout', '30s', true);
		EXECUTE 'SELECT COALESCE(array_agg(ARRAY[pg_catalog.shard_name(''mandant.audit_event'', e.shardid),
												  pg_catalog.shard_name(''mandant.audit_seal'', s.shardid)] ORDER BY e.shardid),
								  ''{}'')
				 FROM pg_catalog.pg_dist_shard e
				 JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = ''mandant.audit_seal''::regclass
					  AND s.shardminvalue = e.shardminvalue AND s.shardmaxvalue = e.shardmaxvalue
				 WHERE e.logicalrelid = ''mandant.audit_event''::regclass
				   AND EXISTS (SELECT FROM pg_catalog.pg_dist_placement p
							   WHERE p.shardid = e.shardid
								 AND p.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g))'
			INTO pairs;
	END IF;
	FOR i IN 1 .. COALESCE(array_length(pairs, 1), 0) LOOP
		EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', pairs[i][2]::regclass);
	END LOOP;
	horizon := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
	SELECT r.horizon INTO previous FROM mandant.audit_seal_run r ORDER BY r.run_id DESC LIMIT 1;
	/* Restored into another cluster, whose transaction ids are lower: look at everything. */
	IF previous IS NULL OR previous > horizon THEN
		previous := 0;
	END IF;
	FOR i IN 1 .. COALESCE(array_length(pairs, 1), 0) LOOP
		sealed := sealed + mandant.audit_seal_events(pairs[i][1]::regclass, pairs[i][2]::regclass, previous, horizon);
	END LOOP;
	INSERT INTO mandant.audit_seal_run (horizon, events) VALUES (horizon, sealed);
	RETURN sealed;
END
$$;

COMMENT ON FUNCTION mandant.audit_seal_node() IS
'Internal: seal on this node the audit events of every transaction that ended since its last run; how many.';

/*
 * op_audit_seal seals on every node that keeps audit events: here, or on
 * Citus on each node in a transaction of its own (a node's seals depend
 * on its transaction ids only).
 */
CREATE FUNCTION mandant.op_audit_seal()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sealed		bigint;
	failure		text;
BEGIN
	IF mandant.citus_distribution_column('mandant.audit_event') IS NULL THEN
		RETURN mandant.audit_seal_node();
	END IF;
	EXECUTE 'SELECT sum(r.result::bigint) FILTER (WHERE r.success), min(r.result) FILTER (WHERE NOT r.success)
			 FROM pg_catalog.run_command_on_all_nodes(''SELECT mandant.audit_seal_node()'') r'
		INTO sealed, failure;
	/* run_command_on_all_nodes skips inactive nodes: none of them may hold events */
	IF failure IS NULL THEN
		EXECUTE 'SELECT string_agg(DISTINCT n.nodename || '':'' || n.nodeport, '', '')
				 FROM pg_catalog.pg_dist_shard s
				 JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
				 JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid
				 WHERE s.logicalrelid = ''mandant.audit_event''::regclass AND NOT n.isactive'
			INTO failure;
		failure := 'inactive nodes hold audit events: ' || failure;
	END IF;
	IF failure IS NOT NULL THEN
		RAISE EXCEPTION 'audit_seal() failed on a node'
			USING ERRCODE = 'connection_failure',
				  DETAIL = failure,
				  HINT = 'The nodes that answered kept their seals; run mandant.audit_seal() again when every node is up.';
	END IF;
	RETURN COALESCE(sealed, 0);
END
$$;

COMMENT ON FUNCTION mandant.op_audit_seal() IS
'Internal: the body of mandant.audit_seal(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.audit_seal()
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('audit_seal');
	RETURN mandant.op_audit_seal();
END
$$;

COMMENT ON FUNCTION mandant.audit_seal() IS
'Chain the events of every transaction that has ended since the last run into mandant.audit_seal, per tenant; returns how many. Does not block writers. mandant_admin only; run it periodically.';

REVOKE ALL ON FUNCTION mandant.op_audit_seal(), mandant.audit_seal_node(),
	mandant.audit_seal_events(regclass, regclass, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_audit_seal() TO mandant_admin;

/*
 * audit_walk_chain re-derives a tenant's seals after after_seq from
 * after_chain, the chain value of seal after_seq (0 and '' for the whole
 * chain): each seal must follow the one before it, name an event of the
 * tenant whose hash is what its fields give, and hold sha256(previous chain
 * || that hash).  It stops at the first seal that fails (first_bad_id: its
 * event) and returns the last seal that passed.  Internal: for the
 * verifications below, which run as the extension's owner.
 */
CREATE FUNCTION mandant.audit_walk_chain(chain_of uuid, after_seq bigint, after_chain bytea,
										 OUT ok boolean, OUT checked bigint, OUT first_bad_id bigint,
										 OUT last_seq bigint, OUT last_event_id bigint, OUT last_chain bytea)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s	record;
	e	mandant.audit_event;
BEGIN
	ok := true;
	checked := 0;
	last_seq := after_seq;
	last_chain := after_chain;
	FOR s IN
		SELECT * FROM mandant.audit_seal a WHERE a.tenant_id = chain_of AND a.seq > after_seq ORDER BY a.seq
	LOOP
		checked := checked + 1;
		SELECT * INTO e FROM mandant.audit_event a WHERE a.tenant_id = chain_of AND a.id = s.event_id;
		IF NOT FOUND OR s.seq <> after_seq + checked
			OR e.hash IS DISTINCT FROM mandant.audit_event_hash(e)
			OR s.chain IS DISTINCT FROM sha256(last_chain || e.hash) THEN
			ok := false;
			first_bad_id := s.event_id;
			RETURN;
		END IF;
		last_seq := s.seq;
		last_event_id := s.event_id;
		last_chain := s.chain;
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.audit_walk_chain(uuid, bigint, bytea) IS
'Internal: re-derive a tenant''s seals after a known seal from its chain value; the first that fails, or the last that passed.';

/*
 * audit_bad_checkpoint returns the event id of the first checkpoint of a
 * tenant (the latest only, when latest_only) that its seal row or the
 * platform event recording it contradicts: the seal at its seq must name
 * its event and hold its chain, and the record must be an intact
 * audit.verified event of that tenant with the same seq, event and chain.
 * NULL when they all agree.
 */
CREATE FUNCTION mandant.audit_bad_checkpoint(chain_of uuid, latest_only boolean)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c	mandant.audit_checkpoint;
	s	mandant.audit_seal;
	r	mandant.audit_event;
BEGIN
	/* one table at a time: on Citus the records are in the platform's shard, elsewhere than the tenant's */
	FOR c IN
		SELECT * FROM (SELECT * FROM mandant.audit_checkpoint x WHERE x.tenant_id = chain_of
					   ORDER BY x.seq DESC LIMIT CASE WHEN latest_only THEN 1 END) x
		ORDER BY x.seq
	LOOP
		SELECT * INTO s FROM mandant.audit_seal a WHERE a.tenant_id = chain_of AND a.seq = c.seq;
		SELECT * INTO r FROM mandant.audit_event e
		WHERE e.tenant_id = '00000000-0000-0000-0000-000000000000' AND e.id = c.record_id;
		IF s.event_id IS DISTINCT FROM c.event_id OR s.chain IS DISTINCT FROM c.chain
		   OR r.hash IS DISTINCT FROM mandant.audit_event_hash(r)
		   OR r.action IS DISTINCT FROM 'audit.verified' OR r.entity_id IS DISTINCT FROM chain_of::text
		   OR r.changes IS DISTINCT FROM jsonb_build_object('seq', c.seq, 'eventId', c.event_id,
															'chain', encode(c.chain, 'hex'), 'fromSeq', c.from_seq) THEN
			RETURN c.event_id;
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.audit_bad_checkpoint(uuid, boolean) IS
'Internal: the event id of the first checkpoint of a tenant that its seal row or its platform record contradicts, or NULL.';

/*
 * audit_verify_chain walks a tenant's chain in seal order, recomputing each
 * event's hash and each chain link, then checks the hashes of the events
 * not sealed yet and that every checkpoint agrees with the chain.  The
 * first event that fails is reported.  Run by the gate for sessions of the
 * tenant and for mandant_admin (audit_verify).
 */
CREATE FUNCTION mandant.audit_verify_chain(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	chain_of	constant uuid := COALESCE(tenant, '00000000-0000-0000-0000-000000000000');
	w			record;
	e			mandant.audit_event;
	n			bigint;
	bad			bigint;
BEGIN
	SELECT * INTO w FROM mandant.audit_walk_chain(chain_of, 0, ''::bytea);
	n := w.checked;
	IF NOT w.ok THEN
		RETURN jsonb_build_object('ok', false, 'checked', n, 'firstBadId', w.first_bad_id);
	END IF;

	FOR e IN
		SELECT * FROM mandant.audit_event a
		WHERE a.tenant_id = chain_of
		  AND NOT EXISTS (SELECT 1 FROM mandant.audit_seal x WHERE x.tenant_id = a.tenant_id AND x.event_id = a.id)
		ORDER BY a.id
	LOOP
		n := n + 1;
		IF e.hash IS DISTINCT FROM mandant.audit_event_hash(e) THEN
			RETURN jsonb_build_object('ok', false, 'checked', n, 'firstBadId', e.id);
		END IF;
	END LOOP;

	bad := mandant.audit_bad_checkpoint(chain_of, false);
	RETURN jsonb_build_object('ok', bad IS NULL, 'checked', n, 'firstBadId', bad);
END
$$;

CREATE FUNCTION mandant.audit_verify(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (r ->> 'ok')::boolean, (r ->> 'checked')::bigint, (r ->> 'firstBadId')::bigint
	FROM mandant.gate_call('audit_verify', tenant, '{}') AS r
$$;

COMMENT ON FUNCTION mandant.audit_verify(uuid) IS
'Recompute the hashes and the chain of a tenant''s audit events (NULL: the platform''s), and check every checkpoint against them: (ok, checked, first_bad_id). The current tenant, or any tenant for mandant_admin.';

/*
 * audit_verify_from_checkpoint continues a tenant's verification from its
 * latest checkpoint: it re-checks that checkpoint (audit_bad_checkpoint),
 * re-derives the seals after it from its chain value, and, when they pass
 * and there were any, records the new head as a platform event
 * (audit.verified) and as the next checkpoint.  Events not sealed yet are
 * left for the verification after the next seal run.  Two verifications
 * that reach the same seal record one checkpoint (the other's platform
 * event stays: it did verify).  The tenant's row is locked FOR KEY SHARE,
 * so a deletion in progress (which locks it FOR UPDATE and erases the
 * checkpoints) is waited for and no checkpoint outlives its tenant.  Run
 * by the gate for sessions of the tenant and for mandant_admin.
 */
CREATE FUNCTION mandant.audit_verify_from_checkpoint(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	chain_of	constant uuid := COALESCE(tenant, '00000000-0000-0000-0000-000000000000');
	c			mandant.audit_checkpoint;
	w			record;
	bad			bigint;
	payload		jsonb;
	record_id	bigint;
BEGIN
	IF tenant IS NOT NULL THEN
		PERFORM FROM mandant.tenant t WHERE t.id = tenant FOR KEY SHARE;
	END IF;
	SELECT * INTO c FROM mandant.audit_checkpoint x WHERE x.tenant_id = chain_of ORDER BY x.seq DESC LIMIT 1;
	IF NOT FOUND THEN
		c.seq := 0;
		c.chain := ''::bytea;
	ELSE
		bad := mandant.audit_bad_checkpoint(chain_of, true);
		IF bad IS NOT NULL THEN
			RETURN jsonb_build_object('ok', false, 'checked', 0, 'firstBadId', bad,
									  'fromSeq', c.seq, 'toSeq', NULL, 'chain', NULL);
		END IF;
	END IF;

	SELECT * INTO w FROM mandant.audit_walk_chain(chain_of, c.seq, c.chain);
	IF w.ok AND w.last_seq > c.seq THEN
		payload := jsonb_build_object('seq', w.last_seq, 'eventId', w.last_event_id,
									  'chain', encode(w.last_chain, 'hex'), 'fromSeq', c.seq);
		record_id := mandant.audit_log_for(NULL, mandant.current_user_id(), NULLIF(current_setting('app.request_id'), ''),
										   'platform', 'audit.verified', 'audit_checkpoint', chain_of::text, payload);
		INSERT INTO mandant.audit_checkpoint (tenant_id, seq, event_id, chain, from_seq, record_id, verified_by)
		VALUES (chain_of, w.last_seq, w.last_event_id, w.last_chain, c.seq, record_id, caller)
		ON CONFLICT (tenant_id, seq) DO NOTHING;
	END IF;
	RETURN jsonb_build_object('ok', w.ok, 'checked', w.checked, 'firstBadId', w.first_bad_id,
							  'fromSeq', c.seq, 'toSeq', w.last_seq, 'chain', encode(w.last_chain, 'hex'));
END
$$;

COMMENT ON FUNCTION mandant.audit_verify_from_checkpoint(uuid, jsonb, text) IS
'Internal: a privileged operation, run by mandant.gate_call() after it checked the caller.';

CREATE FUNCTION mandant.audit_verify_since_checkpoint(tenant uuid DEFAULT mandant.current_tenant())
RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint, from_seq bigint, to_seq bigint, chain bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (r ->> 'ok')::boolean, (r ->> 'checked')::bigint, (r ->> 'firstBadId')::bigint,
		   (r ->> 'fromSeq')::bigint, (r ->> 'toSeq')::bigint, decode(r ->> 'chain', 'hex')
	FROM mandant.gate_call('audit_verify_since_checkpoint', tenant, '{}') AS r
$$;

COMMENT ON FUNCTION mandant.audit_verify_since_checkpoint(uuid) IS
'Verify a tenant''s audit chain (NULL: the platform''s) from its last checkpoint: re-check the checkpoint, then the seals after it (from_seq+1 .. to_seq; checked of them); when they pass, record to_seq as the next checkpoint (and as a platform event audit.verified). chain is the verified head, to keep elsewhere. Events not sealed yet wait for the next seal run; mandant.audit_verify() checks everything. The current tenant, or any tenant for mandant_admin.';

REVOKE ALL ON FUNCTION mandant.audit_walk_chain(uuid, bigint, bytea), mandant.audit_bad_checkpoint(uuid, boolean),
	mandant.audit_verify_from_checkpoint(uuid, jsonb, text) FROM PUBLIC;

/*
 * audit_events is how platform administrators read across tenants: a
 * function for mandant_admin (the gate checks the caller, and
 * op_audit_events is granted to mandant_admin only), not a role that
 * bypasses row level security.
 */
CREATE FUNCTION mandant.op_audit_events(tenant uuid, since timestamptz DEFAULT '-infinity',
										entity_type text DEFAULT NULL, entity_id text DEFAULT NULL,
										max_rows integer DEFAULT 1000)
RETURNS SETOF mandant.audit_event
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	/* PL/pgSQL: Citus plans no SQL function's parameters */
	RETURN QUERY
	SELECT a.* FROM mandant.audit_event a
	WHERE a.tenant_id = COALESCE(op_audit_events.tenant, '00000000-0000-0000-0000-000000000000')
	  AND a.occurred_at >= op_audit_events.since
	  AND (op_audit_events.entity_type IS NULL OR a.entity_type = op_audit_events.entity_type)
	  AND (op_audit_events.entity_id IS NULL OR a.entity_id = op_audit_events.entity_id)
	ORDER BY a.id DESC
	LIMIT LEAST(GREATEST(op_audit_events.max_rows, 0), 10000);
END
$$;

COMMENT ON FUNCTION mandant.op_audit_events(uuid, timestamptz, text, text, integer) IS
'Internal: the body of mandant.audit_events(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.audit_events(tenant uuid, since timestamptz DEFAULT '-infinity',
									 entity_type text DEFAULT NULL, entity_id text DEFAULT NULL,
									 max_rows integer DEFAULT 1000)
RETURNS SETOF mandant.audit_event
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM mandant.gate_check('audit_events');
	RETURN QUERY SELECT * FROM mandant.op_audit_events(tenant, since, entity_type, entity_id, max_rows);
END
$$;

COMMENT ON FUNCTION mandant.audit_events(uuid, timestamptz, text, text, integer) IS
'A tenant''s audit events (NULL: platform events), newest first, at most 10000. mandant_admin only.';

REVOKE ALL ON FUNCTION mandant.op_audit_events(uuid, timestamptz, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_audit_events(uuid, timestamptz, text, text, integer) TO mandant_admin;

CREATE FUNCTION mandant.audit_log_for(tenant uuid, actor uuid, request_id text, category text,
									  action text, entity_type text, entity_id text, payload jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mandant_audit_log_for'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb) IS
'Internal: write an application event for an explicit tenant (NULL: platform), actor and request id.';

REVOKE ALL ON FUNCTION mandant.audit_log_for(uuid, uuid, text, text, text, text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION mandant.audit_log_erasure(tenant uuid, actor uuid, request_id text, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_audit_log_erasure'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.audit_log_erasure(uuid, uuid, text, jsonb) IS
'Internal: write the platform''s record of a tenant''s deletion (platform, tenant.deleted); on Citus as the role that erased the tenant''s shards.';

REVOKE ALL ON FUNCTION mandant.audit_log_erasure(uuid, uuid, text, jsonb) FROM PUBLIC;
