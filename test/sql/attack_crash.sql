-- Adversarial, class 2: no input crashes the server.  Each case used to
-- kill a backend (and with it every session of the cluster); now each is
-- an error with an SQLSTATE.  A crash here would end this test's
-- connection; scripts/test.sh also fails the run if the server log shows
-- a backend "terminated by signal".
\set SHOW_CONTEXT never
\set ECHO none
\set attack_db regress_mandant_attack_crash
\i test/fixtures/attack.sql
\set ECHO all

-- 2a. A state column that is not text: attached by hand (as the
-- superuser, since nobody else may attach mandant's triggers), and after
-- enable_state_machine by ALTER TABLE ... TYPE.
SET ROLE regress_evil_owner;
SELECT mandant.create_state_machine('crash_flow', '{open}', states => '{open,done}');
SELECT mandant.add_transition('crash_flow', 'open', 'done');
CREATE TABLE evil.flow (id int PRIMARY KEY, status text NOT NULL DEFAULT 'open');
SELECT mandant.enable_state_machine('evil.flow', 'crash_flow');
INSERT INTO evil.flow (id) VALUES (1);
ALTER TABLE evil.flow ALTER COLUMN status DROP DEFAULT, ALTER COLUMN status TYPE int USING 0;
UPDATE evil.flow SET status = 1;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE evil.flow ALTER COLUMN status TYPE name USING 'open';
UPDATE evil.flow SET status = 'done';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
CREATE TABLE attack.int_state (id int PRIMARY KEY, status int);
CREATE TRIGGER zz_mandant_state_machine BEFORE INSERT OR UPDATE ON attack.int_state
	FOR EACH ROW EXECUTE FUNCTION mandant.state_machine_trigger('crash_flow', 'status', 'log');
INSERT INTO attack.int_state VALUES (1, 7);
\echo :LAST_ERROR_SQLSTATE

-- 2b. A tenant column that is not a uuid under the quota trigger.
CREATE TABLE attack.int_tenant (tenant_id int, id int);
CREATE TRIGGER mandant_quota AFTER INSERT ON attack.int_tenant
	FOR EACH ROW EXECUTE FUNCTION mandant.quota_trigger('records', 'tenant_id');
INSERT INTO attack.int_tenant VALUES (42, 1);
\echo :LAST_ERROR_SQLSTATE
-- ... and mandant's other triggers on tables nobody registered
CREATE TABLE attack.loose (tenant_id text, id int PRIMARY KEY);
CREATE TRIGGER mandant_audit AFTER INSERT ON attack.loose FOR EACH ROW EXECUTE FUNCTION mandant.audit_trigger();
INSERT INTO attack.loose VALUES ('x', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER mandant_audit ON attack.loose;
CREATE TRIGGER mandant_outbox AFTER INSERT ON attack.loose FOR EACH ROW EXECUTE FUNCTION mandant.outbox_trigger('platform', 'tenant');
INSERT INTO attack.loose VALUES ('x', 2);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER mandant_outbox ON attack.loose;
CREATE TRIGGER wrong_kind BEFORE INSERT ON attack.loose FOR EACH STATEMENT EXECUTE FUNCTION mandant.quota_trigger('records', 'tenant_id');
INSERT INTO attack.loose VALUES ('x', 3);
\echo :LAST_ERROR_SQLSTATE

-- 2c. A guard of the wrong signature put straight into the definitions
-- (only the superuser can), and a guard dropped after it was declared.
SET ROLE regress_evil_owner;
SELECT mandant.create_state_machine('crash_guard', '{open}', states => '{open,done}');
CREATE TABLE evil.guarded (id int PRIMARY KEY, status text NOT NULL DEFAULT 'open');
SELECT mandant.enable_state_machine('evil.guarded', 'crash_guard');
INSERT INTO evil.guarded (id) VALUES (1);
RESET ROLE;
INSERT INTO mandant.state_transition (machine, from_state, to_state, guard)
VALUES ('crash_guard', 'open', 'done', 'pg_catalog.replace(text,text,text)');
UPDATE evil.guarded SET status = 'done';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.state_transition WHERE machine = 'crash_guard';

-- 2d. NULL for every argument of the C entry points that used to trust
-- them, the 0.1.0 symbols included (declared here as the old schema did).
SELECT mandant.gate_call(NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('add_member', NULL, '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('attach_audit', NULL, '{"table": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('attach_audit', NULL, '{"table": 99999999999}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('attach_audit', NULL, '{"table": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_call('add_state', NULL, '{"machine": null}');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION attack.check_tenant_access(uuid, text) RETURNS void
	AS '$libdir/mandant', 'mandant_check_tenant_access' LANGUAGE C;
SET ROLE regress_attacker;
SELECT attack.check_tenant_access(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
CREATE FUNCTION attack.identity_call(text, uuid, jsonb) RETURNS jsonb
	AS '$libdir/mandant', 'mandant_identity_call' LANGUAGE C;
SELECT attack.identity_call(NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT attack.identity_call('attach_audit', NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.totp_match(NULL, NULL, NULL, NULL) IS NULL AS no_match;
SELECT mandant.run_as_table_owner(NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.run_as_table_owner('pg_class', :'victim', 'SELECT 1');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.run_as_table_owner('victim_app.notes', :'victim', 'SELECT 1');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.tenant_row_count(NULL, NULL, NULL) AS zero;
SELECT mandant.tenant_row_count('victim_app.notes', 'body', :'victim');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.tenant_row_count('victim_app.notes', 'tenant_id', :'victim') AS victim_rows;
SELECT mandant.check_table_target(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.gate_caller_member_of(NULL) AS outside_the_gate;
SELECT mandant.secret_seal(NULL, NULL) IS NULL AS strict;

-- 2e. Sizes: base32 of inputs whose output length is computed in size_t
-- (the 2^29-byte case that overflowed an int is covered by the fuzzer's
-- long run); a few exact lengths around the 5-byte groups.
SELECT n, length(mandant.base32_encode(decode(repeat('ff', n), 'hex'))) AS chars
FROM generate_series(0, 11) n;
SELECT mandant.base32_encode(NULL) IS NULL AS null_in_null_out;

SELECT attack.verdict('crash inputs');
