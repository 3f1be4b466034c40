-- Identity: users, members, roles and who may manage them; login with its
-- failures, lockouts and second factor; service accounts; set_user.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	('a1000000-0000-4000-8000-00000000000a', 'id-acme', 'Acme', 'ada@acme.test', 'pro'),
	('b1000000-0000-4000-8000-00000000000b', 'id-globex', 'Globex', 'gus@globex.test', 'pro');
\set acme 'a1000000-0000-4000-8000-00000000000a'
\set globex 'b1000000-0000-4000-8000-00000000000b'

-- A base32 decoder, to turn an enrolled secret back into bytes the way an
-- authenticator app does.
CREATE SCHEMA idtest;
CREATE FUNCTION idtest.base32_decode(encoded text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	alphabet constant text := 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
	bits text := '';
	out bytea := '';
BEGIN
	FOR i IN 1 .. length(encoded) LOOP
		bits := bits || right((position(substr(encoded, i, 1) IN alphabet) - 1)::bit(8)::text, 5);
	END LOOP;
	FOR i IN 0 .. length(bits) / 8 - 1 LOOP
		out := out || decode(lpad(to_hex(substr(bits, i * 8 + 1, 8)::bit(8)::int), 2, '0'), 'hex');
	END LOOP;
	RETURN out;
END
$$;
GRANT USAGE ON SCHEMA idtest TO PUBLIC;

-- Users: a trusted backend signs people up (bcrypt cost 12).
SET ROLE regress_service;
SELECT mandant.create_user('ada@acme.test', 'correct horse battery', 'Ada') AS ada \gset
SELECT mandant.create_user('Bob@Acme.test', 'bobs long password', 'Bob') AS bob \gset
SELECT mandant.create_user('carol@acme.test', 'carols long password', 'Carol') AS carol \gset
RESET ROLE;
-- (fixed ids from here on, for readable messages)
UPDATE mandant.users SET id = 'ada00000-0000-4000-8000-000000000001' WHERE id = :'ada';
UPDATE mandant.users SET id = 'b0b00000-0000-4000-8000-000000000002' WHERE id = :'bob';
UPDATE mandant.users SET id = 'ca201000-0000-4000-8000-000000000003' WHERE id = :'carol';
\set ada 'ada00000-0000-4000-8000-000000000001'
\set bob 'b0b00000-0000-4000-8000-000000000002'
\set carol 'ca201000-0000-4000-8000-000000000003'

SELECT email, display_name, status, left(password_hash, 7) AS hash_prefix, length(password_hash) AS hash_length,
	   password_hash LIKE '%battery%' AS plaintext_stored
FROM mandant.users WHERE id IN (:'ada', :'bob', :'carol') ORDER BY email;

-- Invalid input: weak, overlong or e-mail passwords, bad and taken addresses
SET ROLE regress_service;
SELECT mandant.create_user('dave@acme.test', 'short', 'Dave');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_user('dave@acme.test', 'dave@acme.test', 'Dave');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_user('dave@acme.test', repeat('ä', 40), 'Dave');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_user(repeat('x', 250) || '@acme.test', 'a long enough password', 'Dave');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_user('not an address', 'a long enough password', 'Dave');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_user('ADA@acme.test', 'a long enough password', 'Ada again');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.create_user('dave@acme.test', 'a long enough password', '   ');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Invalid input: an end user without a tenant creates no users
SET ROLE regress_user;
SELECT mandant.create_user('eve@evil.test', 'a long enough password', 'Eve');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS users_after_refusals FROM mandant.users WHERE email LIKE 'dave@%' OR email LIKE 'eve@%' OR email LIKE 'x%@acme.test';

-- Members: Ada is the owner acme was created for (owner_email), so her
-- account joined acme as owner; the trusted backend adds Bob as agent.
SELECT t.slug, m.role FROM mandant.membership m JOIN mandant.tenant t ON t.id = m.tenant_id
WHERE m.user_id = :'ada';
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
SELECT mandant.add_member(:'acme', :'bob', 'agent');
COMMIT;
RESET ROLE;

-- Logins.  Ada gets tokens for acme, her only tenant.
SELECT mandant.login('ADA@acme.test ', 'correct horse battery', client_ip => '192.0.2.1') AS ada_login \gset
SELECT (:'ada_login'::jsonb - 'accessToken' - 'refreshToken') #- '{user,id}' AS answer;
SELECT length(:'ada_login'::jsonb ->> 'refreshToken') AS refresh_token_length;
SELECT claims ->> 'iss' AS iss, claims ->> 'typ' AS typ, claims ->> 'sub' = :'ada' AS sub_is_ada,
	   claims ->> 'tid' AS tid, claims ->> 'tslug' AS tslug, claims ->> 'role' AS role, claims -> 'scopes' AS scopes,
	   (claims ->> 'exp')::bigint - (claims ->> 'iat')::bigint AS lifetime, claims ->> 'ver' AS ver,
	   claims ? 'jti' AS has_jti, claims ? 'sid' AS has_sid
FROM mandant.jwt_verify(:'ada_login'::jsonb ->> 'accessToken') claims;
-- The token's header names the signing key, the first key of the key set.
SELECT split_part(:'ada_login'::jsonb ->> 'accessToken', '.', 1) AS header \gset
SELECT convert_from(decode(rpad(translate(:'header', '-_', '+/'), (length(:'header') + 3) / 4 * 4, '='), 'base64'), 'UTF8')::jsonb
	   - 'kid' AS header_without_kid,
	   convert_from(decode(rpad(translate(:'header', '-_', '+/'), (length(:'header') + 3) / 4 * 4, '='), 'base64'), 'UTF8')::jsonb ->> 'kid'
	   = mandant.jwks() #>> '{keys,0,kid}' AS kid_matches,
	   jsonb_array_length(mandant.jwks() -> 'keys') AS keys_in_set;
SELECT token_hash <> sha256(convert_to(:'ada_login'::jsonb ->> 'refreshToken', 'UTF8')) AS refresh_stored_plain
FROM mandant.refresh_token LIMIT 1;

-- Ada, as owner, adds Carol as viewer; Bob, an agent, may not add anyone.
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'ada_login'::jsonb ->> 'accessToken') ->> 'role' AS ada_role;
SELECT mandant.add_member(:'acme', :'carol', 'viewer');
SELECT email, role, status, mfa FROM mandant.list_members();
COMMIT;
SELECT mandant.login('bob@acme.test', 'bobs long password') AS bob_login \gset
BEGIN;
SELECT mandant.authenticate(:'bob_login'::jsonb ->> 'accessToken') ->> 'role' AS bob_role;
SAVEPOINT s;
-- Invalid input: an agent managing members, anyone managing another tenant
SELECT mandant.set_member_role(:'acme', :'carol', 'admin');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.add_member(:'globex', :'bob', 'owner');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.gate_call('add_member', :'acme', jsonb_build_object('userId', :'bob', 'role', 'owner'));
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.identity_add_member(:'acme', jsonb_build_object('userId', :'bob', 'role', 'owner'), 'regress_user');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Ada promotes Bob to admin; Bob's token of the agent role stops working.
BEGIN;
SELECT mandant.authenticate(:'ada_login'::jsonb ->> 'accessToken') IS NOT NULL AS ada_in;
SELECT mandant.set_member_role(:'acme', :'bob', 'admin');
COMMIT;
SELECT mandant.authenticate(:'bob_login'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('bob@acme.test', 'bobs long password') AS bob_login \gset
BEGIN;
SELECT mandant.authenticate(:'bob_login'::jsonb ->> 'accessToken') -> 'scopes' AS bob_scopes;
SAVEPOINT s;
-- Invalid input: an admin who is not owner touching the owner role
SELECT mandant.set_member_role(:'acme', :'carol', 'owner');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.remove_member(:'acme', :'ada');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Invalid input: unknown role, unknown user, a member twice
SELECT mandant.set_member_role(:'acme', :'carol', 'superhero');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.add_member(:'acme', '00000000-0000-4000-8000-000000000000', 'viewer');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.add_member(:'acme', :'carol', 'viewer');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
-- Tenant roles: a subset of the scopes
SELECT mandant.create_role('auditor', '{read}', 'Reads everything, changes nothing');
SELECT mandant.set_member_role(:'acme', :'carol', 'auditor');
SELECT name, scopes FROM mandant.role WHERE tenant_id = :'acme';
SAVEPOINT r;
SELECT mandant.create_role('owner', '{read}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO r;
SELECT mandant.create_role('root', '{read,internal}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO r;
SELECT mandant.create_role('Bad Name', '{read}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO r;
SELECT mandant.drop_role('auditor');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO r;
COMMIT;

-- Ada is the only owner: she can neither leave nor step down.
BEGIN;
SELECT mandant.authenticate(:'ada_login'::jsonb ->> 'accessToken') IS NOT NULL AS ada_in;
SAVEPOINT s;
SELECT mandant.set_member_role(:'acme', :'ada', 'admin');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.remove_member(:'acme', :'ada');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT email, role FROM mandant.list_members();
COMMIT;
RESET ROLE;

-- Nobody reads the secret columns.
SET ROLE regress_user;
SELECT password_hash FROM mandant.users;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS memberships_seen_without_tenant FROM mandant.membership;
SET ROLE regress_admin;
SELECT password_hash FROM mandant.users;
\echo :LAST_ERROR_SQLSTATE
SELECT totp_secret FROM mandant.users;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) > 0 AS admin_lists_users FROM mandant.users;
RESET ROLE;

-- Failed logins: the same answer for a wrong password, an unknown e-mail
-- and a disabled account; each failure is recorded although the call
-- raised and its transaction rolled back.
SET ROLE regress_service;
SELECT mandant.create_user('dora@acme.test', 'doras long password', 'Dora') AS dora \gset
RESET ROLE;
UPDATE mandant.users SET id = 'd0a00000-0000-4000-8000-000000000004' WHERE id = :'dora';
\set dora 'd0a00000-0000-4000-8000-000000000004'
SET ROLE regress_service;
SELECT mandant.disable_user(:'dora');
RESET ROLE;
SET ROLE regress_gateway;
SET app.request_id = 'req-login-1';
SELECT mandant.login('ada@acme.test', 'not her password', client_ip => '198.51.100.5');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('nobody@acme.test', 'not her password', client_ip => '198.51.100.5');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('dora@acme.test', 'doras long password', client_ip => '198.51.100.5');
\echo :LAST_ERROR_SQLSTATE
RESET app.request_id;
RESET ROLE;
-- ... as this client sees right after the errors:
SELECT email, user_id IS NOT NULL AS known, success, reason, request_id FROM mandant.login_attempt
WHERE client_ip = '198.51.100.5' ORDER BY id;
SELECT action, changes ->> 'reason' AS reason, request_id FROM mandant.audit_event
WHERE category = 'auth' AND changes ->> 'clientIp' = '198.51.100.5' ORDER BY id;

-- Invalid input: empty, overlong and SQL-looking credentials
SET ROLE regress_user;
SELECT mandant.login('', 'whatever password');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('ada@acme.test', '');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login(repeat('a', 300) || '@acme.test', 'whatever password');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('ada@acme.test'' OR ''1''=''1', ''' OR ''1''=''1');
\echo :LAST_ERROR_SQLSTATE

-- Lockouts count failures per (account, address), per address and per
-- account; the address is the client_ip a trusted front end passes (here
-- the gateway's role).  (Retry hints vary with the clock: terse errors
-- from here.  Lower ceilings for addresses and accounts keep the test
-- short; the per-pair limit is the default, 10.)
RESET ROLE;
SET mandant.login_lockout_address = 15;
SET mandant.login_lockout_account = 16;
CREATE FUNCTION pg_temp.fail_logins(ip inet, n integer, who text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	failed integer := 0;
BEGIN
	FOR i IN 1 .. n LOOP
		BEGIN
			PERFORM mandant.login(COALESCE(who, 'nobody' || i || '@acme.test'), 'guess number ' || i, client_ip => ip);
		EXCEPTION WHEN SQLSTATE 'MD050' THEN
			failed := failed + 1;
		END;
	END LOOP;
	RETURN failed;
END
$$;
\set VERBOSITY terse
SET ROLE regress_gateway;
-- A success resets the account's count from that address.
SELECT pg_temp.fail_logins('203.0.113.9', 9, 'bob@acme.test') AS failed;
SELECT (mandant.login('bob@acme.test', 'bobs long password', client_ip => '203.0.113.9')) ? 'accessToken' AS success_resets;
SELECT pg_temp.fail_logins('203.0.113.9', 1, 'bob@acme.test') AS failed;
SELECT (mandant.login('bob@acme.test', 'bobs long password', client_ip => '203.0.113.9')) ? 'accessToken' AS still_fine;
-- After 10 failures of Ada from an address, even the right password is
-- refused from there; other addresses are not affected.
SELECT pg_temp.fail_logins('203.0.113.7', 10, 'ada@acme.test') AS failed;
SELECT mandant.login('ada@acme.test', 'correct horse battery', client_ip => '203.0.113.7');
\echo :LAST_ERROR_SQLSTATE
SELECT (mandant.login('ada@acme.test', 'correct horse battery', client_ip => '203.0.113.8')) ? 'accessToken' AS other_ip_fine;
-- Per address: 15 failures from one address, for any accounts, lock it.
SELECT pg_temp.fail_logins('203.0.113.7', 5) AS failed;
SELECT mandant.login('carol@acme.test', 'carols long password', client_ip => '203.0.113.7');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) FILTER (WHERE NOT success) AS failures, count(*) FILTER (WHERE success) AS successes
FROM mandant.login_attempt WHERE client_ip = '203.0.113.7';
-- Per account: 16 failures for Carol from as many addresses lock Carol
-- everywhere (one address alone never gets there).
SET ROLE regress_gateway;
SELECT sum(pg_temp.fail_logins(('192.0.2.' || (100 + i))::inet, 1, 'carol@acme.test')) AS failed
FROM generate_series(1, 16) i;
SELECT mandant.login('carol@acme.test', 'carols long password', client_ip => '192.0.2.200');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- A caller that is not a trusted front end cannot choose its address: the
-- client_ip it passes is ignored and its failures count for its connection,
-- which over a Unix socket has no address: only the account's ceiling
-- counts (every socket or pooler caller would share a "local" address, and
-- one of them could lock out all the others).
SET ROLE regress_user;
SELECT sum(pg_temp.fail_logins(('198.18.0.' || i)::inet, 1, 'mallory@acme.test')) AS failed FROM generate_series(1, 10) i;
SELECT mandant.login('mallory@acme.test', 'one more guess', client_ip => '198.18.0.99');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS recorded_with_claimed_address FROM mandant.login_attempt WHERE client_ip <<= '198.18.0.0/24';
SET ROLE regress_gateway;
SELECT mandant.login('mallory@acme.test', 'one more guess', client_ip => '198.18.0.99');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
RESET mandant.login_lockout_address;
RESET mandant.login_lockout_account;

-- Two factors: Ada enrolls, confirms with a code, and from then on needs a
-- fresh code at every login; a used code is refused.
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'ada_login'::jsonb ->> 'accessToken') IS NOT NULL AS ada_in;
SELECT mandant.totp_enroll() AS enrollment \gset
SELECT :'enrollment'::jsonb ->> 'uri' LIKE 'otpauth://totp/mandant:ada@acme.test?secret=' || (:'enrollment'::jsonb ->> 'secret') || '&issuer=mandant&%' AS uri_ok,
	   length(:'enrollment'::jsonb ->> 'secret') AS secret_length;
SAVEPOINT s;
SELECT mandant.totp_confirm('000000');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.totp_confirm(mandant.totp_code(idtest.base32_decode(:'enrollment'::jsonb ->> 'secret')));
COMMIT;
RESET ROLE;
SELECT totp_state, length(totp_secret) AS sealed_length,
	   position(idtest.base32_decode(:'enrollment'::jsonb ->> 'secret') IN totp_secret) AS secret_in_clear
FROM mandant.users WHERE id = :'ada';
SET ROLE regress_user;
SELECT mandant.login('ada@acme.test', 'correct horse battery');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('ada@acme.test', 'correct horse battery', totp_code => '123456');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.totp_code(idtest.base32_decode(:'enrollment'::jsonb ->> 'secret'), now() + interval '30 seconds') AS next_code \gset
SELECT (mandant.login('ada@acme.test', 'correct horse battery', totp_code => :'next_code')) ? 'accessToken' AS second_factor_ok;
SELECT mandant.login('ada@acme.test', 'correct horse battery', totp_code => :'next_code');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The RFC 6238 test vectors (SHA-1 secret "12345678901234567890", 8 digits).
SELECT t AS unix_time, mandant.totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(t), 8) AS code
FROM unnest(ARRAY[59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000]::bigint[]) t;
SELECT mandant.totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(59)) AS six_digits;

-- Service accounts: a tenant's (its scopes) and the platform's (internal).
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'bob_login'::jsonb ->> 'accessToken') IS NOT NULL AS bob_in;
SELECT mandant.create_service_account('acme importer', '{read,write}', :'acme') AS acme_sa \gset
SAVEPOINT s;
-- Invalid input: scope internal for a tenant's account, a platform account by a tenant admin
SELECT mandant.create_service_account('acme root', '{internal}', :'acme');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.create_service_account('platform', '{internal}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
COMMIT;
SET ROLE regress_admin;
SELECT mandant.create_service_account('billing sync', '{internal}') AS platform_sa \gset
SET ROLE regress_user;
SELECT :'acme_sa'::jsonb -> 'scopes' AS scopes, :'acme_sa'::jsonb ->> 'clientId' LIKE 'sa-%' AS client_id_ok;
SELECT mandant.service_token(:'acme_sa'::jsonb ->> 'clientId', :'acme_sa'::jsonb ->> 'clientSecret') AS acme_m2m \gset
BEGIN;
SELECT mandant.authenticate(:'acme_m2m'::jsonb ->> 'accessToken') - 'expiresAt' - 'serviceAccountId' AS m2m;
SELECT mandant.current_tenant() = :'acme' AS in_acme, mandant.current_user_id() AS user_id;
COMMIT;
SELECT mandant.service_token(:'platform_sa'::jsonb ->> 'clientId', :'platform_sa'::jsonb ->> 'clientSecret') AS platform_m2m \gset
BEGIN;
SELECT mandant.authenticate(:'platform_m2m'::jsonb ->> 'accessToken') -> 'scopes' AS platform_scopes,
	   mandant.current_tenant() AS tenant;
COMMIT;
-- Invalid input: a wrong secret, an unknown client
SELECT mandant.service_token(:'acme_sa'::jsonb ->> 'clientId', 'guessed');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.service_token('sa-nope', 'guessed');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT position((:'acme_sa'::jsonb ->> 'clientSecret')::bytea IN secret_hash) AS secret_in_clear
FROM mandant.service_account WHERE client_id = :'acme_sa'::jsonb ->> 'clientId';
-- A disabled account's tokens stop working at once.
SET ROLE regress_admin;
SELECT mandant.disable_service_account((:'acme_sa'::jsonb ->> 'id')::uuid, :'acme');
SET ROLE regress_user;
SELECT mandant.authenticate(:'acme_m2m'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- set_user: a trusted backend acts for a member with the scopes of their role.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
SELECT mandant.set_user(:'carol');
SELECT mandant.current_user_id() = :'carol' AS is_carol, mandant.current_scopes() AS carol_scopes;
SAVEPOINT s;
-- Invalid input: a user who is not a member, a disabled one
SELECT mandant.set_user(:'dora');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
COMMIT;
RESET ROLE;
-- Invalid input: set_user by an end user, or without a tenant
SET ROLE regress_user;
SELECT mandant.set_user(:'carol');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_service;
SELECT mandant.set_user(:'carol');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Rate limits shared by all connections; past the limit MD040, nothing
-- counted.  Keys belong to the tenant of the transaction: another tenant's
-- key of the same name is another counter.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
SELECT mandant.rate_limit('export', 3, '1 minute') AS remaining FROM generate_series(1, 3);
SAVEPOINT s;
\set VERBOSITY terse
SELECT mandant.rate_limit('export', 3, '1 minute');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
ROLLBACK TO s;
SELECT mandant.rate_limit('import', 3, '1 minute') AS other_key_remaining;
SELECT mandant.set_tenant(:'globex');
SELECT mandant.rate_limit('export', 3, '1 minute') AS other_tenant_remaining;
SAVEPOINT s;
-- Invalid input: a window under a second, no events allowed
SELECT mandant.rate_limit('x', 3, '10 milliseconds');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.rate_limit('x', 0, '1 minute');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Without a tenant, keys are the platform's: the gateway's and trusted
-- backends', not anybody's.
SET ROLE regress_gateway;
SELECT mandant.rate_limit('ip:203.0.113.7', 3, '1 minute') AS platform_remaining;
SET ROLE regress_user;
SELECT mandant.rate_limit('ip:203.0.113.7', 3, '1 minute');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the login counters are not reachable from here
SELECT mandant.login_failed_count(ARRAY['account:ada@acme.test'], '15 minutes');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Management that is not the tenant's: trusted backends and mandant_admin only.
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'bob_login'::jsonb ->> 'accessToken') IS NOT NULL AS bob_in;
SAVEPOINT s;
SELECT mandant.disable_user(:'carol');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.reset_password(:'carol', 'a new long password');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
COMMIT;
RESET ROLE;

-- The audit trail of acme tells the story, without secrets.
SELECT action, changes - 'by' - 'clientIp' - 'login' AS changes FROM mandant.audit_event
WHERE tenant_id = :'acme' AND category IN ('identity', 'auth') AND action NOT LIKE 'login%' ORDER BY id;
SELECT count(*) AS events_with_secrets FROM mandant.audit_event
WHERE changes::text ~ '(battery|bobs long|carols long|\$2a\$)'
   OR strpos(changes::text, :'acme_sa'::jsonb ->> 'clientSecret') > 0;

DROP SCHEMA idtest CASCADE;
