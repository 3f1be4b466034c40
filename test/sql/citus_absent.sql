-- mandant's Citus functions on a server without Citus (the distributed
-- suite, test/citus/, runs them on a cluster): each refuses or does
-- nothing, with the design's codes.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- citus_setup() without Citus: object_not_in_prerequisite_state.
SELECT mandant.citus_setup();
\echo :LAST_ERROR_SQLSTATE
-- Nobody else may call it (EXECUTE revoked from PUBLIC): 42501.
SET ROLE regress_admin;
SELECT mandant.citus_setup();
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.citus_require_transaction_block('x');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Without Citus no table is distributed; NULL and unknown input.
CREATE TABLE public.citus_absent (tenant_id uuid);
SELECT mandant.citus_distribution_column('public.citus_absent') IS NULL AS not_distributed,
	   mandant.citus_distribution_column(NULL) IS NULL AS null_in_null_out;
SELECT mandant.citus_distribution_column('public.no_such_table');
\echo :LAST_ERROR_SQLSTATE
-- An export outside a transaction block is refused on Citus only.
SELECT 'passes without Citus' AS ok FROM (SELECT mandant.citus_require_transaction_block(NULL)) x;
DROP TABLE public.citus_absent;

-- Nothing is being erased, so no history is deletable: the transition log
-- stays append-only for every role, its owner's DELETE grant or not.
SELECT mandant.erasing_history_of() IS NULL AS nothing_erased;
SET ROLE regress_service;
SELECT mandant.erasing_history_of() IS NULL AS nothing_erased_for_anyone;
RESET ROLE;
DELETE FROM mandant.state_transition_log WHERE false;
\echo :LAST_ERROR_SQLSTATE
-- citus_truncate_local_history takes only mandant's distributed tables
-- (none without Citus), and nobody else may call it.
SELECT mandant.citus_truncate_local_history('mandant.state_transition_log');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.citus_truncate_local_history(NULL);
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_admin;
SELECT mandant.citus_truncate_local_history('mandant.state_transition_log');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
