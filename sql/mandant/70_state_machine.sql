
/* ---------------------------------------------------------------------------
 * Status machines (extension/statemachine.c)
 *
 * A machine is owned by the role that created it (members of that role and
 * of mandant_admin may change it, and only they may bind tables to it);
 * everyone may read the definitions.  The definition tables are written
 * only through the functions below, which go through the gate
 * (mandant.gate_call, extension/gate.c) and check everything first.
 * Guards run as the machine's owner (statemachine.c).  The built-in machine of
 * mandant.tenant changes only with the extension.  Any change makes every
 * backend reload the machine (statement trigger -> relcache invalidation
 * of mandant.state_machine).
 * ------------------------------------------------------------------------- */

CREATE TABLE mandant.state_machine (
	name				text PRIMARY KEY
						CONSTRAINT state_machine_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	transition_columns	text[] NOT NULL DEFAULT '{}',
	owner				regrole NOT NULL DEFAULT CURRENT_USER::regrole,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE mandant.state_machine IS
'State machines: name, the columns a transition out of a frozen state may change, owner.';

CREATE TABLE mandant.state_machine_state (
	machine		text NOT NULL REFERENCES mandant.state_machine (name) ON DELETE CASCADE,
	state		text NOT NULL
				CONSTRAINT state_machine_state_format CHECK (state ~ '^[a-z][a-z0-9_]{0,62}$'),
	initial		boolean NOT NULL DEFAULT false,
	frozen		boolean NOT NULL DEFAULT false,
	PRIMARY KEY (machine, state)
);

COMMENT ON TABLE mandant.state_machine_state IS
'The states of each machine: initial (a row may start there), frozen (a row there changes only by a transition).';

CREATE TABLE mandant.state_transition (
	machine			text NOT NULL,
	from_state		text NOT NULL,
	to_state		text NOT NULL,
	required_scope	text CONSTRAINT state_transition_scope
						CHECK (required_scope IN ('read', 'write', 'delete', 'admin', 'internal')),
	guard			regprocedure,
	PRIMARY KEY (machine, from_state, to_state),
	FOREIGN KEY (machine, from_state) REFERENCES mandant.state_machine_state ON DELETE CASCADE,
	FOREIGN KEY (machine, to_state) REFERENCES mandant.state_machine_state ON DELETE CASCADE,
	CONSTRAINT state_transition_moves CHECK (from_state <> to_state)
);

COMMENT ON TABLE mandant.state_transition IS
'The declared transitions: the scope the caller must hold and the guard (old jsonb, new jsonb) -> boolean that must agree.';

CREATE TABLE mandant.state_machine_table (
	relid			regclass PRIMARY KEY,
	machine			text NOT NULL REFERENCES mandant.state_machine (name),
	state_column	name NOT NULL
);

COMMENT ON TABLE mandant.state_machine_table IS
'Tables bound to a state machine, and the column that holds the state.';

/* Readable by all; written only by mandant's functions. */
ALTER TABLE mandant.state_machine ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_machine FOR SELECT USING (true);
ALTER TABLE mandant.state_machine_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_machine_state FOR SELECT USING (true);
ALTER TABLE mandant.state_transition ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_transition FOR SELECT USING (true);
ALTER TABLE mandant.state_machine_table ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON mandant.state_machine_table FOR SELECT USING (true);

GRANT SELECT ON mandant.state_machine, mandant.state_machine_state,
	mandant.state_transition, mandant.state_machine_table TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine_state', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_machine_table', '');

CREATE FUNCTION mandant.state_machines_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_state_machines_changed'
LANGUAGE C;

COMMENT ON FUNCTION mandant.state_machines_changed() IS
'Trigger: makes every session reload its state machines after a change of their definitions.';

CREATE TRIGGER reload AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.state_machine
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.state_machines_changed();
CREATE TRIGGER reload AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.state_machine_state
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.state_machines_changed();
CREATE TRIGGER reload AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mandant.state_transition
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.state_machines_changed();

/* Transitions of tables that are not audited. */
CREATE SEQUENCE mandant.state_transition_log_id_seq CACHE 32;

CREATE TABLE mandant.state_transition_log (
	tenant_id		uuid NOT NULL,
	id				bigint NOT NULL DEFAULT pg_catalog.nextval('mandant.state_transition_log_id_seq'),
	occurred_at		timestamptz NOT NULL,
	machine			text NOT NULL,
	entity_type		text NOT NULL,
	entity_id		text,
	from_state		text NOT NULL,
	to_state		text NOT NULL,
	actor_user_id	uuid,
	request_id		text,
	PRIMARY KEY (tenant_id, id)
);

ALTER SEQUENCE mandant.state_transition_log_id_seq OWNED BY mandant.state_transition_log.id;

COMMENT ON TABLE mandant.state_transition_log IS
'Transitions of tables bound to a state machine and not audited (audited tables record them in mandant.audit_event, action transition). Append-only.';

ALTER TABLE mandant.state_transition_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mandant.state_transition_log
	FOR SELECT USING (tenant_id = mandant.current_tenant());
GRANT SELECT ON mandant.state_transition_log TO PUBLIC;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON mandant.state_transition_log
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.audit_append_only();
ALTER TABLE mandant.state_transition_log ENABLE ALWAYS TRIGGER append_only;

SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition_log', '');
SELECT pg_catalog.pg_extension_config_dump('mandant.state_transition_log_id_seq', '');

CREATE FUNCTION mandant.state_machine_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_state_machine_trigger'
LANGUAGE C;

COMMENT ON FUNCTION mandant.state_machine_trigger() IS
'Row trigger attached by mandant.enable_state_machine(): checks states and transitions.';

REVOKE ALL ON FUNCTION mandant.state_machines_changed() FROM PUBLIC;

CREATE FUNCTION mandant.check_guard(machine text, owner regrole, guard regprocedure)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_check_guard'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.check_guard(text, regrole, regprocedure) IS
'Internal to add_transition: raise unless guard may run as owner for machine (a permanent function (jsonb, jsonb) returning boolean, owned by a role with owner''s privileges, executable by owner).';

REVOKE ALL ON FUNCTION mandant.check_guard(text, regrole, regprocedure) FROM PUBLIC;

/*
 * check_state_names raises 22023 unless every name is a lower-case state
 * name; what says which argument is checked.
 */
CREATE FUNCTION mandant.check_state_names(names text[], what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad text;
BEGIN
	SELECT n INTO bad FROM unnest(names) n WHERE n IS NULL OR n !~ '^[a-z][a-z0-9_]{0,62}$' LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid state name %', COALESCE(quote_literal(bad), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s contains %s.', what, COALESCE(quote_literal(bad), 'NULL')),
				  HINT = 'State names are lower-case: a-z first, then a-z, 0-9 and ''_'', at most 63 characters.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_state_names(text[], text) IS
'Internal: raise 22023 unless every name is a valid state name.';

/*
 * check_states_exist raises unless every state is declared in the machine.
 */
CREATE FUNCTION mandant.check_states_exist(machine text, states text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	missing text;
BEGIN
	SELECT s INTO missing FROM unnest(states) s
	WHERE NOT EXISTS (SELECT 1 FROM mandant.state_machine_state x
					  WHERE x.machine = check_states_exist.machine AND x.state = s)
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION '"%" is not a state of state machine "%"', missing, machine
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('States of %L: %s.', machine,
								  (SELECT string_agg(x.state, ', ' ORDER BY x.state)
								   FROM mandant.state_machine_state x WHERE x.machine = check_states_exist.machine)),
				  HINT = 'Declare it first with mandant.add_state().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_states_exist(text, text[]) IS
'Internal: raise 22023 unless every state is declared in the machine.';

/*
 * The public functions that change machines are SECURITY INVOKER wrappers
 * around the gate; machine_<op> do the work with the extension owner's
 * rights once the gate has checked that the caller owns the machine (or
 * is a member of mandant_admin).
 */
CREATE FUNCTION mandant.create_state_machine(name text, initial_states text[],
											 frozen_states text[] DEFAULT '{}',
											 states text[] DEFAULT NULL,
											 transition_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_state_machine', NULL,
		jsonb_build_object('machine', name, 'initialStates', to_jsonb(initial_states),
						   'frozenStates', to_jsonb(frozen_states), 'states', to_jsonb(states),
						   'transitionColumns', to_jsonb(transition_columns)));
$$;

COMMENT ON FUNCTION mandant.create_state_machine(text, text[], text[], text[], text[]) IS
'Declare a state machine: its initial and frozen states, optionally further states, and the columns a transition out of a frozen state may change. The caller owns it.';

/*
 * text_array returns the text[] of a JSON array (NULL for JSON null or a
 * missing key).
 */
CREATE FUNCTION mandant.text_array(value jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE jsonb_typeof(value)
		   WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(value))
		   WHEN 'null' THEN NULL
		   ELSE ARRAY[value #>> '{}'] END
$$;

COMMENT ON FUNCTION mandant.text_array(jsonb) IS
'Internal: the text[] of a JSON array (of the gate''s arguments).';

CREATE FUNCTION mandant.machine_create(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_create>>
DECLARE
	name				text := args ->> 'machine';
	initial_states		text[] := mandant.text_array(args -> 'initialStates');
	frozen_states		text[] := COALESCE(mandant.text_array(args -> 'frozenStates'), '{}');
	transition_columns	text[] := mandant.text_array(args -> 'transitionColumns');
	all_states			text[];
	owner				regrole := (SELECT r.oid FROM pg_roles r WHERE r.rolname = caller)::regrole;
BEGIN
	IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid state machine name %', COALESCE(quote_literal(name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A state machine name is lower-case: a-z first, then a-z, 0-9 and ''_'', at most 63 characters.',
				  HINT = 'Name it after what it governs, e.g. ''risk_assessment''.';
	END IF;
	IF COALESCE(cardinality(initial_states), 0) = 0 THEN
		RAISE EXCEPTION 'state machine "%" needs at least one initial state', name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'initial_states is empty.',
				  HINT = 'Pass the states a new row may start in, e.g. ''{draft}''.';
	END IF;
	all_states := ARRAY(SELECT DISTINCT s FROM unnest(COALESCE(mandant.text_array(args -> 'states'), '{}')
													  || initial_states || frozen_states) s ORDER BY s);
	PERFORM mandant.check_state_names(initial_states, 'initial_states');
	PERFORM mandant.check_state_names(frozen_states, 'frozen_states');
	PERFORM mandant.check_state_names(all_states, 'states');
	IF EXISTS (SELECT 1 FROM unnest(COALESCE(transition_columns, '{}')) c WHERE c IS NULL OR c = '') THEN
		RAISE EXCEPTION 'transition columns must be column names'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('transition_columns is %L.', transition_columns),
				  HINT = 'Name the columns a transition out of a frozen state may set, e.g. ''{approved_by,approved_at}''.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine_create.name) THEN
		RAISE EXCEPTION 'state machine "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('mandant.state_machine has a row named %L.', name),
				  HINT = 'Change it with mandant.add_state() and mandant.add_transition(), or pick another name.';
	END IF;

	INSERT INTO mandant.state_machine (name, transition_columns, owner)
	VALUES (name, COALESCE(transition_columns, '{}'), owner);
	INSERT INTO mandant.state_machine_state (machine, state, initial, frozen)
	SELECT name, s, s = ANY (initial_states), s = ANY (frozen_states)
	FROM unnest(all_states) s;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.add_state(machine text, state text, initial boolean DEFAULT false,
								  frozen boolean DEFAULT false)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('add_state', NULL,
		jsonb_build_object('machine', machine, 'state', state, 'initial', initial, 'frozen', frozen));
$$;

COMMENT ON FUNCTION mandant.add_state(text, text, boolean, boolean) IS
'Declare one more state of a machine. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.machine_add_state(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_add_state>>
DECLARE
	machine	text := args ->> 'machine';
	state	text := args ->> 'state';
BEGIN
	PERFORM mandant.check_state_names(ARRAY[state], 'state');
	IF EXISTS (SELECT 1 FROM mandant.state_machine_state x
			   WHERE x.machine = machine_add_state.machine AND x.state = machine_add_state.state) THEN
		RAISE EXCEPTION 'state machine "%" already has state "%"', machine, state
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('mandant.state_machine_state has %L for %L.', state, machine),
				  HINT = 'Pick another name; states are never redefined in place.';
	END IF;
	INSERT INTO mandant.state_machine_state (machine, state, initial, frozen)
	VALUES (machine, state, COALESCE((args ->> 'initial')::boolean, false),
			COALESCE((args ->> 'frozen')::boolean, false));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.add_transition(machine text, from_state text, to_state text,
									   required_scope text DEFAULT NULL,
									   guard regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('add_transition', NULL,
		jsonb_build_object('machine', machine, 'from', from_state, 'to', to_state,
						   'requiredScope', required_scope, 'guard', guard::oid));
$$;

COMMENT ON FUNCTION mandant.add_transition(text, text, text, text, regprocedure) IS
'Declare a transition; the caller must then hold required_scope, and guard(old jsonb, new jsonb) must return true. The guard runs as the machine''s owner, who must be allowed to execute it, and must be owned by a role with the owner''s privileges. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.machine_add_transition(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_add_transition>>
DECLARE
	machine			text := args ->> 'machine';
	from_state		text := args ->> 'from';
	to_state		text := args ->> 'to';
	required_scope	text := args ->> 'requiredScope';
	guard			regprocedure := (args ->> 'guard')::oid::regprocedure;
	owner			regrole := (SELECT m.owner FROM mandant.state_machine m WHERE m.name = machine);
BEGIN
	PERFORM mandant.check_states_exist(machine, ARRAY[from_state, to_state]);
	IF from_state = to_state THEN
		RAISE EXCEPTION 'a transition must change the state'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('from_state and to_state are both %L.', from_state),
				  HINT = 'Rows that keep their state need no transition.';
	END IF;
	IF required_scope IS NOT NULL
		AND required_scope NOT IN ('read', 'write', 'delete', 'admin', 'internal') THEN
		RAISE EXCEPTION 'unknown scope "%"', required_scope
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('required_scope is %L.', required_scope),
				  HINT = 'Valid scopes are read, write, delete, admin and internal.';
	END IF;
	IF guard IS NOT NULL THEN
		PERFORM mandant.check_guard(machine, owner, guard);
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.state_transition t
			   WHERE t.machine = machine_add_transition.machine AND t.from_state = machine_add_transition.from_state
				 AND t.to_state = machine_add_transition.to_state) THEN
		RAISE EXCEPTION 'transition from "%" to "%" already exists', from_state, to_state
			USING ERRCODE = 'duplicate_object',
				  DETAIL = format('State machine %L already declares it.', machine),
				  HINT = 'Remove it with mandant.remove_transition() first to change its scope or guard.';
	END IF;
	INSERT INTO mandant.state_transition (machine, from_state, to_state, required_scope, guard)
	VALUES (machine, from_state, to_state, required_scope, guard);
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.remove_transition(machine text, from_state text, to_state text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('remove_transition', NULL,
		jsonb_build_object('machine', machine, 'from', from_state, 'to', to_state));
$$;

COMMENT ON FUNCTION mandant.remove_transition(text, text, text) IS
'Remove a declared transition; every session obeys the change from its next statement. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.machine_remove_transition(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_remove_transition>>
DECLARE
	machine		text := args ->> 'machine';
	from_state	text := args ->> 'from';
	to_state	text := args ->> 'to';
BEGIN
	DELETE FROM mandant.state_transition t
	WHERE t.machine = machine_remove_transition.machine AND t.from_state = machine_remove_transition.from_state
	  AND t.to_state = machine_remove_transition.to_state;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'transition from "%" to "%" does not exist', from_state, to_state
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('State machine %L does not declare it.', machine),
				  HINT = format('See SELECT * FROM mandant.state_transition WHERE machine = %L.', machine);
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.drop_state_machine(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('drop_state_machine', NULL, jsonb_build_object('machine', name));
$$;

COMMENT ON FUNCTION mandant.drop_state_machine(text) IS
'Drop an unused state machine with its states and transitions. Its owner or mandant_admin only.';

CREATE FUNCTION mandant.machine_drop(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
<<machine_drop>>
DECLARE
	name	text := args ->> 'machine';
	used_by	text;
BEGIN
	SELECT string_agg(r.relid::text, ', ' ORDER BY r.relid::text) INTO used_by
	FROM mandant.state_machine_table r WHERE r.machine = machine_drop.name;
	IF used_by IS NOT NULL THEN
		RAISE EXCEPTION 'state machine "%" is in use', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Tables bound to it: %s.', used_by),
				  HINT = 'Call mandant.disable_state_machine() on them first.';
	END IF;
	DELETE FROM mandant.state_machine m WHERE m.name = machine_drop.name;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.enable_state_machine(tbl regclass, machine text, "column" name DEFAULT 'status',
											 log_transitions boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stray text;
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.enable_state_machine');
	PERFORM mandant.check_state_column(tbl, machine, "column");
	/* on Citus, a table's transitions are kept in the log's shard beside its own */
	IF COALESCE(log_transitions, true) THEN
		PERFORM mandant.check_kept_beside(tbl, 'mandant.state_transition_log', 'transitions',
			format('or bind it with mandant.enable_state_machine(%L, %L, %L, log_transitions => false)', tbl::text, machine, "column"));
	END IF;
	/* the states as a value, so that the query is the same on a distributed table */
	EXECUTE format('SELECT %I FROM %s t WHERE %I IS NOT NULL AND %I <> ALL ($1) LIMIT 1',
				   "column", tbl, "column", "column")
		INTO stray USING ARRAY(SELECT x.state FROM mandant.state_machine_state x WHERE x.machine = enable_state_machine.machine);
	IF stray IS NOT NULL THEN
		RAISE EXCEPTION 'table % has rows in state "%", which state machine "%" does not declare', tbl, stray, machine
			USING ERRCODE = 'check_violation',
				  DETAIL = format('Column %I holds %L.', "column", stray),
				  HINT = 'Declare the state with mandant.add_state(), or fix the rows first.';
	END IF;
	PERFORM mandant.gate_call('bind_state_machine', NULL,
		jsonb_build_object('table', tbl::oid, 'machine', machine, 'column', "column",
						   'log', COALESCE(log_transitions, true)));
END
$$;

COMMENT ON FUNCTION mandant.enable_state_machine(regclass, text, name, boolean) IS
'Bind a table to a state machine through a text column: a C BEFORE INSERT OR UPDATE trigger enforces initial states, declared transitions, scopes, guards and frozen states (MD010). Transitions are recorded by the audit trail when the table is audited, else in mandant.state_transition_log unless log_transitions is false. Idempotent; the table owner, who must also own the machine (or be a member of mandant_admin).';

/*
 * check_state_column raises unless the machine exists and column is a
 * text or varchar column of tbl.
 */
CREATE FUNCTION mandant.check_state_column(tbl regclass, machine text, "column" name)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coltype regtype;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine) THEN
		RAISE EXCEPTION 'state machine "%" does not exist', machine
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('No row of mandant.state_machine is named %L.', machine),
				  HINT = 'Create it with mandant.create_state_machine() first.';
	END IF;
	SELECT a.atttypid::regtype INTO coltype FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = "column" AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', "column", tbl
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('mandant.enable_state_machine(%L, %L) names it as the state column.', tbl, machine),
				  HINT = 'Add a text column for the state, or name the right one in the third argument.';
	END IF;
	IF coltype NOT IN ('text'::regtype, 'character varying'::regtype) THEN
		RAISE EXCEPTION 'state column "%" of table % must be of type text', "column", tbl
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = format('Column %I is of type %s.', "column", coltype),
				  HINT = 'Store states as text (or varchar).';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_state_column(regclass, text, name) IS
'Internal: raise unless the machine exists and the column is a text or varchar column of the table.';

CREATE FUNCTION mandant.registry_bind_state_machine(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl		regclass := (args ->> 'table')::oid::regclass;
	machine	text := args ->> 'machine';
	col		name := args ->> 'column';
BEGIN
	PERFORM mandant.check_state_column(tbl, machine, col);
	PERFORM mandant.forget_missing_tables();
	INSERT INTO mandant.state_machine_table AS r (relid, machine, state_column)
	VALUES (tbl, machine, col)
	ON CONFLICT (relid) DO UPDATE SET machine = EXCLUDED.machine, state_column = EXCLUDED.state_column
	WHERE (r.machine, r.state_column) IS DISTINCT FROM (EXCLUDED.machine, EXCLUDED.state_column);
	PERFORM mandant.attach_trigger(tbl, 'zz_mandant_state_machine',
		format('CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON %s '
			   'FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger(%L, %L, %L)',
			   tbl, machine, col,
			   CASE WHEN COALESCE((args ->> 'log')::boolean, true) THEN 'log' ELSE 'nolog' END));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.disable_state_machine(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.check_table_target(tbl, 'mandant.disable_state_machine');
	PERFORM mandant.gate_call('unbind_state_machine', NULL, jsonb_build_object('table', tbl::oid));
END
$$;

COMMENT ON FUNCTION mandant.disable_state_machine(regclass) IS
'Unbind a table from its state machine. The table owner only.';

CREATE FUNCTION mandant.registry_unbind_state_machine(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl regclass := (args ->> 'table')::oid::regclass;
BEGIN
	PERFORM mandant.detach_trigger(tbl, 'zz_mandant_state_machine');
	DELETE FROM mandant.state_machine_table r WHERE r.relid = tbl;
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.next_states(machine text, state text)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.state_machine m WHERE m.name = machine) THEN
		RAISE EXCEPTION 'state machine "%" does not exist', machine
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('No row of mandant.state_machine is named %L.', machine),
				  HINT = 'Create it with mandant.create_state_machine().';
	END IF;
	PERFORM mandant.check_states_exist(machine, ARRAY[state]);
	RETURN ARRAY(SELECT t.to_state FROM mandant.state_transition t
				 WHERE t.machine = next_states.machine AND t.from_state = next_states.state
				 ORDER BY t.to_state);
END
$$;

COMMENT ON FUNCTION mandant.next_states(text, text) IS
'The states a row in state can move to (for user interfaces); scopes and guards still apply.';
