-- Status machines: declaration, the C trigger, scopes, guards, frozen
-- states, the transition log and the audit trail.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'fsm-acme', 'Acme', 'o@acme.test');
CREATE SCHEMA fsm AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA fsm TO regress_service, regress_user;

-- The migration role declares the machine of the seeds' risk assessments.
SET ROLE regress_owner;
SELECT mandant.create_state_machine('assessment',
	initial_states => '{draft}',
	frozen_states => '{approved,archived}',
	states => '{draft,in_review,approved,rejected,archived}',
	transition_columns => '{approved_by,approved_at}');
-- Four eyes: the approver is not the author.
CREATE FUNCTION fsm.not_the_author(old_row jsonb, new_row jsonb) RETURNS boolean
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT new_row ->> 'approved_by' IS NOT NULL
				 AND new_row ->> 'approved_by' <> old_row ->> 'created_by' $$;
SELECT mandant.add_transition('assessment', 'draft', 'in_review', 'write');
SELECT mandant.add_transition('assessment', 'in_review', 'approved', 'admin', 'fsm.not_the_author(jsonb,jsonb)');
SELECT mandant.add_transition('assessment', 'in_review', 'rejected', 'admin');
SELECT mandant.add_transition('assessment', 'rejected', 'draft', 'write');
SELECT mandant.add_transition('assessment', 'approved', 'archived', 'admin');
SELECT state, initial, frozen FROM mandant.state_machine_state WHERE machine = 'assessment' ORDER BY state;
SELECT mandant.next_states('assessment', 'draft'), mandant.next_states('assessment', 'in_review'),
	   mandant.next_states('assessment', 'archived');

CREATE TABLE fsm.assessment (
	tenant_id	uuid,
	id			int,
	title		text NOT NULL,
	score		int,
	status		text,
	created_by	text NOT NULL,
	approved_by	text,
	approved_at	timestamptz,
	PRIMARY KEY (tenant_id, id)
);
SELECT mandant.enable_tenancy('fsm.assessment');
SELECT mandant.enable_state_machine('fsm.assessment', 'assessment');
-- idempotent
SELECT oid AS trigger_oid FROM pg_trigger WHERE tgrelid = 'fsm.assessment'::regclass AND tgname = 'zz_mandant_state_machine' \gset
SELECT mandant.enable_state_machine('fsm.assessment', 'assessment');
SELECT oid = :trigger_oid AS same_trigger FROM pg_trigger WHERE tgrelid = 'fsm.assessment'::regclass AND tgname = 'zz_mandant_state_machine';
GRANT SELECT, INSERT, UPDATE ON fsm.assessment TO regress_service;

-- The life of an assessment, written by a trusted backend.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.set_scopes('{read,write,admin}');
INSERT INTO fsm.assessment (id, title, created_by) VALUES (1, 'Silo 3 dust', 'alice');   -- NULL -> draft
INSERT INTO fsm.assessment (id, title, created_by, status) VALUES (2, 'Forklifts', 'bob', 'draft');
UPDATE fsm.assessment SET score = 12 WHERE id = 1;               -- no transition: fine
UPDATE fsm.assessment SET status = 'in_review' WHERE id IN (1, 2);
UPDATE fsm.assessment SET status = 'approved', approved_by = 'carol', approved_at = '2026-11-25 12:00+00' WHERE id = 1;
UPDATE fsm.assessment SET status = 'rejected' WHERE id = 2;
UPDATE fsm.assessment SET status = 'draft', score = 3 WHERE id = 2;
UPDATE fsm.assessment SET status = 'archived' WHERE id = 1;
UPDATE fsm.assessment SET status = status WHERE id = 1;          -- frozen, but nothing changes
SELECT id, status, score, approved_by FROM fsm.assessment ORDER BY id;
-- Not audited: transitions go to mandant.state_transition_log.
SELECT entity_type, entity_id, machine, from_state, to_state FROM mandant.state_transition_log ORDER BY id;
COMMIT;

-- Audited: the audit trail records transitions (action transition).
SET ROLE regress_owner;
SELECT mandant.enable_audit('fsm.assessment');
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.set_scopes('{write}');
INSERT INTO fsm.assessment (id, title, created_by) VALUES (3, 'Ladders', 'dave');
UPDATE fsm.assessment SET status = 'in_review', score = 5 WHERE id = 3;
UPDATE fsm.assessment SET score = 6 WHERE id = 3;
SELECT action, entity_id, changes FROM mandant.audit_event WHERE entity_type = 'fsm.assessment' ORDER BY id;
SELECT count(*) AS logged_separately FROM mandant.state_transition_log WHERE entity_id = '3';
COMMIT;

-- Invalid input: a transition that is not declared
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.set_scopes('{read,write,admin}');
SAVEPOINT s;
UPDATE fsm.assessment SET status = 'approved' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: an undeclared state
UPDATE fsm.assessment SET status = 'done' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: NULL state on update
UPDATE fsm.assessment SET status = NULL WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: a new row that does not start in an initial state
INSERT INTO fsm.assessment (id, title, created_by, status) VALUES (9, 'Shortcut', 'eve', 'approved');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: the four-eyes guard (the author approves)
UPDATE fsm.assessment SET status = 'in_review' WHERE id = 2;
UPDATE fsm.assessment SET status = 'approved', approved_by = 'bob' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: a frozen row changed without a transition
UPDATE fsm.assessment SET title = 'rewritten history' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: a transition out of a frozen state that changes other columns
UPDATE fsm.assessment SET status = 'archived', approved_by = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- (the state of row 1 is archived already; make a frozen approved one)
UPDATE fsm.assessment SET status = 'in_review' WHERE id = 2;
UPDATE fsm.assessment SET status = 'approved', approved_by = 'carol' WHERE id = 2;
UPDATE fsm.assessment SET status = 'archived', score = 99 WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: a transition without its scope
SELECT mandant.set_scopes('{read,write}');
UPDATE fsm.assessment SET status = 'in_review' WHERE id = 2;
UPDATE fsm.assessment SET status = 'rejected' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Nothing half-written by the refusals.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT id, status, score, approved_by FROM fsm.assessment ORDER BY id;
COMMIT;

-- Invalid input: declaring machines and transitions
SET ROLE regress_owner;
SELECT mandant.create_state_machine('assessment', '{draft}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_state_machine('Bad Name', '{draft}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_state_machine('empty', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_state_machine('odd', '{Draft}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('nosuch', 'a', 'b');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('assessment', 'draft', 'done');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('assessment', 'draft', 'draft');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('assessment', 'draft', 'in_review');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('assessment', 'draft', 'rejected', 'superpowers');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_transition('assessment', 'draft', 'rejected', NULL, 'pg_catalog.now()');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.remove_transition('assessment', 'draft', 'archived');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.add_state('assessment', 'draft');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.next_states('assessment', 'done');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.drop_state_machine('assessment');
\echo :LAST_ERROR_SQLSTATE
-- Nothing half-defined: the machine is as declared above.
SELECT count(*) AS states, (SELECT count(*) FROM mandant.state_transition WHERE machine = 'assessment') AS transitions
FROM mandant.state_machine_state WHERE machine = 'assessment';
SELECT count(*) AS machines FROM mandant.state_machine WHERE name IN ('empty', 'odd', 'Bad Name');
-- Invalid input: binding tables
CREATE TABLE fsm.no_status (id int PRIMARY KEY);
SELECT mandant.enable_state_machine('fsm.no_status', 'assessment');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE fsm.int_status (id int PRIMARY KEY, status int);
SELECT mandant.enable_state_machine('fsm.int_status', 'assessment');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE fsm.legacy (id int PRIMARY KEY, status text);
INSERT INTO fsm.legacy VALUES (1, 'draft'), (2, 'pending');
SELECT mandant.enable_state_machine('fsm.legacy', 'assessment');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_state_machine('fsm.legacy', 'nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS legacy_triggers FROM pg_trigger WHERE tgrelid = 'fsm.legacy'::regclass AND NOT tgisinternal;
-- Invalid input: someone else's machine or table
SET ROLE regress_user;
SELECT mandant.add_transition('assessment', 'draft', 'rejected');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_state_machine('fsm.legacy', 'assessment', 'status');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.state_transition (machine, from_state, to_state) VALUES ('assessment', 'draft', 'rejected');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.state_transition WHERE machine = 'assessment';
SELECT count(*) AS transitions_left FROM mandant.state_transition WHERE machine = 'assessment';
-- Invalid input: writing the transition log
UPDATE mandant.state_transition_log SET to_state = 'approved';
\echo :LAST_ERROR_SQLSTATE

-- A tenant sees its own transitions; no tenant, none.
SELECT count(*) AS without_tenant FROM mandant.state_transition_log;

-- Without a log: transitions are checked, not recorded.
SET ROLE regress_owner;
CREATE TABLE fsm.quiet (id int PRIMARY KEY, status text);
SELECT mandant.enable_state_machine('fsm.quiet', 'assessment', log_transitions => false);
GRANT SELECT, INSERT, UPDATE ON fsm.quiet TO regress_service;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_scopes('{write}');
INSERT INTO fsm.quiet VALUES (1, NULL);
UPDATE fsm.quiet SET status = 'in_review';
COMMIT;
UPDATE fsm.quiet SET status = 'draft';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT status FROM fsm.quiet;
SELECT count(*) AS quiet_logged FROM mandant.state_transition_log WHERE entity_type = 'fsm.quiet';
DROP TABLE fsm.quiet;

-- disable_state_machine lets anything through again.
SET ROLE regress_owner;
SELECT mandant.disable_state_machine('fsm.assessment');
SELECT count(*) AS bound FROM mandant.state_machine_table WHERE relid = 'fsm.assessment'::regclass;
RESET ROLE;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
UPDATE fsm.assessment SET status = 'anything' WHERE id = 2;
-- Dropping a bound table unbinds it.
SET ROLE regress_owner;
CREATE TABLE fsm.temporary_thing (id int PRIMARY KEY, status text);
SELECT mandant.enable_state_machine('fsm.temporary_thing', 'assessment');
DROP TABLE fsm.temporary_thing;
SELECT count(*) AS still_bound FROM mandant.state_machine_table WHERE machine = 'assessment';
SELECT mandant.drop_state_machine('assessment');
SELECT count(*) AS machines_left FROM mandant.state_machine WHERE name = 'assessment';

RESET ROLE;
DROP SCHEMA fsm CASCADE;
DELETE FROM mandant.tenant WHERE slug LIKE 'fsm-%';
