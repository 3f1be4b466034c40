#!/bin/sh
# session.sh: the refresh token of login travels only as a cookie (its
# flags), refresh by that cookie rotates it (the old one is refused
# afterwards), and logout clears it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/accounts.inc"
accounts_gateway
ada=$(login ada@acme.test acme)
cookie=$(header set-cookie)
first=$(refresh_cookie)
ok "$([ -n "$ada" ] && [ -n "$first" ] && echo 0 || echo 1)" "login answers an access token and sets mandant_refresh"
ok "$(echo "$cookie" | grep -Eq '^mandant_refresh=[A-Za-z0-9_-]{20,}; ' && echo 0 || echo 1)" "the cookie holds a random token"
for flag in HttpOnly Secure SameSite=Strict Path=/api/v1/auth; do
	ok "$(echo "$cookie" | tr ';' '\n' | sed 's/^ //' | grep -qx "$flag" && echo 0 || echo 1)" "the cookie is $flag"
done
ok "$(! echo "$cookie" | grep -Eqi 'domain=|expires=' && echo 0 || echo 1)" "a host-only session cookie (no Domain)"
ok "$([ "$(grep -ci '^set-cookie' "$http_work/h")" = 1 ] && echo 0 || echo 1)" "one set-cookie"
ok "$(! grep -q "$first" "$http_work/b" && ! body_has 'refreshToken|refresh_token' && echo 0 || echo 1)" \
	"the refresh token is not in the body"

# refresh(CURL-ARGS...): POST /api/v1/auth/refresh; prints the status.
refresh() {
	req -X POST -H "$json" --data '{}' "$@" "$gw/api/v1/auth/refresh"
}
ok "$([ "$(refresh -H "Cookie: theme=dark; mandant_refresh=$first; lang=de")" = 200 ] && [ -n "$(jget data.accessToken)" ] &&
	echo 0 || echo 1)" "refresh by the cookie (among others) answers a new access token"
second=$(refresh_cookie)
new_access=$(jget data.accessToken)
ok "$([ -n "$second" ] && [ "$second" != "$first" ] && echo 0 || echo 1)" "and a new cookie: the refresh token is rotated"
ok "$(header set-cookie | grep -q '; Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict$' && echo 0 || echo 1)" "with the same flags"
ok "$(! grep -q "$second" "$http_work/b" && ! body_has 'refreshToken' && echo 0 || echo 1)" "and not in the body"
ok "$([ "$(jget data.tenant.slug)" = acme ] && echo 0 || echo 1)" "for the same tenant"
check "the new access token works" is 200 - -H "Authorization: Bearer $new_access" "$gw/api/v1/auth/me"
ok "$([ "$(refresh -H "Cookie: mandant_refresh=$first")" = 401 ] && [ "$(header www-authenticate)" = Bearer ] &&
	[ -z "$(refresh_cookie)" ] && echo 0 || echo 1)" \
	"the old cookie is refused afterwards: 401 $(jget error.code), no new cookie"
status=$(refresh)
ok "$([ "$status" = 401 ] && echo 0 || echo 1)" "refresh without a cookie: 401 $(jget error.code)"
ok "$([ "$(refresh -H 'Cookie: mandant_refresh=forged-token-value')" = 401 ] && echo 0 || echo 1)" \
	"a forged cookie: 401 $(jget error.code)"
check "a refresh token in the body instead of the cookie is refused" \
	is 400 VALIDATION_ERROR -X POST -H "$json" --data "{\"refreshToken\":\"$second\"}" "$gw/api/v1/auth/refresh"

# logout: the session ends, the cookie is cleared
bob=$(login bob@beta.test beta)
bob_cookie=$(refresh_cookie)
ok "$([ "$(req -X POST -H "Authorization: Bearer $bob" -H "$json" --data '{}' "$gw/api/v1/auth/logout")" = 200 ] &&
	header set-cookie | grep -q '^mandant_refresh=; Max-Age=0; Path=/api/v1/auth' && echo 0 || echo 1)" \
	"logout clears the cookie: $(header set-cookie)"
ok "$([ "$(refresh -H "Cookie: mandant_refresh=$bob_cookie")" = 401 ] && echo 0 || echo 1)" \
	"the refresh token of the ended session is refused: $(jget error.code)"
done_testing
