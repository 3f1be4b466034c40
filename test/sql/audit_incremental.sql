-- Incremental audit verification: checkpoints, what they prove and what
-- only a full verification does, and who may verify.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

\set c '''c0000000-0000-4000-8000-00000000000c'''
\set d '''d0000000-0000-4000-8000-00000000000d'''
INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	(:c, 'inc-initech', 'Initech', 'o@initech.test'),
	(:d, 'inc-umbrella', 'Umbrella', 'o@umbrella.test');

-- note N: N application events of tenant c, then a seal run.
CREATE FUNCTION pg_temp.note(tenant uuid, n integer) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(mandant.audit_log_for(tenant, NULL, NULL, 'inc', 'note', 'inc.thing', i::text,
									   jsonb_build_object('n', i)))
	FROM generate_series(1, n) i
$$;
SELECT pg_temp.note(:c, 5) AS noted, pg_temp.note(:d, 2) AS noted_d;
SET ROLE regress_admin;
SELECT mandant.audit_seal() > 0 AS sealed;

-- The first incremental verification has no checkpoint: it walks the whole
-- chain and records its head.
SELECT ok, checked, first_bad_id IS NULL AS none_bad, from_seq, to_seq, encode(chain, 'hex') AS head
FROM mandant.audit_verify_since_checkpoint(:c) \gset
SELECT :'ok' AS ok, :'checked' AS checked, :'none_bad' AS none_bad, :'from_seq' AS from_seq, :'to_seq' AS to_seq;
-- chain: the head verified, to keep somewhere else
RESET ROLE;
SELECT :'head' = encode(s.chain, 'hex') AS chain_is_head FROM mandant.audit_seal s WHERE s.tenant_id = :c AND s.seq = 5;
SET ROLE regress_admin;
-- Nothing new: nothing checked, no new checkpoint.
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint(:c);
-- Three new events: only they are checked.
RESET ROLE;
SELECT pg_temp.note(:c, 3) AS noted;
SET ROLE regress_admin;
SELECT mandant.audit_seal() AS sealed;
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint(:c);
-- A full verification checks everything, the checkpoints included.
SELECT * FROM mandant.audit_verify(:c);
RESET ROLE;
SELECT seq, from_seq, verified_by, chain = (SELECT s.chain FROM mandant.audit_seal s
											WHERE s.tenant_id = c.tenant_id AND s.seq = c.seq) AS chain_of_seal
FROM mandant.audit_checkpoint c WHERE tenant_id = :c ORDER BY seq;
-- Each checkpoint is also a platform event, in the platform's chain.
SELECT e.tenant_id, e.category, e.action, e.entity_type, e.entity_id = :c AS of_c, e.changes - 'chain' - 'eventId' AS changes,
	   e.changes ->> 'chain' = encode(c.chain, 'hex') AS same_chain, (e.changes ->> 'eventId')::bigint = c.event_id AS same_event
FROM mandant.audit_checkpoint c JOIN mandant.audit_event e ON e.id = c.record_id
	AND e.tenant_id = '00000000-0000-0000-0000-000000000000'
WHERE c.tenant_id = :c ORDER BY c.seq;

-- A tenant verifies its own trail; its session reads its checkpoints.
RESET ROLE;
SELECT pg_temp.note(:c, 2) AS noted;
SET ROLE regress_admin;
SELECT mandant.audit_seal() AS sealed;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:c);
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint();
SELECT seq, from_seq FROM mandant.audit_checkpoint ORDER BY seq;
COMMIT;
-- The platform's chain has checkpoints of its own (mandant_admin only).
SET ROLE regress_admin;
SELECT ok, first_bad_id, from_seq, to_seq > 0 AS verified_some FROM mandant.audit_verify_since_checkpoint(NULL);
RESET ROLE;

/*
 * Tampering, by a superuser who switches the guards off.  Each case runs in
 * a transaction that is rolled back afterwards.  Checkpoint of c: seq 10.
 */
SELECT min(id) AS first_c FROM mandant.audit_event WHERE tenant_id = :c \gset
-- seal_event(seq): the event c's seal seq names (also its checkpoint's)
CREATE FUNCTION pg_temp.seal_event(seq bigint) RETURNS bigint LANGUAGE sql AS $$
	SELECT s.event_id FROM mandant.audit_seal s
	WHERE s.tenant_id = 'c0000000-0000-4000-8000-00000000000c' AND s.seq = seal_event.seq
$$;
SELECT pg_temp.note(:c, 3) AS noted;
SET ROLE regress_admin;
SELECT mandant.audit_seal() AS sealed;
RESET ROLE;
-- 1. an event after the checkpoint: found by the incremental verification,
--    which records no checkpoint
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET changes = '{"n": 99}'
WHERE id = pg_temp.seal_event(12);
SELECT ok, checked, first_bad_id = pg_temp.seal_event(12) AS bad_is_12,
	   from_seq, to_seq
FROM mandant.audit_verify_since_checkpoint(:c);
SELECT max(seq) AS last_checkpoint FROM mandant.audit_checkpoint WHERE tenant_id = :c;
ROLLBACK;
-- 2. the same, with the event's hash recomputed: the chain breaks there
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET changes = '{"n": 99}'
WHERE id = pg_temp.seal_event(11);
UPDATE mandant.audit_event e SET hash = mandant.audit_event_hash(e)
WHERE id = pg_temp.seal_event(11);
SELECT ok, checked, first_bad_id = pg_temp.seal_event(11) AS bad_is_11
FROM mandant.audit_verify_since_checkpoint(:c);
ROLLBACK;
-- 3. an event before the checkpoint, re-hashed: the incremental
--    verification does not look there; the full one finds it
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET changes = '{"n": 99}' WHERE id = :first_c + 2;
UPDATE mandant.audit_event e SET hash = mandant.audit_event_hash(e) WHERE id = :first_c + 2;
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint(:c);
SELECT ok, checked, first_bad_id - :first_c AS bad FROM mandant.audit_verify(:c);
ROLLBACK;
-- 4. ... and with the seals after it rewritten to match: the checkpoint no
--    longer agrees with its seal row; both verifications find it
CREATE FUNCTION pg_temp.rechain(tenant uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	s		record;
	link	bytea := '';
BEGIN
	FOR s IN SELECT a.seq, e.hash FROM mandant.audit_seal a
			 JOIN mandant.audit_event e ON e.tenant_id = a.tenant_id AND e.id = a.event_id
			 WHERE a.tenant_id = tenant ORDER BY a.seq
	LOOP
		link := sha256(link || s.hash);
		UPDATE mandant.audit_seal a SET chain = link WHERE a.tenant_id = tenant AND a.seq = s.seq;
	END LOOP;
END
$$;
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
ALTER TABLE mandant.audit_seal DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET changes = '{"n": 99}' WHERE id = :first_c + 2;
UPDATE mandant.audit_event e SET hash = mandant.audit_event_hash(e) WHERE id = :first_c + 2;
SELECT pg_temp.rechain(:c);
SELECT ok, checked, first_bad_id = pg_temp.seal_event(10) AS bad_is_checkpoint,
	   from_seq, to_seq
FROM mandant.audit_verify_since_checkpoint(:c);
SELECT ok, first_bad_id = pg_temp.seal_event(5) AS bad_is_first_checkpoint
FROM mandant.audit_verify(:c);
ROLLBACK;
-- 5. the checkpoint's chain value changed: found before any seal is read
BEGIN;
ALTER TABLE mandant.audit_checkpoint DISABLE TRIGGER append_only;
UPDATE mandant.audit_checkpoint SET chain = sha256('forged') WHERE tenant_id = :c AND seq = 10;
SELECT ok, checked, first_bad_id = pg_temp.seal_event(10) AS bad_is_checkpoint,
	   from_seq, to_seq, chain
FROM mandant.audit_verify_since_checkpoint(:c);
SELECT ok, first_bad_id = pg_temp.seal_event(10) AS bad_is_checkpoint
FROM mandant.audit_verify(:c);
ROLLBACK;
-- 6. the checkpoint moved ahead over an altered event, copying a later
--    seal row: its platform record still says seq 10
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
ALTER TABLE mandant.audit_checkpoint DISABLE TRIGGER append_only;
UPDATE mandant.audit_event SET changes = '{"n": 99}'
WHERE id = pg_temp.seal_event(12);
UPDATE mandant.audit_checkpoint c SET seq = s.seq, event_id = s.event_id, chain = s.chain
FROM mandant.audit_seal s WHERE s.tenant_id = c.tenant_id AND s.seq = 13 AND c.tenant_id = :c AND c.seq = 10;
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint(:c);
ROLLBACK;
-- 7. ... and its platform record rewritten to match, with its hash: the
--    tenant's verifications pass (the limit of what the database can
--    prove about itself), the platform's chain breaks at the record
BEGIN;
ALTER TABLE mandant.audit_event DISABLE TRIGGER append_only;
ALTER TABLE mandant.audit_checkpoint DISABLE TRIGGER append_only;
UPDATE mandant.audit_checkpoint c SET seq = s.seq, event_id = s.event_id, chain = s.chain
FROM mandant.audit_seal s WHERE s.tenant_id = c.tenant_id AND s.seq = 13 AND c.tenant_id = :c AND c.seq = 10;
UPDATE mandant.audit_event e
SET changes = jsonb_build_object('seq', c.seq, 'eventId', c.event_id, 'chain', encode(c.chain, 'hex'), 'fromSeq', c.from_seq)
FROM mandant.audit_checkpoint c
WHERE c.tenant_id = :c AND c.seq = 13 AND e.tenant_id = '00000000-0000-0000-0000-000000000000' AND e.id = c.record_id;
UPDATE mandant.audit_event e SET hash = mandant.audit_event_hash(e)
FROM mandant.audit_checkpoint c
WHERE c.tenant_id = :c AND c.seq = 13 AND e.tenant_id = '00000000-0000-0000-0000-000000000000' AND e.id = c.record_id;
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint(:c);
SELECT ok, first_bad_id = (SELECT record_id FROM mandant.audit_checkpoint WHERE tenant_id = :c AND seq = 13) AS bad_is_record
FROM mandant.audit_verify(NULL);
ROLLBACK;
-- (untouched, everything passes)
SELECT ok, checked, from_seq, to_seq FROM mandant.audit_verify_since_checkpoint(:c);
SELECT ok FROM mandant.audit_verify(:c);

-- A tenant's deletion erases its checkpoints with its trail.
SET ROLE regress_admin;
SELECT ok, checked FROM mandant.audit_verify_since_checkpoint(:d);
SELECT mandant.delete_tenant(:d, 'inc-umbrella') -> 'mandant.audit_checkpoint' AS checkpoints_erased;
RESET ROLE;
SELECT count(*) AS checkpoints_of_d FROM mandant.audit_checkpoint WHERE tenant_id = :d;

-- Invalid input: writing checkpoints, for everyone
SET ROLE regress_admin;
INSERT INTO mandant.audit_checkpoint (tenant_id, seq, event_id, chain, from_seq, record_id, verified_by)
VALUES (:c, 99, 1, '\x00', 0, 1, 'me');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM mandant.audit_checkpoint;
\echo :LAST_ERROR_SQLSTATE
UPDATE mandant.audit_checkpoint SET seq = seq;
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: verifying another tenant, or the platform, or calling the
-- operation directly
SET ROLE regress_user;
SELECT * FROM mandant.audit_verify_since_checkpoint(:c);
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:c);
SELECT count(*) AS own_checkpoints FROM mandant.audit_checkpoint;
SAVEPOINT s;
SELECT * FROM mandant.audit_verify_since_checkpoint(NULL);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT * FROM mandant.audit_verify_from_checkpoint(:c, '{}', 'me');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT * FROM mandant.audit_verify_since_checkpoint(:c);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

DELETE FROM mandant.tenant WHERE slug LIKE 'inc-%';
