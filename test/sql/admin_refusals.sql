-- The functions that only platform administrators (mandant_admin) and
-- trusted backends (mandant_service) may call: create_tenant, audit_seal,
-- outbox_claim, set_quota, usage_reconcile and the others.  A role without
-- the grant is refused by mandant's gate with 42501, and the refusal names
-- the role to grant; their bodies (mandant.op_<name>) are granted to those
-- roles only, so PostgreSQL refuses a direct call too.  A database of its
-- own (test/fixtures/attack.sql): the calls that pass would change
-- counters and sequences the other tests print.
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_admin_refusals
\i test/fixtures/attack.sql
\set ECHO all

-- Each function once, with arguments it would take, and who may call it.
CREATE SCHEMA refusal;
GRANT USAGE ON SCHEMA refusal TO PUBLIC;
CREATE TABLE refusal.calls (fn text PRIMARY KEY, granted_to text NOT NULL, call text NOT NULL);
INSERT INTO refusal.calls VALUES
	('create_tenant', 'admin', $$SELECT mandant.create_tenant('refused-tenant', 'Refused', 'nobody@refused.test')$$),
	('suspend_tenant', 'admin', $$SELECT mandant.suspend_tenant('a7700000-0000-4000-8000-00000000000a', 'refusals')$$),
	('resume_tenant', 'admin', $$SELECT mandant.resume_tenant('a7700000-0000-4000-8000-00000000000a')$$),
	('delete_tenant', 'admin', $$SELECT mandant.delete_tenant('a7700000-0000-4000-8000-00000000000a', 'attack-victim')$$),
	('export_tenant', 'admin', $$SELECT mandant.export_tenant('a7700000-0000-4000-8000-00000000000a')$$),
	('import_tenant', 'admin', $$SELECT mandant.import_tenant('{}')$$),
	('set_quota', 'admin', $$SELECT mandant.set_quota('a7700000-0000-4000-8000-00000000000a', 'records', 1000, reason => 'refusals')$$),
	('change_plan', 'admin', $$SELECT mandant.change_plan('a7700000-0000-4000-8000-00000000000a', 'free', 'refusals')$$),
	('usage_reconcile', 'admin', $$SELECT * FROM mandant.usage_reconcile()$$),
	('audit_seal', 'admin', $$SELECT mandant.audit_seal()$$),
	('audit_events', 'admin', $$SELECT * FROM mandant.audit_events('a7700000-0000-4000-8000-00000000000a')$$),
	('complete_tenant_provisioning', 'service', $$SELECT mandant.complete_tenant_provisioning('00000000-0000-4000-8000-000000000000')$$),
	('fail_tenant_provisioning', 'service', $$SELECT mandant.fail_tenant_provisioning('00000000-0000-4000-8000-000000000000', 'refusals')$$),
	('charge', 'service', $$SELECT mandant.charge('storage_bytes', 1)$$),
	('outbox_claim', 'service', $$SELECT * FROM mandant.outbox_claim('refusals', 1)$$),
	('outbox_ack', 'service', $$SELECT mandant.outbox_ack('{0}')$$),
	('outbox_nack', 'service', $$SELECT mandant.outbox_nack(0, 'refusals')$$),
	('outbox_replay', 'service', $$SELECT mandant.outbox_replay(0)$$),
	('outbox_skip', 'service', $$SELECT mandant.outbox_skip(0, 'refusals')$$),
	('outbox_purge', 'service', $$SELECT mandant.outbox_purge('1 day')$$),
	('outbox_stats', 'service', $$SELECT * FROM mandant.outbox_stats()$$);
GRANT SELECT ON refusal.calls TO PUBLIC;

-- try(call): 'ok', or the SQLSTATE, message, detail and hint call fails with.
CREATE FUNCTION refusal.try(call text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	state := 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END
$$;

-- The public functions are executable by everyone (they check their
-- caller); what only mandant_admin or mandant_service may execute is their
-- bodies, and nothing else.
SELECT count(*) AS calls,
	   count(*) FILTER (WHERE has_function_privilege('regress_attacker', p.oid, 'EXECUTE')) AS executable_by_anyone
FROM refusal.calls c JOIN pg_proc p ON p.pronamespace = 'mandant'::regnamespace AND p.proname = c.fn;
SELECT p.oid::regprocedure AS only_for_admin_or_service
FROM pg_proc p
WHERE p.pronamespace = 'mandant'::regnamespace
  AND NOT has_function_privilege('regress_attacker', p.oid, 'EXECUTE')
  AND (has_function_privilege('mandant_admin', p.oid, 'EXECUTE') OR has_function_privilege('mandant_service', p.oid, 'EXECUTE'))
ORDER BY 1::text;

-- A role with LOGIN and nothing else: each refusal names the grant.
\x on
SET ROLE regress_attacker;
SELECT c.fn, r.* FROM refusal.calls c, refusal.try(c.call) r ORDER BY c.granted_to, c.fn;
RESET ROLE;
\x off

-- A tenant's owner, signed in with a token of scope admin and inside the
-- tenant: the platform's functions are still the platform's.
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'victim_token') -> 'scopes' AS owner_scopes;
SELECT c.fn, r.state, r.hint FROM refusal.calls c, refusal.try(c.call) r ORDER BY c.granted_to, c.fn;
ROLLBACK;
RESET ROLE;

-- A trusted backend passes the gate of the service functions (what fails
-- then is the call itself: no tenant entered, no such event or operation);
-- the administrators' functions name mandant_admin.
SET ROLE regress_service;
BEGIN;
SELECT c.fn, r.state, coalesce(r.hint, r.message) AS hint_or_message
FROM refusal.calls c, refusal.try(c.call) r ORDER BY c.granted_to, c.fn;
ROLLBACK;
RESET ROLE;

-- A platform administrator passes every gate.
SET ROLE regress_admin;
BEGIN;
SELECT c.fn, r.state, r.message
FROM refusal.calls c, refusal.try(c.call) r
WHERE c.fn NOT IN ('delete_tenant', 'suspend_tenant') ORDER BY c.granted_to, c.fn;
ROLLBACK;
RESET ROLE;

-- Invalid input: the bodies called directly, refused by PostgreSQL
SET ROLE regress_attacker;
SELECT mandant.op_audit_seal();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM mandant.op_outbox_claim('refusals', 1);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the gate's check of an unknown operation
SELECT mandant.gate_check('drop_everything');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the check of an operation that mandant.gate_call() runs
SELECT mandant.gate_check('add_member');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: no operation (STRICT: checks nothing, refuses nothing)
SELECT mandant.gate_check(NULL) IS NULL AS checked_nothing;
RESET ROLE;
SELECT attack.verdict('the platform''s functions called without the grant');
