-- Access tokens: what authenticate() accepts and refuses (malformed,
-- tampered, foreign, expired, revoked), key rotation, refresh rotation with
-- reuse detection, logout, password changes.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key) VALUES
	('a2000000-0000-4000-8000-00000000000a', 'tok-acme', 'Acme', 'tara@acme.test', 'pro');
\set acme 'a2000000-0000-4000-8000-00000000000a'
SET ROLE regress_service;
SELECT mandant.create_user('tara@acme.test', 'taras long password', 'Tara') AS tara \gset
SELECT mandant.create_user('tom@acme.test', 'toms long password', 'Tom') AS tom \gset
RESET ROLE;
UPDATE mandant.users SET id = 'a1a00000-0000-4000-8000-000000000001' WHERE id = :'tara';
UPDATE mandant.users SET id = '70700000-0000-4000-8000-000000000002' WHERE id = :'tom';
\set tara 'a1a00000-0000-4000-8000-000000000001'
\set tom '70700000-0000-4000-8000-000000000002'
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
-- (Tara joined as owner when her account was created: acme names her as owner.)
SELECT mandant.add_member(:'acme', :'tom', 'viewer');
COMMIT;
RESET ROLE;

CREATE FUNCTION pg_temp.b64url(data text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT translate(rtrim(replace(encode(convert_to(data, 'UTF8'), 'base64'), E'\n', ''), '='), '+/', '-_')
$$;
-- sign claims: a token's claims with a new jti, some replaced, some removed
CREATE FUNCTION pg_temp.resign(claims jsonb, changes jsonb, remove text[] DEFAULT '{}') RETURNS text
LANGUAGE sql AS $$
	SELECT mandant.jwt_sign(((claims || jsonb_build_object('jti', gen_random_uuid())) || changes) - remove)
$$;

SELECT mandant.login('tara@acme.test', 'taras long password') AS login \gset
SELECT :'login'::jsonb ->> 'accessToken' AS token, :'login'::jsonb ->> 'refreshToken' AS refresh \gset
SELECT split_part(:'token', '.', 1) AS h, split_part(:'token', '.', 2) AS p, split_part(:'token', '.', 3) AS s,
	   mandant.jwt_verify(:'token') AS claims \gset
SELECT mandant.jwks() #>> '{keys,0,kid}' AS kid \gset
-- the classic confusion attack: HS256 "signed" with the RSA public key
SELECT pg_temp.b64url('{"alg": "HS256", "typ": "JWT", "kid": "' || :'kid' || '"}') || '.' || :'p' || '.'
	|| translate(rtrim(encode(public.hmac(pg_temp.b64url('{"alg": "HS256", "typ": "JWT", "kid": "' || :'kid' || '"}') || '.' || :'p',
										   pg_read_file('../keys/jwt.pub'), 'sha256'), 'base64'), '='), '+/', '-_') AS hs256 \gset

-- A good token: the context is set for this transaction only.
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'token') - 'expiresAt' AS answer;
SELECT mandant.current_tenant() = :'acme' AS in_acme, mandant.current_user_id() = :'tara' AS as_tara,
	   mandant.current_scopes() AS scopes;
COMMIT;
SELECT mandant.current_tenant() AS tenant_after_commit, mandant.current_user_id() AS user_after_commit;
-- Invalid input: the context stays tamper-proof for the authenticated user
BEGIN;
SELECT mandant.authenticate(:'token') IS NOT NULL AS authenticated;
SET LOCAL app.current_user_id = '70700000-0000-4000-8000-000000000002';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Invalid input: malformed tokens
SELECT mandant.authenticate(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate('');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate('abc');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'h' || '.' || :'p');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'token' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate('..');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate('!!!!.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'h' || '=.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('[1, 2]') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('{"alg": "RS256", "kid"') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('"RS256"') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(repeat('a', 9000));
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(repeat('eyJhbGciOiJSUzI1NiJ9', 400) || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE

-- Invalid input: algorithms other than RS256, whatever the key
SELECT mandant.authenticate(pg_temp.b64url('{"alg": "none", "typ": "JWT"}') || '.' || :'p' || '.x');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'hs256');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('{"alg": "RS256", "alg": "none", "kid": "' || :'kid' || '"}') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('{"alg": "RS256", "kid": "' || :'kid' || '", "crit": ["exp"]}') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('{"alg": "RS256", "kid": "not-a-key-of-ours"}') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(pg_temp.b64url('{"alg": "RS256"}') || '.' || :'p' || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE

-- Invalid input: tampered payloads (Tom's claims under Tara's signature)
SELECT mandant.authenticate(:'h' || '.' || pg_temp.b64url(replace(convert_from(decode(rpad(translate(:'p', '-_', '+/'),
	(length(:'p') + 3) / 4 * 4, '='), 'base64'), 'UTF8'), :'tara', :'tom')) || '.' || :'s');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'h' || '.' || :'p' || '.' || CASE WHEN left(:'s', 1) = 'A' THEN 'B' ELSE 'A' END || substr(:'s', 2));
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Invalid input: a token signed by a key the server does not know
SET mandant.jwt_private_key_file = '../keys/foreign.key';
SELECT pg_temp.resign(:'claims', '{}') AS foreign_token \gset
RESET mandant.jwt_private_key_file;
SET ROLE regress_user;
-- (the detail names the foreign key's thumbprint, which differs per run)
\set VERBOSITY terse
SELECT mandant.authenticate(:'foreign_token');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;

-- Key rotation: a token signed by the previous key verifies as long as its
-- public key is listed; the key set publishes both.
SET mandant.jwt_private_key_file = '../keys/previous.key';
SELECT pg_temp.resign(:'claims', '{}') AS previous_token \gset
RESET mandant.jwt_private_key_file;
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'previous_token') ->> 'role' AS role_with_previous_key;
COMMIT;
SELECT jsonb_array_length(mandant.jwks() -> 'keys') AS published_keys,
	   (SELECT count(DISTINCT k ->> 'kid') FROM jsonb_array_elements(mandant.jwks() -> 'keys') k) AS distinct_kids,
	   mandant.jwks() #>> '{keys,0,alg}' AS alg, mandant.jwks() #>> '{keys,0,e}' AS e;
RESET ROLE;

-- The backend remembers the tokens it verified (tokencache.c), but a
-- remembered token fails as soon as its key is no longer listed or the
-- issuer changed (its expiry is checked on every call, like its revocation).
SET mandant.jwt_public_key_file = '';
SET ROLE regress_user;
\set VERBOSITY terse
SELECT mandant.authenticate(:'previous_token');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
RESET mandant.jwt_public_key_file;
SET mandant.jwt_issuer = 'another-issuer';
SET ROLE regress_user;
SELECT mandant.authenticate(:'token');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
RESET mandant.jwt_issuer;
SET ROLE regress_user;
BEGIN;
SELECT mandant.authenticate(:'previous_token') ->> 'role' AS previous_key_listed_again,
	   mandant.authenticate(:'token') ->> 'role' AS issuer_back;
COMMIT;
\set VERBOSITY default
RESET ROLE;

-- Times, issuer, claims (signed with the right key; 30 s leeway).
SELECT extract(epoch FROM now())::bigint AS now \gset
SELECT pg_temp.resign(:'claims', jsonb_build_object('exp', :now - 60)) AS expired,
	   pg_temp.resign(:'claims', jsonb_build_object('exp', :now - 20)) AS within_leeway,
	   pg_temp.resign(:'claims', jsonb_build_object('nbf', :now + 120)) AS not_yet,
	   pg_temp.resign(:'claims', jsonb_build_object('iat', :now + 120)) AS from_the_future,
	   pg_temp.resign(:'claims', '{"iss": "someone-else"}') AS other_issuer,
	   pg_temp.resign(:'claims', '{}', '{jti}') AS no_jti,
	   pg_temp.resign(:'claims', '{"typ": "refresh"}') AS wrong_type,
	   pg_temp.resign(:'claims', '{"scopes": ["read", "root"]}') AS unknown_scope,
	   pg_temp.resign(:'claims', '{"sub": "tara"}') AS bad_subject,
	   pg_temp.resign(:'claims', '{"exp": "tomorrow"}') AS text_exp,
	   pg_temp.resign(:'claims', '{"scopes": "read write"}') AS scopes_as_string
\gset
SET ROLE regress_user;
\set VERBOSITY terse
SELECT mandant.authenticate(:'expired');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
BEGIN;
SELECT mandant.authenticate(:'within_leeway') IS NOT NULL AS accepted_within_leeway;
COMMIT;
SELECT mandant.authenticate(:'not_yet');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'from_the_future');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'other_issuer');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'no_jti');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'wrong_type');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'unknown_scope');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'bad_subject');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'text_exp');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.authenticate(:'scopes_as_string');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the signing functions are not for applications
SELECT mandant.jwt_sign('{"sub": "me", "scopes": ["internal"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.jwt_verify(:'token');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT mandant.jwt_sign('[1]');
\echo :LAST_ERROR_SQLSTATE

-- Refresh: rotation, then reuse of the rotated token revokes the session
-- (although the call that detects it raises).
SET ROLE regress_user;
SELECT mandant.refresh(:'refresh') AS rotated \gset
SELECT (:'rotated'::jsonb ? 'accessToken') AND (:'rotated'::jsonb ->> 'refreshToken') <> :'refresh' AS new_pair;
BEGIN;
SELECT mandant.authenticate(:'rotated'::jsonb ->> 'accessToken') ->> 'role' AS role_after_refresh;
COMMIT;
SELECT mandant.refresh(:'refresh');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.refresh(:'rotated'::jsonb ->> 'refreshToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.refresh('not a refresh token');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.refresh(NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT revoked_reason FROM mandant.refresh_family f
JOIN mandant.refresh_token r ON r.family_id = f.id
WHERE r.token_hash = sha256(convert_to(:'refresh', 'UTF8'));
SELECT count(*) AS reuse_events FROM mandant.audit_event WHERE action = 'token.reuse_detected' AND entity_id = :'tara';

-- An expired refresh token.
SELECT mandant.login('tom@acme.test', 'toms long password') AS tom_login \gset
UPDATE mandant.refresh_token SET expires_at = now() - interval '1 second'
WHERE token_hash = sha256(convert_to(:'tom_login'::jsonb ->> 'refreshToken', 'UTF8'));
SET ROLE regress_user;
\set VERBOSITY terse
SELECT mandant.refresh(:'tom_login'::jsonb ->> 'refreshToken');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Logout: the access token is denied until it expires, the session ends.
SELECT mandant.login('tara@acme.test', 'taras long password') AS login2 \gset
SELECT mandant.logout(:'login2'::jsonb ->> 'accessToken');
SELECT mandant.authenticate(:'login2'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.refresh(:'login2'::jsonb ->> 'refreshToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.logout('garbage');
\echo :LAST_ERROR_SQLSTATE

-- Password change: the old password is needed; every token is revoked.
SELECT mandant.login('tom@acme.test', 'toms long password') AS tom_login \gset
BEGIN;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken') IS NOT NULL AS tom_in;
SAVEPOINT s;
SELECT mandant.change_password('not my password', 'toms new long password');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.change_password('toms long password', 'short');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT mandant.change_password('toms long password', 'toms new long password');
COMMIT;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.refresh(:'tom_login'::jsonb ->> 'refreshToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('tom@acme.test', 'toms long password');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('tom@acme.test', 'toms new long password') AS tom_login \gset
-- Invalid input: self-service without a signed-in user
SELECT mandant.change_password('toms new long password', 'yet another password');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.totp_enroll();
\echo :LAST_ERROR_SQLSTATE

-- Sign out everywhere (the user themselves).
BEGIN;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken') IS NOT NULL AS tom_in;
SELECT mandant.revoke_user_tokens(:'tom');
COMMIT;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Disabled, removed and deleted users, suspended tenants.
SELECT mandant.login('tom@acme.test', 'toms new long password') AS tom_login \gset
SET ROLE regress_service;
SELECT mandant.disable_user(:'tom');
SET ROLE regress_user;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_service;
SELECT mandant.enable_user(:'tom');
SET ROLE regress_user;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('tom@acme.test', 'toms new long password') AS tom_login \gset
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant(:'acme');
SELECT mandant.remove_member(:'acme', :'tom');
COMMIT;
SET ROLE regress_user;
SELECT mandant.authenticate(:'tom_login'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SELECT (mandant.login('tom@acme.test', 'toms new long password') -> 'tenant') AS tenant_of_a_user_without_tenants;
RESET ROLE;
SELECT mandant.login('tara@acme.test', 'taras long password') AS login3 \gset
UPDATE mandant.tenant SET status = 'suspended' WHERE id = :'acme';
SET ROLE regress_user;
SELECT mandant.authenticate(:'login3'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.login('tara@acme.test', 'taras long password', tenant_slug => 'tok-acme');
\echo :LAST_ERROR_SQLSTATE
-- a slug the account is not a member of (or a typo): its own code
SELECT mandant.login('tara@acme.test', 'taras long password', tenant_slug => 'tok-acm');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
UPDATE mandant.tenant SET status = 'active' WHERE id = :'acme';
DELETE FROM mandant.users WHERE id = :'tara';
SET ROLE regress_user;
SELECT mandant.authenticate(:'login3'::jsonb ->> 'accessToken');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

DELETE FROM mandant.tenant WHERE id = :'acme';
DELETE FROM mandant.users WHERE id = :'tom';
