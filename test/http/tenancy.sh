#!/bin/sh
# tenancy.sh: the tenant a request addresses (Host, spoofed, upper case,
# with a port; X-Tenant over Host) against the tenant of its token, and
# tokens that must not pass: another tenant's, forged, expired, signed by
# an unknown key, revoked.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/accounts.inc"
accounts_gateway
ada=$(login ada@acme.test acme)
bob=$(login bob@beta.test beta)

# me TOKEN CURL-ARGS...: GET /api/v1/auth/me; prints the status.
me() {
	t=$1
	shift
	req -H "Authorization: Bearer $t" "$@" "$gw/api/v1/auth/me"
}
# tenant_is STATUS SLUG: the last answer was STATUS for tenant SLUG.
answered() {
	[ "$1" = "$2" ] && [ "$(jget data.tenant.slug)" = "$3" ] && echo 0 || echo 1
}

# the Host header
ok "$(answered "$(me "$ada" -H 'Host: acme.example.test')" 200 acme)" "Host of the token's tenant: 200"
ok "$([ "$(me "$ada" -H 'Host: beta.example.test')" = 403 ] && envelope_code FORBIDDEN && echo 0 || echo 1)" \
	"Host of another tenant with the token of the first: 403 FORBIDDEN"
ok "$(answered "$(me "$ada" -H 'Host: ACME.Example.TEST')" 200 acme)" "an upper-case Host addresses the same tenant"
ok "$([ "$(me "$ada" -H 'Host: BETA.EXAMPLE.TEST')" = 403 ] && echo 0 || echo 1)" "and upper case does not get past the check: 403"
ok "$(answered "$(me "$ada" -H 'Host: acme.example.test:8443')" 200 acme)" "a Host with a port: the port is ignored"
ok "$([ "$(me "$ada" -H 'Host: beta.example.test:8443')" = 403 ] && echo 0 || echo 1)" "another tenant's Host with a port: 403"
ok "$([ "$(me "$ada" -H 'Host: nope.example.test')" = 404 ] && envelope_code TENANT_NOT_FOUND && echo 0 || echo 1)" \
	"a Host of no tenant: 404 TENANT_NOT_FOUND"
ok "$([ "$(me "$ada" -H 'Host: x.acme.example.test')" = 404 ] && echo 0 || echo 1)" "a deeper subdomain is no tenant: 404"
ok "$(answered "$(me "$ada" -H 'Host: beta.example.test.attacker.test')" 200 acme)" \
	"a Host that only starts like another tenant's addresses none: the token's tenant"
ok "$(answered "$(me "$bob" -H 'Host: 127.0.0.1')" 200 beta)" "no tenant addressed: the token's (Bob: beta)"
# X-Tenant overrides Host
ok "$([ "$(me "$ada" -H 'Host: acme.example.test' -H 'X-Tenant: beta')" = 403 ] && envelope_code FORBIDDEN && echo 0 || echo 1)" \
	"X-Tenant of another tenant beats the Host of the token's: 403"
ok "$(answered "$(me "$ada" -H 'Host: beta.example.test' -H 'X-Tenant: acme')" 200 acme)" \
	"X-Tenant of the token's tenant beats another tenant's Host: 200"
ok "$(answered "$(me "$ada" -H 'X-Tenant: a7000000-0000-4000-8000-00000000000a')" 200 acme)" "X-Tenant by id"
ok "$([ "$(me "$ada" -H 'X-Tenant: b7000000-0000-4000-8000-00000000000b')" = 403 ] && echo 0 || echo 1)" "another tenant's id: 403"
ok "$([ "$(me "$ada" -H 'X-Tenant: nope')" = 404 ] && envelope_code TENANT_NOT_FOUND && echo 0 || echo 1)" "X-Tenant of no tenant: 404"
# the rows: each tenant sees its own
check "Ada writes a task in acme" \
	is 200 - -X POST -H 'X-Tenant: acme' -H "Authorization: Bearer $ada" -H "$json" --data '{"title":"Only acme"}' "$gw/test/v1/tasks"
check "Bob lists the tasks of beta" is 200 - -H 'Host: beta.example.test' -H "Authorization: Bearer $bob" "$gw/test/v1/tasks"
ok "$([ "$(jget pagination.total)" = 0 ] && echo 0 || echo 1)" "and sees none of acme's: $(jget pagination)"
check "Bob's token addressing acme is refused" \
	is 403 FORBIDDEN -H 'Host: acme.example.test' -H "Authorization: Bearer $bob" "$gw/test/v1/tasks"

# tokens: forged ones are 401 TOKEN_INVALID with www-authenticate
# b64 / unb64: base64url without padding, and back.
b64() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
head_part=${ada%%.*}
rest=${ada#*.}
payload=${rest%%.*}
sig=${rest#*.}
bob_payload=$(echo "$bob" | cut -d. -f2)
# flip one character in the middle of the signature
mid=$((${#sig} / 2))
c=$(echo "$sig" | cut -c$((mid + 1)))
[ "$c" = A ] && d=B || d=A
bad_sig=$(echo "$sig" | cut -c1-$mid)$d$(echo "$sig" | cut -c$((mid + 2))-)
invalid() {
	[ "$(me "$1" -H 'X-Tenant: acme')" = 401 ] && envelope_code TOKEN_INVALID &&
		[ "$(header www-authenticate)" = Bearer ] && echo 0 || echo 1
}
ok "$(invalid "$head_part.$payload.$bad_sig")" "a token with a tampered signature: 401 TOKEN_INVALID"
ok "$(invalid "$head_part.$bob_payload.$sig")" "another token's claims under Ada's signature: 401 TOKEN_INVALID"
ok "$(invalid "$(printf '{"alg":"none","typ":"JWT"}' | b64).$payload.")" "alg none without a signature: 401 TOKEN_INVALID"
ok "$(invalid "$(printf '{"alg":"HS256","typ":"JWT"}' | b64).$payload.$sig")" "alg HS256 with Ada's signature: 401 TOKEN_INVALID"
ok "$(invalid "$ada.")" "a token with a trailing dot: 401"
ok "$(invalid "")" "an empty bearer token: 401"
ok "$([ "$(me "$ada" -H 'X-Tenant: acme')" = 200 ] && echo 0 || echo 1)" "Ada's token itself still passes"
# signed by the server's key, as the superuser: fresh times pass, past ones
# are TOKEN_EXPIRED
resign() {
	su_sql "SELECT mandant.jwt_sign(mandant.jwt_verify('$ada') || jsonb_build_object('jti', gen_random_uuid(),
		'iat', extract(epoch FROM now())::bigint + $1, 'exp', extract(epoch FROM now())::bigint + $2))"
}
ok "$(answered "$(me "$(resign -60 600)" -H 'X-Tenant: acme')" 200 acme)" "a token signed again with fresh times passes"
expired=$(resign -7200 -3600)
ok "$([ "$(me "$expired" -H 'X-Tenant: acme')" = 401 ] && envelope_code TOKEN_EXPIRED &&
	[ "$(header www-authenticate)" = Bearer ] && echo 0 || echo 1)" "a token that expired an hour ago: 401 TOKEN_EXPIRED with www-authenticate"
keyfile=$(sed -n "s/^mandant.jwt_private_key_file = '\(.*\)'$/\1/p" "${MANDANT_TEST_CONF:-/dev/null}" | tail -1)
foreign=${keyfile%/*}/foreign.key
if [ -n "$keyfile" ] && [ -f "$foreign" ]; then
	claims=$(su_sql "SELECT mandant.jwt_verify('$ada') || jsonb_build_object('jti', gen_random_uuid())")
	other=$(su_sql "SET mandant.jwt_private_key_file = '$foreign'; SELECT mandant.jwt_sign('$claims')")
	ok "$(invalid "$other")" "a token signed by a key the server does not know: 401 TOKEN_INVALID"
else
	skip "no foreign key beside the signing key of MANDANT_TEST_CONF"
fi
# revoked by logout
vic=$(login vic@acme.test acme)
ok "$(answered "$(me "$vic")" 200 acme)" "Vic's token passes"
ok "$([ "$(req -X POST -H "Authorization: Bearer $vic" -H "$json" --data '{}' "$gw/api/v1/auth/logout")" = 200 ] &&
	header set-cookie | grep -q '^mandant_refresh=; Max-Age=0; Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict$' && echo 0 || echo 1)" \
	"logout answers 200 and clears the refresh cookie: $(header set-cookie)"
ok "$([ "$(me "$vic")" = 401 ] && envelope_code TOKEN_REVOKED && [ "$(header www-authenticate)" = Bearer ] && echo 0 || echo 1)" \
	"the token after logout: 401 TOKEN_REVOKED with www-authenticate"
ok "$([ "$(req -X POST -H "Authorization: Bearer $vic" -H "$json" --data '{}' "$gw/api/v1/auth/logout")" = 401 ] &&
	envelope_code TOKEN_REVOKED && echo 0 || echo 1)" "a second logout with it: 401 TOKEN_REVOKED"
ok "$(answered "$(me "$ada")" 200 acme)" "Ada's token is not affected"
done_testing
