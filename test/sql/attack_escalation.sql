-- Adversarial, class 1: no user code runs with rights it was not given.
-- Every trap below tries ALTER ROLE ... SUPERUSER from code that mandant
-- (a SECURITY DEFINER function, a trigger, a quota recount, a guard) runs;
-- the trap swallows its own error, so an attack that fails leaves the
-- operation working and the verdict says whether anybody escalated.
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_attack_escalation
\i test/fixtures/attack.sql
\set ECHO all

-- The trap: becomes superuser if it runs as one.
CREATE FUNCTION attack.trap() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE format('ALTER ROLE %I SUPERUSER', 'regress_evil_owner');
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION attack.trap() TO PUBLIC;
CREATE FUNCTION attack.trap_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM attack.trap();
	RETURN NULL;
END
$$;
GRANT EXECUTE ON FUNCTION attack.trap_trigger() TO PUBLIC;

-- 1a. A login role registers a temporary view whose column runs the trap
-- for the quota counters: the registry takes no writes, the gate no
-- temporary relations.
SET SESSION AUTHORIZATION regress_attacker;
CREATE TEMP VIEW spy AS SELECT attack.trap() AS tenant_id;
INSERT INTO mandant.quota_table (relid, resource, tenant_column) VALUES ('spy', 'records', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('attach_quota', NULL, jsonb_build_object('table', 'spy'::regclass::oid, 'resource', 'records'));
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE scratch (tenant_id uuid);
SELECT mandant.enable_quota('scratch', 'records');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.tenant_table (relid, tenant_column) VALUES ('spy', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('temporary view in the registries');

-- 1b. A table owner's table, registered for quota, with a row level policy,
-- a trigger and a column default that spring the trap: the counters are
-- counted without running any of them.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.tickets (tenant_id uuid, id int, note text DEFAULT (attack.trap())::text, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('evil.tickets');
CREATE POLICY springs_trap ON evil.tickets AS RESTRICTIVE USING (attack.trap());
CREATE TRIGGER springs_trap AFTER INSERT OR DELETE ON evil.tickets FOR EACH STATEMENT EXECUTE FUNCTION attack.trap_trigger();
SELECT mandant.enable_quota('evil.tickets', 'tickets');
SELECT mandant.enable_audit('evil.tickets');
GRANT SELECT, INSERT, UPDATE, DELETE ON evil.tickets TO regress_service;
RESET SESSION AUTHORIZATION;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'evil');
INSERT INTO evil.tickets (id) VALUES (1), (2);
COMMIT;
RESET ROLE;
SET ROLE regress_admin;
DELETE FROM mandant.tenant_usage;	-- refused: only mandant writes the counters
\echo :LAST_ERROR_SQLSTATE
SELECT resource, used FROM mandant.usage(:'evil') WHERE resource = 'tickets';
SELECT count(*) AS drifted FROM mandant.usage_reconcile();
RESET ROLE;
SELECT attack.verdict('quota recount of a booby-trapped table');

-- 1c. delete_tenant and export_tenant run the table owner's code (its
-- trigger, its default, its policy, a cast of its own type to json) as the
-- owner, never as the extension's owner.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TYPE evil.mood AS ENUM ('calm', 'angry');
CREATE FUNCTION evil.mood_json(m evil.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
	PERFORM attack.trap();
	RETURN to_json(m::text);
END
$$;
CREATE CAST (evil.mood AS json) WITH FUNCTION evil.mood_json(evil.mood);
ALTER TABLE evil.tickets ADD COLUMN mood evil.mood NOT NULL DEFAULT 'calm';
RESET SESSION AUTHORIZATION;
SET ROLE regress_admin;
SELECT mandant.export_tenant(:'evil') -> 'tables' -> 'evil.tickets' AS exported;
RESET ROLE;
SELECT attack.verdict('export of a booby-trapped table');
SET ROLE regress_admin;
SELECT mandant.export_tenant(:'evil') AS evil_export \gset
SELECT mandant.delete_tenant(:'evil', 'attack-evil') -> 'evil.tickets' AS deleted_tickets;
RESET ROLE;
SELECT attack.verdict('deletion of a tenant with a booby-trapped table');

-- 1d. import_tenant inserts as the owner too, with the owner's ALWAYS
-- trigger, index expression and domain check (replica mode does not stop
-- them).
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE FUNCTION evil.key(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	PERFORM attack.trap();
	RETURN v;
END
$$;
CREATE INDEX tickets_trap ON evil.tickets (evil.key(id));
CREATE TRIGGER springs_trap_always BEFORE INSERT ON evil.tickets FOR EACH ROW EXECUTE FUNCTION attack.trap_trigger();
ALTER TABLE evil.tickets ENABLE ALWAYS TRIGGER springs_trap_always;
RESET SESSION AUTHORIZATION;
SET ROLE regress_admin;
SELECT mandant.import_tenant(:'evil_export') = :'evil' AS imported;
RESET ROLE;
SELECT attack.verdict('import into a booby-trapped table');

-- 1e. mandant_admin cannot change the built-in state machine of
-- mandant.tenant (whose guards suspend_tenant would run).
SET ROLE regress_admin;
SELECT mandant.remove_transition('mandant_tenant', 'active', 'suspended');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('mandant_tenant', 'failed', 'active');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('add_state', NULL, '{"machine": "mandant_tenant", "state": "zombie"}');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.state_transition WHERE machine = 'mandant_tenant';
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.suspend_tenant(:'evil', 'still works');
SELECT mandant.resume_tenant(:'evil');
RESET ROLE;
SELECT count(*) AS builtin_transitions FROM mandant.state_transition WHERE machine = 'mandant_tenant';

-- 1f. A guard runs as its machine's owner, inside a security-restricted
-- operation, whoever makes the transition; a superuser making it lends
-- nothing.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE FUNCTION evil.guard(old_row jsonb, new_row jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT attack.trap()';
SELECT mandant.create_state_machine('evil_flow', '{open}', states => '{open,done}');
SELECT mandant.add_transition('evil_flow', 'open', 'done', guard => 'evil.guard(jsonb,jsonb)');
CREATE TABLE evil.cases (id int PRIMARY KEY, status text NOT NULL DEFAULT 'open');
SELECT mandant.enable_state_machine('evil.cases', 'evil_flow');
INSERT INTO evil.cases (id) VALUES (1);
RESET SESSION AUTHORIZATION;
UPDATE evil.cases SET status = 'done' WHERE id = 1;
SELECT status FROM evil.cases;
SELECT attack.verdict('guard run by a superuser''s transition');

-- 1g. A foreign key to mandant.tenant with ON DELETE CASCADE and a
-- deferred constraint trigger behind it would run the owner's code at the
-- administrator's COMMIT, outside any security-restricted operation.
-- Nobody but mandant may reference mandant.tenant; a key left from 0.1.0
-- (made here by the superuser) makes delete_tenant refuse up front.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.cascade (tenant_id uuid REFERENCES mandant.tenant (id) ON DELETE CASCADE);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE evil.cascade (tenant_id uuid);
CREATE CONSTRAINT TRIGGER springs_trap AFTER DELETE ON evil.cascade
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION attack.trap_trigger();
RESET SESSION AUTHORIZATION;
ALTER TABLE evil.cascade ADD FOREIGN KEY (tenant_id) REFERENCES mandant.tenant (id) ON DELETE CASCADE;
SET ROLE regress_admin;
SELECT mandant.create_tenant('attack-doomed', 'Doomed', 'boss@doomed.test') AS doomed \gset
RESET ROLE;
INSERT INTO evil.cascade VALUES (:'doomed');
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'doomed', 'attack-doomed');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP TABLE evil.cascade;
SET ROLE regress_admin;
SELECT mandant.delete_tenant(:'doomed', 'attack-doomed') ->> 'mandant.membership' AS deleted_members;
RESET ROLE;
SELECT attack.verdict('foreign key cascade into a deferred trigger');

-- 1h. mandant_admin may edit any state machine, but a guard runs as the
-- machine's owner: only a guard whose owner has that owner's privileges
-- may be declared, and a guard planted some other way (as 0.1.0 allowed on
-- mandant_tenant) is refused before it runs.
CREATE FUNCTION attack.admin_guard(old_row jsonb, new_row jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT attack.trap()';
ALTER FUNCTION attack.admin_guard(jsonb, jsonb) OWNER TO regress_admin;
SELECT mandant.create_state_machine('ops_flow', '{open}', states => '{open,done}');
SET ROLE regress_admin;
SELECT mandant.add_transition('ops_flow', 'open', 'done', guard => 'attack.admin_guard(jsonb,jsonb)');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
INSERT INTO mandant.state_transition (machine, from_state, to_state, guard)
VALUES ('mandant_tenant', 'active', 'suspended', 'attack.admin_guard(jsonb,jsonb)')
ON CONFLICT (machine, from_state, to_state) DO UPDATE SET guard = EXCLUDED.guard;
SET ROLE regress_admin;
SELECT mandant.suspend_tenant(:'evil', 'planted guard');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
UPDATE mandant.state_transition SET guard = NULL WHERE machine = 'mandant_tenant';
SELECT mandant.drop_state_machine('ops_flow');
SELECT attack.verdict('guard planted by mandant_admin on a superuser''s machine');

-- 1i. Deleting a tenant's row makes PostgreSQL check every tenant table's
-- key as the table's owner, planning a query that evaluates the owner's
-- function in a partial index predicate; mandant deletes that row inside
-- a security-restricted operation, so the function cannot queue deferred
-- work that would run as the administrator at commit.  A deferrable key
-- (whose check would run at commit) is refused up front.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE TABLE evil.queue (x int);
CREATE CONSTRAINT TRIGGER springs_trap AFTER INSERT ON evil.queue
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION attack.trap_trigger();
CREATE FUNCTION evil.act() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF session_user = 'regress_evil_owner' THEN
		RETURN true;
	END IF;
	BEGIN
		INSERT INTO evil.queue VALUES (1);
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	RETURN true;
END
$$;
CREATE FUNCTION evil.fold() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN evil.act(); END';
CREATE TABLE evil.folded (tenant_id uuid, id int);
SELECT mandant.enable_tenancy('evil.folded');
CREATE INDEX folded_trap ON evil.folded (tenant_id) WHERE evil.fold();
RESET SESSION AUTHORIZATION;
SET ROLE regress_admin;
SELECT mandant.create_tenant('attack-folded', 'Folded', 'boss@folded.test') AS folded \gset
SELECT mandant.delete_tenant(:'folded', 'attack-folded') ? 'evil.folded' AS deleted;
RESET ROLE;
SELECT count(*) AS queued_for_commit FROM evil.queue;
SELECT attack.verdict('owner code in the foreign key check of a tenant deletion');
SET SESSION AUTHORIZATION regress_evil_owner;
DROP INDEX evil.folded_trap;
ALTER TABLE evil.folded ALTER CONSTRAINT tenant_id_mandant_tenant_fkey DEFERRABLE INITIALLY DEFERRED;
RESET SESSION AUTHORIZATION;
SET ROLE regress_admin;
SELECT mandant.create_tenant('attack-folded-2', 'Folded 2', 'boss@folded.test') AS folded \gset
SELECT mandant.delete_tenant(:'folded', 'attack-folded-2');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT attack.verdict('deferrable key to mandant.tenant');

-- 1j. Registering a table checks its existing rows against mandant.tenant:
-- that plans a query on the table too, so it runs as the table's owner in
-- a security-restricted operation, never as the extension's owner.
SET SESSION AUTHORIZATION regress_evil_owner;
CREATE FUNCTION evil.fold_trap() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN attack.trap(); END';
CREATE TABLE evil.prefolded (tenant_id uuid, id int);
CREATE INDEX prefolded_trap ON evil.prefolded (tenant_id) WHERE evil.fold_trap();
SELECT mandant.enable_tenancy('evil.prefolded');
RESET SESSION AUTHORIZATION;
SELECT attack.verdict('owner code in the registration of a tenant table');
