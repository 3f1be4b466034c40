-- The public surface is deliberate: the functions of schema mandant that a
-- role with no grants may execute are exactly those README.md lists under
-- "Public API".  Each mismatch is one row below.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_nobody') THEN
		CREATE ROLE regress_nobody NOLOGIN;
	END IF;
END
$$;
\set listed `sed -n '/^<!-- public-api -->/,/^<!-- \/public-api -->/p' README.md | grep -o '^mandant\.[a-z_0-9]*([^)]*)' | paste -sd ';' -`
SELECT count(*) AS listed_in_readme FROM unnest(string_to_array(:'listed', ';'));
-- executable by a role with no grants, but not listed
SELECT p.oid::regprocedure AS unlisted
FROM pg_proc p
WHERE p.pronamespace = 'mandant'::regnamespace
  AND has_function_privilege('regress_nobody', p.oid, 'EXECUTE')
  AND p.oid::regprocedure::text <> ALL (string_to_array(:'listed', ';'))
ORDER BY 1::text;
-- listed, but missing or not executable
SELECT l AS listed_but_not_executable
FROM unnest(string_to_array(:'listed', ';')) l
WHERE to_regprocedure(l) IS NULL OR NOT has_function_privilege('regress_nobody', to_regprocedure(l), 'EXECUTE')
ORDER BY 1;
