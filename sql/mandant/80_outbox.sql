
/* ---------------------------------------------------------------------------
 * Transactional outbox (extension/outbox.c)
 *
 * Events are written by mandant's C code in the writer's transaction.
 * Commit wakes consumers with NOTIFY mandant_outbox and an empty payload
 * (anyone may LISTEN).
 * Consumers (roles granted mandant_service or mandant_admin) claim them
 * across tenants with leases, acknowledge or reject them; tenants read their
 * own events under row level security.
 *
 * Delivery is at least once, in order per (tenant, aggregate): a claim never
 * hands out an event while an older event of the same aggregate is not
 * published yet (pending, leased, backing off or dead).  A dead event stops
 * its aggregate until it is replayed (delivered again) or skipped (given up,
 * recorded as such): later events of an aggregate usually depend on the
 * earlier ones, so they wait for a human decision rather than overtake.
 * ------------------------------------------------------------------------- */

/* No per-backend cache: a later event of an aggregate gets a larger id. */
CREATE SEQUENCE mandant.outbox_id_seq;

CREATE TABLE mandant.outbox (
	id				bigint PRIMARY KEY DEFAULT pg_catalog.nextval('mandant.outbox_id_seq'),
	event_id		uuid NOT NULL,
	tenant_id		uuid NOT NULL,
	topic			text NOT NULL,
	aggregate_type	text NOT NULL,
	aggregate_id	text,
	payload			jsonb NOT NULL,
	headers			jsonb NOT NULL,
	created_at		timestamptz NOT NULL,
	available_at	timestamptz NOT NULL,
	attempts		integer NOT NULL DEFAULT 0,
	last_error		text,
	locked_until	timestamptz,
	locked_by		text,
	published_at	timestamptz,
	dead_at			timestamptz
);

ALTER SEQUENCE mandant.outbox_id_seq OWNED BY mandant.outbox.id;

COMMENT ON TABLE mandant.outbox IS
'Transactional outbox: events written with the data they describe, claimed by consumers with leases. Platform events carry tenant_id 00000000-0000-0000-0000-000000000000.';

/* What a claim scans, and the per-aggregate order check. */
CREATE INDEX outbox_pending_idx ON mandant.outbox (id)
	WHERE published_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_aggregate_idx ON mandant.outbox (tenant_id, aggregate_type, aggregate_id, id)
	WHERE published_at IS NULL;

ALTER TABLE mandant.outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.outbox
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.outbox TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.outbox_id_seq', '');

CREATE FUNCTION mandant.outbox_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_outbox_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.outbox_trigger() IS
'Row trigger attached by mandant.enable_outbox(): one {domain}.{entity}.created|updated|deleted event per written row.';

CREATE FUNCTION mandant.emit(topic text, aggregate_id text, payload jsonb)
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_emit'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.emit(text, text, jsonb) IS
'Write a custom event (topic domain.entity.action, lower case) for the tenant of the transaction; returns its event id. The domain platform is reserved to trusted backends.';

CREATE FUNCTION mandant.emit_for(tenant uuid, topic text, aggregate_id text, payload jsonb)
RETURNS uuid
AS 'MODULE_PATHNAME', 'mandant_emit_for'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.emit_for(uuid, text, text, jsonb) IS
'Internal: write a custom event for an explicit tenant (NULL: the platform), for the tenant lifecycle.';

REVOKE ALL ON FUNCTION mandant.emit_for(uuid, text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION mandant.emit_erasure(tenant uuid, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_emit_erasure'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.emit_erasure(uuid, jsonb) IS
'Internal: announce a tenant''s deletion (platform.tenant.deleted); on Citus as the role that erased its shards, for mandant.delete_tenant().';

REVOKE ALL ON FUNCTION mandant.emit_erasure(uuid, jsonb) FROM PUBLIC;

CREATE FUNCTION mandant.outbox_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_outbox_guard'
LANGUAGE C;

COMMENT ON FUNCTION mandant.outbox_guard() IS
'Internal: on Citus, the BEFORE INSERT trigger of mandant.outbox''s shards: numbers events routed to their tenant''s shard and holds a role that is no superuser to what mandant.emit() writes in its context (attached by mandant.citus_setup()).';

REVOKE ALL ON FUNCTION mandant.outbox_guard() FROM PUBLIC;

CREATE TABLE mandant.outbox_table (
	relid			regclass PRIMARY KEY,
	domain			text NOT NULL,
	entity			text NOT NULL,
	exclude_columns	text[] NOT NULL DEFAULT '{}',
	enabled_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by		name NOT NULL
);

COMMENT ON TABLE mandant.outbox_table IS
'Registry of tables whose writes become outbox events (written by mandant.enable_outbox through the gate): domain, entity and excluded columns.';

ALTER TABLE mandant.outbox_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_table_read ON mandant.outbox_table FOR SELECT USING (true);
GRANT SELECT ON mandant.outbox_table TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('mandant.outbox_table', '');

/*
 * enable_outbox attaches the outbox trigger, or replaces it when its
 * arguments changed.  Idempotent; the table owner only.
 */
CREATE FUNCTION mandant.enable_outbox(tbl regclass, domain text, entity text DEFAULT NULL,
									  exclude_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_outbox');
	PERFORM mandant.gate_call('attach_outbox', NULL,
							  jsonb_build_object('table', tbl::oid, 'domain', domain, 'entity', entity,
												 'excludeColumns', to_jsonb(exclude_columns)));
END
$$;

COMMENT ON FUNCTION mandant.enable_outbox(regclass, text, text, text[]) IS
'Publish every insert, update and delete of tbl as {domain}.{entity}.created|updated|deleted events (payload: the row with camelCase keys, without exclude_columns). entity defaults to the table name; the domain platform is mandant''s own. Idempotent; the table owner only.';

/*
 * registry_attach_outbox: enable_outbox's privileged half, run by the gate
 * for the table's owner.
 */
CREATE FUNCTION mandant.registry_attach_outbox(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl			regclass := (args ->> 'table')::oid::regclass;
	domain		text := args ->> 'domain';
	entity		text := COALESCE(args ->> 'entity', (SELECT c.relname FROM pg_class c WHERE c.oid = tbl));
	excluded	text[];
BEGIN
	IF domain IS NULL OR domain !~ '^[a-z][a-z0-9_]{0,62}$' OR entity !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid event domain or entity: %.%', COALESCE(domain, 'NULL'), entity
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Topics are domain.entity.action; domain and entity are lower-case words (a-z first, then a-z, 0-9, ''_'').',
				  HINT = 'Pass e.g. mandant.enable_outbox(''app.site'', ''risk'', ''site'').';
	END IF;
	IF domain = 'platform' THEN
		RAISE EXCEPTION 'event domain "platform" is reserved'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'platform.* events come from mandant and trusted backends only.',
				  HINT = 'Name the domain after your application, e.g. ''risk''.';
	END IF;
	PERFORM mandant.check_primary_key(tbl, 'Outbox events name their aggregate by the primary key, and are delivered in order per aggregate.',
									  'mandant.enable_outbox');
	/* on Citus, a table's events are kept in the shard of mandant.outbox beside its own */
	PERFORM mandant.check_kept_beside(tbl, 'mandant.outbox', 'events', 'or publish no events for it');
	excluded := mandant.check_excluded_columns(tbl, mandant.text_array(args -> 'excludeColumns'));
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.outbox_table AS r (relid, domain, entity, exclude_columns, enabled_by)
	VALUES (tbl, domain, entity, excluded, caller)
	ON CONFLICT (relid) DO UPDATE SET domain = EXCLUDED.domain, entity = EXCLUDED.entity,
		exclude_columns = EXCLUDED.exclude_columns, enabled_at = EXCLUDED.enabled_at, enabled_by = EXCLUDED.enabled_by
	WHERE (r.domain, r.entity, r.exclude_columns) IS DISTINCT FROM (EXCLUDED.domain, EXCLUDED.entity, EXCLUDED.exclude_columns);
	PERFORM mandant.attach_trigger(tbl, 'mandant_outbox',
		format('CREATE TRIGGER mandant_outbox AFTER INSERT OR DELETE OR UPDATE ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger(%s)',
			   tbl,
			   (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
				FROM unnest(ARRAY[domain, entity] || excluded) WITH ORDINALITY u (a, o))));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.disable_outbox(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_outbox');
	PERFORM mandant.gate_call('detach_outbox', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_outbox(regclass) IS
'Stop publishing events for tbl (events already written stay). The table owner only.';

CREATE FUNCTION mandant.registry_detach_outbox(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'mandant_outbox');
	DELETE FROM mandant.outbox_table r WHERE r.relid = tbl;
	RETURN NULL;
END
$$;

/*
 * outbox_claimable: the events a claim may lease now, the rule of delivery
 * in order per aggregate: pending, available, not leased, and no older
 * event of the same aggregate unpublished.  For op_outbox_claim only.
 */
CREATE VIEW mandant.outbox_claimable AS
	SELECT c.id, c.created_at FROM mandant.outbox c
	WHERE c.published_at IS NULL AND c.dead_at IS NULL
	  AND c.available_at <= pg_catalog.now()
	  AND (c.locked_until IS NULL OR c.locked_until <= pg_catalog.now())
	  AND NOT EXISTS (SELECT 1 FROM mandant.outbox p
					  WHERE p.tenant_id = c.tenant_id AND p.aggregate_type = c.aggregate_type
						AND p.aggregate_id = c.aggregate_id AND p.id < c.id
						AND p.published_at IS NULL);

COMMENT ON VIEW mandant.outbox_claimable IS
'Internal: the outbox events that a claim may lease now (pending, available, not leased, no older unpublished event of their aggregate).';

REVOKE ALL ON mandant.outbox_claimable FROM PUBLIC;

/*
 * outbox_claim leases up to max events to a consumer.  Candidates whose
 * lease expired after their last allowed attempt are dead-lettered instead
 * of delivered (the batch is then smaller).
 */
CREATE FUNCTION mandant.op_outbox_claim(consumer text, max integer DEFAULT 100,
										lease interval DEFAULT '30 seconds')
RETURNS TABLE (id bigint, event_id uuid, topic text, tenant_id uuid, aggregate_id text,
			   attempts integer, envelope jsonb, headers jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	max_attempts constant integer := current_setting('mandant.outbox_max_attempts')::integer;
	picked		bigint[];
BEGIN
	IF consumer IS NULL OR length(consumer) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'consumer name must have 1 to 200 characters'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('mandant.outbox_claim() was called with consumer %L.', consumer),
				  HINT = 'Name the consumer, e.g. ''mailer-1''; leases record it.';
	END IF;
	IF max IS NULL OR max NOT BETWEEN 1 AND 10000 OR lease IS NULL OR lease < interval '1 second' THEN
		RAISE EXCEPTION 'invalid claim size or lease'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('max is %s and lease is %s.', COALESCE(max::text, 'NULL'), COALESCE(lease::text, 'NULL')),
				  HINT = 'Claim 1 to 10000 events with a lease of at least one second.';
	END IF;

	IF mandant.citus_distribution_column('mandant.outbox') IS NOT NULL THEN
		/*
		 * Citus locks no rows for a query over many shards (FOR UPDATE):
		 * the candidates are read without locks, and the updates take each
		 * one only if it is still claimable once its row is locked, so no
		 * two consumers lease one event; a second consumer waits for the
		 * first one's rows instead of skipping them.  The oldest come
		 * first by time: ids carry the node that numbered them.  The
		 * envelope is built here, as Citus evaluates no stable function of
		 * a column on the shards of an UPDATE.
		 */
		SELECT array_agg(c.id) INTO picked FROM (
			SELECT c.id FROM mandant.outbox_claimable c ORDER BY c.created_at, c.id LIMIT max) c;
		IF picked IS NULL THEN
			RETURN;
		END IF;
		UPDATE mandant.outbox o
		SET dead_at = now(), locked_until = NULL,
			last_error = 'the lease of ' || o.locked_by || ' expired after attempt ' || o.attempts::text
		WHERE o.id = ANY (picked) AND o.attempts >= max_attempts
		  AND o.published_at IS NULL AND o.dead_at IS NULL
		  AND (o.locked_until IS NULL OR o.locked_until <= now());
		RETURN QUERY
		WITH leased AS (
			UPDATE mandant.outbox o
			SET locked_until = now() + lease, locked_by = consumer, attempts = o.attempts + 1
			WHERE o.id = ANY (picked) AND o.attempts < max_attempts
			  AND o.published_at IS NULL AND o.dead_at IS NULL AND o.available_at <= now()
			  AND (o.locked_until IS NULL OR o.locked_until <= now())
			RETURNING o.id, o.event_id, o.topic, o.tenant_id, o.aggregate_id, o.attempts, o.created_at,
					  o.payload, o.headers
		)
		SELECT l.id, l.event_id, l.topic, l.tenant_id, l.aggregate_id, l.attempts,
			   jsonb_build_object('eventId', l.event_id, 'type', l.topic, 'tenantId', l.tenant_id,
								  'timestamp', to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
								  'payload', l.payload),
			   l.headers
		FROM leased l;
		RETURN;
	END IF;

	RETURN QUERY
	WITH candidate AS (
		SELECT c.id FROM mandant.outbox_claimable c
		ORDER BY c.id
		LIMIT max
		FOR UPDATE SKIP LOCKED
	),
	expired AS (
		/* leased after their last allowed attempt, and never acknowledged */
		UPDATE mandant.outbox o
		SET dead_at = now(), locked_until = NULL,
			last_error = format('the lease of %s expired after attempt %s', o.locked_by, o.attempts)
		FROM candidate
		WHERE o.id = candidate.id AND o.attempts >= max_attempts
	)
	UPDATE mandant.outbox o
	SET locked_until = now() + lease, locked_by = consumer, attempts = o.attempts + 1
	FROM candidate
	WHERE o.id = candidate.id AND o.attempts < max_attempts
	RETURNING o.id, o.event_id, o.topic, o.tenant_id, o.aggregate_id, o.attempts,
			  jsonb_build_object('eventId', o.event_id, 'type', o.topic, 'tenantId', o.tenant_id,
								 'timestamp', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
								 'payload', o.payload),
			  o.headers;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_claim(text, integer, interval) IS
'Internal: the body of mandant.outbox_claim(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_claim(consumer text, max integer DEFAULT 100,
									 lease interval DEFAULT '30 seconds')
RETURNS TABLE (id bigint, event_id uuid, topic text, tenant_id uuid, aggregate_id text,
			   attempts integer, envelope jsonb, headers jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_claim');
	RETURN QUERY SELECT * FROM mandant.op_outbox_claim(consumer, max, lease);
END
$$;

COMMENT ON FUNCTION mandant.outbox_claim(text, integer, interval) IS
'Lease up to max pending events (oldest first, FOR UPDATE SKIP LOCKED, never past an older unpublished event of the same aggregate) to consumer for lease. Returns each with its envelope {eventId, type, tenantId, timestamp, payload}. mandant_service and mandant_admin only.';

/* PL/pgSQL: Citus plans no parameters of SQL functions */
CREATE FUNCTION mandant.op_outbox_ack(ids bigint[])
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acked	bigint;
BEGIN
	UPDATE mandant.outbox o
	SET published_at = now(), locked_until = NULL
	WHERE o.id = ANY (ids) AND o.published_at IS NULL AND o.dead_at IS NULL
	  AND o.locked_until IS NOT NULL;
	GET DIAGNOSTICS acked = ROW_COUNT;
	RETURN acked;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_ack(bigint[]) IS
'Internal: the body of mandant.outbox_ack(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_ack(ids bigint[])
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_ack');
	RETURN mandant.op_outbox_ack(ids);
END
$$;

COMMENT ON FUNCTION mandant.outbox_ack(bigint[]) IS
'Mark leased events published; returns how many were (unknown, unleased or already published ids are ignored). mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.op_outbox_nack(id bigint, error text, consumer text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e			mandant.outbox;
	max_attempts constant integer := current_setting('mandant.outbox_max_attempts')::integer;
	retry_at	timestamptz;
	dead		timestamptz;
BEGIN
	/*
	 * Read without a lock (Citus locks no row it reads over many shards);
	 * the UPDATE below takes the row only if its lease is still the one
	 * read here.
	 */
	SELECT * INTO e FROM mandant.outbox o WHERE o.id = op_outbox_nack.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % does not exist', id
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('No row of mandant.outbox has id %s.', id),
				  HINT = 'Pass the id that mandant.outbox_claim() returned.';
	END IF;
	IF e.published_at IS NOT NULL OR e.dead_at IS NOT NULL OR e.locked_until IS NULL
		OR e.locked_until <= now() OR (consumer IS NOT NULL AND e.locked_by IS DISTINCT FROM consumer) THEN
		RAISE EXCEPTION 'outbox event % is not leased%', id, COALESCE(' by ' || consumer, '')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Event %s is %s.', id,
								  CASE WHEN e.published_at IS NOT NULL THEN 'published'
									   WHEN e.dead_at IS NOT NULL THEN 'dead'
									   WHEN e.locked_until IS NULL THEN 'not claimed'
									   WHEN e.locked_until <= now() THEN format('no longer leased (the lease of %s expired)', e.locked_by)
									   ELSE format('leased by %s', e.locked_by) END),
				  HINT = 'Only the consumer holding a lease can reject the event; claim it again.';
	END IF;
	/* computed here: Citus sends the shards no stable function in a CASE */
	retry_at := now() + make_interval(secs => LEAST(60, 2 ^ LEAST(e.attempts - 1, 6)));
	IF e.attempts >= max_attempts THEN
		dead := now();
	END IF;
	UPDATE mandant.outbox o
	SET locked_until = NULL, last_error = left(COALESCE(error, '(no error given)'), 2000),
		available_at = retry_at, dead_at = dead
	WHERE o.id = op_outbox_nack.id AND o.attempts = e.attempts AND o.locked_until = e.locked_until
	  AND o.locked_until > now() AND o.published_at IS NULL AND o.dead_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % is not leased%', id, COALESCE(' by ' || consumer, '')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('The lease of %s on event %s ended while it was rejected.', e.locked_by, id),
				  HINT = 'Only the consumer holding a lease can reject the event; claim it again.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_nack(bigint, text, text) IS
'Internal: the body of mandant.outbox_nack(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_nack(id bigint, error text, consumer text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_nack');
	PERFORM mandant.op_outbox_nack(id, error, consumer);
END
$$;

COMMENT ON FUNCTION mandant.outbox_nack(bigint, text, text) IS
'Reject a leased event: it is retried after 1, 2, 4 ... 60 seconds, and dead after mandant.outbox_max_attempts attempts. With consumer, the lease must be that consumer''s. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.op_outbox_replay(id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE mandant.outbox o
	SET published_at = NULL, dead_at = NULL, locked_until = NULL, locked_by = NULL,
		attempts = 0, available_at = now()
	WHERE o.id = op_outbox_replay.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % does not exist', id
			USING ERRCODE = 'no_data_found',
				  DETAIL = format('No row of mandant.outbox has id %s (published events may have been purged).', id),
				  HINT = 'Look the event up in mandant.outbox first.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_replay(bigint) IS
'Internal: the body of mandant.outbox_replay(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_replay(id bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_replay');
	PERFORM mandant.op_outbox_replay(id);
END
$$;

COMMENT ON FUNCTION mandant.outbox_replay(bigint) IS
'Deliver an event again (a dead one, or a published one): pending now, attempts reset. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.op_outbox_skip(id bigint, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.require_reason(reason, 'skip an event',
								   format('mandant.outbox_skip(%s) was called without a reason.', id),
								   'Say why the event is given up; the reason is kept with it.');
	UPDATE mandant.outbox o
	SET published_at = now(), locked_until = NULL,
		/* no format(): Citus evaluates no stable function of a column on the shards of an UPDATE */
		last_error = 'skipped by ' || session_user::text || ': ' || reason || ' (last error: ' ||
			COALESCE(o.last_error, '') || ')'
	WHERE o.id = op_outbox_skip.id AND o.dead_at IS NOT NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox event % is not dead', id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Only dead events can be skipped; event %s is missing or still deliverable.', id),
				  HINT = 'Dead events have dead_at set; see mandant.outbox_stats().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_skip(bigint, text) IS
'Internal: the body of mandant.outbox_skip(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_skip(id bigint, reason text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_skip');
	PERFORM mandant.op_outbox_skip(id, reason);
END
$$;

COMMENT ON FUNCTION mandant.outbox_skip(bigint, text) IS
'Give up a dead event (it counts as published, with the reason recorded), releasing the later events of its aggregate. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.op_outbox_purge(older_than interval)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '0' THEN
		RAISE EXCEPTION 'invalid purge age'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('older_than is %s.', COALESCE(older_than::text, 'NULL')),
				  HINT = 'Pass how long published events are kept, e.g. ''7 days''.';
	END IF;
	DELETE FROM mandant.outbox o WHERE o.published_at < now() - older_than;
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;

COMMENT ON FUNCTION mandant.op_outbox_purge(interval) IS
'Internal: the body of mandant.outbox_purge(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_purge(older_than interval)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_purge');
	RETURN mandant.op_outbox_purge(older_than);
END
$$;

COMMENT ON FUNCTION mandant.outbox_purge(interval) IS
'Delete events published longer ago than older_than; returns how many. mandant_service and mandant_admin only.';

CREATE FUNCTION mandant.op_outbox_stats()
RETURNS TABLE (pending bigint, leased bigint, dead bigint, oldest_pending_age interval)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT count(*) FILTER (WHERE o.dead_at IS NULL AND (o.locked_until IS NULL OR o.locked_until <= now())),
		   count(*) FILTER (WHERE o.dead_at IS NULL AND o.locked_until > now()),
		   count(*) FILTER (WHERE o.dead_at IS NOT NULL),
		   now() - min(o.created_at) FILTER (WHERE o.dead_at IS NULL)
	FROM mandant.outbox o
	WHERE o.published_at IS NULL
$$;

COMMENT ON FUNCTION mandant.op_outbox_stats() IS
'Internal: the body of mandant.outbox_stats(), which checks its caller first (mandant.gate_check).';

CREATE FUNCTION mandant.outbox_stats()
RETURNS TABLE (pending bigint, leased bigint, dead bigint, oldest_pending_age interval)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM mandant.gate_check('outbox_stats');
	RETURN QUERY SELECT * FROM mandant.op_outbox_stats();
END
$$;

COMMENT ON FUNCTION mandant.outbox_stats() IS
'Unpublished events: pending (including backing off), leased, dead, and the age of the oldest one not dead. mandant_service and mandant_admin only.';

DO $grants$
DECLARE
	f text;
BEGIN
	FOREACH f IN ARRAY ARRAY[
		'mandant.op_outbox_claim(text, integer, interval)', 'mandant.op_outbox_ack(bigint[])',
		'mandant.op_outbox_nack(bigint, text, text)', 'mandant.op_outbox_replay(bigint)',
		'mandant.op_outbox_skip(bigint, text)', 'mandant.op_outbox_purge(interval)',
		'mandant.op_outbox_stats()']
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO mandant_service, mandant_admin', f);
	END LOOP;
END
$grants$;
