#!/bin/sh
# contract.sh: every status of the error table that a request can reach,
# through the real gateway: the code of its envelope, details, and the
# headers that go with it (www-authenticate, allow, retry-after).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/accounts.inc"
accounts_gateway
ada=$(login ada@acme.test acme)
vic=$(login vic@acme.test acme)
sue=$(login sue@small.test small)
sam=$(login sam@sleepy.test sleepy)
bob_id=$(su_sql "SELECT id FROM mandant.users WHERE email = 'bob@beta.test'")
acme='Host: acme.example.test'

# 200 and 400
check "200: a write answers its row in the success envelope" \
	is 200 - -X POST -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"title":"Fire exits"}' "$gw/test/v1/tasks"
task=$(jget data.id)
ok "$([ "$(jget data.status)" = open ] && [ "$(jget data.tenantId)" = a7000000-0000-4000-8000-00000000000a ] && echo 0 || echo 1)" \
	"the row has camelCase keys, the initial status and the tenant of the token"
check "400 VALIDATION_ERROR: wrong types and unknown keys, one detail per field" \
	is 400 VALIDATION_ERROR -X POST -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"title":5,"colour":"red"}' "$gw/test/v1/tasks"
ok "$([ "$(jget error.details.0.field)" = colour ] || [ "$(jget error.details.1.field)" = colour ] && echo 0 || echo 1)" \
	"the details name the unknown key: $(jget error.details)"
check "400 VALIDATION_ERROR: a value the table refuses (check constraint)" \
	is 400 VALIDATION_ERROR -X POST -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"title":""}' "$gw/test/v1/tasks"
check "400 VALIDATION_ERROR: a path parameter of the wrong type" \
	is 400 VALIDATION_ERROR -X PUT -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"status":"done"}' "$gw/test/v1/tasks/abc/status"
check "400 TENANT_REQUIRED: a function that needs a tenant, none addressed" is 400 TENANT_REQUIRED "$gw/test/v1/whose"
check "400 SECRET_NOT_ALLOWED: a plain secret as a configuration value" \
	is 400 SECRET_NOT_ALLOWED -X PUT -H "$acme" -H "Authorization: Bearer $ada" -H "$json" \
	--data '{"value":"hunter2","reason":"relay"}' "$gw/api/v1/config/mailer/smtp.password"

# 401, always with www-authenticate
check "401 TOKEN_INVALID: no bearer token" is 401 TOKEN_INVALID -H "$acme" "$gw/test/v1/tasks"
ok "$([ "$(header www-authenticate)" = Bearer ] && echo 0 || echo 1)" "with www-authenticate: Bearer"
check "401 TOKEN_INVALID: a token that is no JWT" is 401 TOKEN_INVALID -H "$acme" -H 'Authorization: Bearer x.y.z' "$gw/test/v1/tasks"
ok "$([ "$(header www-authenticate)" = Bearer ] && echo 0 || echo 1)" "with www-authenticate: Bearer"
check "401 INVALID_CREDENTIALS: a wrong password" \
	is 401 INVALID_CREDENTIALS -X POST -H "$acme" -H "$json" --data '{"email":"ada@acme.test","password":"not her password"}' "$gw/api/v1/auth/login"
ok "$([ "$(header www-authenticate)" = Bearer ] && [ -z "$(header set-cookie)" ] && echo 0 || echo 1)" "with www-authenticate, without a cookie"
check "401 INVALID_CREDENTIALS: an unknown account answers the same" \
	is 401 INVALID_CREDENTIALS -X POST -H "$acme" -H "$json" --data '{"email":"nobody@acme.test","password":"not a password"}' "$gw/api/v1/auth/login"
# MFA: Sid enrolls a one-time code
sid=$(login sid@small.test small)
req -X POST -H "Authorization: Bearer $sid" -H "$json" --data '{}' "$gw/api/v1/auth/totp/enroll" >/dev/null
# the secret is base32: its bytes in hex, and their current code
secret=$(jget data.secret | perl -ne 'tr/A-Z2-7//cd;
	my $bits = join "", map { sprintf "%05b", index("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", $_) } split //;
	print unpack "H*", pack "B*", substr($bits, 0, length($bits) - length($bits) % 8)')
code=$(su_sql "SELECT mandant.totp_code('\\x$secret'::bytea)")
check "TOTP enrollment is confirmed with the current code" \
	is 200 - -X POST -H "Authorization: Bearer $sid" -H "$json" --data "{\"code\":\"$code\"}" "$gw/api/v1/auth/totp/confirm"
check "401 MFA_REQUIRED: a login without the one-time code" \
	is 401 MFA_REQUIRED -X POST -H "$json" --data '{"email":"sid@small.test","password":"sid@small.test password"}' "$gw/api/v1/auth/login"

# 403
check "403 FORBIDDEN: a viewer writes (no scope write)" \
	is 403 FORBIDDEN -X POST -H "$acme" -H "Authorization: Bearer $vic" -H "$json" --data '{"title":"Vic was here"}' "$gw/test/v1/tasks"
check "403 FORBIDDEN: an agent manages members (scope admin)" \
	is 403 FORBIDDEN -X POST -H "Authorization: Bearer $sid" -H "$json" --data "{\"userId\":\"$bob_id\",\"role\":\"viewer\"}" "$gw/api/v1/members"
check "403 PLAN_LIMIT_REACHED: a third user on the free plan" \
	is 403 PLAN_LIMIT_REACHED -X POST -H "Authorization: Bearer $sue" -H "$json" --data "{\"userId\":\"$bob_id\",\"role\":\"viewer\"}" "$gw/api/v1/members"
check "403 NOT_A_MEMBER: a login to a tenant the account is not a member of" \
	is 403 NOT_A_MEMBER -X POST -H 'X-Tenant: beta' -H "$json" --data '{"email":"ada@acme.test","password":"ada@acme.test password"}' "$gw/api/v1/auth/login"
check "a token of a tenant that is active works" is 200 - -H "Authorization: Bearer $sam" "$gw/api/v1/auth/me"
su_sql "SELECT mandant.suspend_tenant('d7000000-0000-4000-8000-00000000000d', 'invoice unpaid')" >/dev/null
check "403 TENANT_SUSPENDED: the same token once its tenant is suspended" \
	is 403 TENANT_SUSPENDED -H "Authorization: Bearer $sam" "$gw/api/v1/auth/me"
check "403 TENANT_SUSPENDED: and a new login there" \
	is 403 TENANT_SUSPENDED -X POST -H 'X-Tenant: sleepy' -H "$json" --data '{"email":"sam@sleepy.test","password":"sam@sleepy.test password"}' "$gw/api/v1/auth/login"

# 404, 405
check "404 NOT_FOUND: no route" is 404 NOT_FOUND -H "Authorization: Bearer $ada" "$gw/test/v1/nothing"
check "404 NOT_FOUND: the function found nothing (P0002)" \
	is 404 NOT_FOUND -X PUT -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"status":"done"}' "$gw/test/v1/tasks/999999/status"
check "404 TENANT_NOT_FOUND: X-Tenant names no tenant" is 404 TENANT_NOT_FOUND -H 'X-Tenant: nope' -H "Authorization: Bearer $ada" "$gw/test/v1/tasks"
check "404 TENANT_NOT_FOUND: nor does the subdomain" is 404 TENANT_NOT_FOUND -H 'Host: nope.example.test' "$gw/test/v1/whose"
check "405 METHOD_NOT_ALLOWED: another method" is 405 METHOD_NOT_ALLOWED -X DELETE -H "Authorization: Bearer $ada" "$gw/test/v1/tasks"
ok "$([ "$(header allow)" = "GET, POST" ] && echo 0 || echo 1)" "with allow: $(header allow)"

# 409
check "409 CONFLICT: a title taken (unique violation)" \
	is 409 CONFLICT -X POST -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"title":"Fire exits"}' "$gw/test/v1/tasks"
check "the status machine lets the task move open -> done" \
	is 200 - -X PUT -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"status":"done"}' "$gw/test/v1/tasks/$task/status"
check "409 INVALID_TRANSITION: done -> open is not declared" \
	is 409 INVALID_TRANSITION -X PUT -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"status":"open"}' "$gw/test/v1/tasks/$task/status"
config() {
	is "$1" "$2" -X PUT -H "$acme" -H "Authorization: Bearer $ada" -H "$json" ${3:+-H "If-Match: $3"} \
		--data "{\"value\":\"$4\",\"reason\":\"test\"}" "$gw/api/v1/config/billing/currency"
}
check "a configuration value is written (version 1)" config 200 - "" EUR
ok "$([ "$(jget data.version)" = 1 ] && echo 0 || echo 1)" "its version is 1: $(jget data)"
check "If-Match with the current version writes version 2" config 200 - '"1"' CHF
check "409 VERSION_CONFLICT: If-Match with a stale version" config 409 VERSION_CONFLICT '"1"' USD
check "and the value stays the one of version 2" is 200 - -H "$acme" -H "Authorization: Bearer $ada" "$gw/api/v1/config/billing/currency"
ok "$([ "$(jget data.value)" = CHF ] && [ "$(jget data.version)" = 2 ] && echo 0 || echo 1)" "value CHF, version 2: $(jget data)"

# 413 (Kore's, no envelope), 500
big=$(head -c 5000 /dev/zero | tr '\0' a)
ok "$([ "$(req -X POST -H "$json" --data "{\"message\":\"$big\"}" "$gw/test/v1/echo")" = 413 ] && echo 0 || echo 1)" "413: a body over MANDANT_MAX_BODY"
check "500 INTERNAL_ERROR: an unexpected error of the function" \
	is 500 INTERNAL_ERROR -X POST -H "$acme" -H "Authorization: Bearer $ada" -H "$json" --data '{"secret":"s3cr3t-42"}' "$gw/test/v1/explode"
ok "$(! grep -Eqi 's3cr3t|lost track|http_app|SQLSTATE|P0001|explode' "$http_work/b" "$http_work/h" && echo 0 || echo 1)" \
	"no SQL text, SQLSTATE or value of the failure in the answer: $(jget error)"
# 503 and 429 last, with a gateway started again: a statement timeout of
# 500 ms, and a limit of 5 requests per minute and address for its new
# sessions, from addresses of their own (127.0.0.3 and up).
su_sql "ALTER DATABASE mandant_http SET mandant.http_requests_per_address = 5" >/dev/null
gateway_stop
gateway_start MANDANT_BASE_DOMAIN=example.test
check "503 TIMEOUT: a statement over the statement timeout" is 503 TIMEOUT --interface 127.0.0.5 "$gw/test/v1/sleep"
ok "$(! grep -Eqi 'pg_sleep|cancel|statement' "$http_work/b" && echo 0 || echo 1)" "without server text"
codes=""
i=0
while [ $i -lt 7 ]; do codes="$codes $(req --interface 127.0.0.3 "$gw/test/v1/echo")"; i=$((i + 1)); done
ok "$([ "$codes" = " 200 200 200 200 200 429 429" ] && echo 0 || echo 1)" "429 past 5 requests a minute from one address:$codes"
ok "$(envelope_code RATE_LIMITED && header retry-after | grep -Eq '^[1-9][0-9]*$' && echo 0 || echo 1)" \
	"RATE_LIMITED with retry-after: $(header retry-after)"
ok "$([ "$(req --interface 127.0.0.4 "$gw/test/v1/echo")" = 200 ] && echo 0 || echo 1)" "another address is not limited"
ok "$([ "$(req --interface 127.0.0.3 "$gw/health")" = 200 ] && echo 0 || echo 1)" "nor the gateway's own /health"
done_testing
