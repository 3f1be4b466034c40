#!/bin/sh
# cors.sh: CORS for the origins of MANDANT_CORS_ORIGINS only.
. "$(dirname "$0")/lib.sh"
http_cluster
gateway_start

req -H 'Origin: https://app.example.test' "$gw/test/v1/echo" >/dev/null
ok "$([ "$(header access-control-allow-origin)" = https://app.example.test ] &&
	[ "$(header access-control-allow-credentials)" = true ]; echo $?)" "an allowed origin gets its CORS headers"
req -H 'Origin: https://admin.example.test' "$gw/test/v1/echo" >/dev/null
ok "$([ "$(header access-control-allow-origin)" = https://admin.example.test ]; echo $?)" "the second allowed origin too"
req -H 'Origin: https://evil.example.test' "$gw/test/v1/echo" >/dev/null
ok "$([ -z "$(header access-control-allow-origin)" ] && [ -z "$(header access-control-allow-credentials)" ]; echo $?)" \
	"another origin gets no CORS header"
req -H 'Origin: https://app.example.test.evil.test' "$gw/test/v1/echo" >/dev/null
ok "$([ -z "$(header access-control-allow-origin)" ]; echo $?)" "origins are compared exactly"
ok "$([ "$(req -X OPTIONS -H 'Origin: https://app.example.test' -H 'Access-Control-Request-Method: POST' \
	-H 'Access-Control-Request-Headers: authorization, content-type' "$gw/test/v1/echo")" = 204 ] &&
	[ "$(header access-control-allow-origin)" = https://app.example.test ] &&
	header access-control-allow-methods | grep -q POST &&
	header access-control-allow-headers | grep -q authorization &&
	[ "$(grep -ci '^access-control-allow-origin' "$http_work/h")" = 1 ]; echo $?)" \
	"a preflight from an allowed origin is answered 204 by the gateway"
ok "$([ "$(req -X OPTIONS -H 'Origin: https://evil.example.test' -H 'Access-Control-Request-Method: POST' "$gw/test/v1/echo")" = 204 ] &&
	[ -z "$(header access-control-allow-origin)" ] && [ -z "$(header access-control-allow-methods)" ]; echo $?)" \
	"a preflight from another origin gets no CORS header"
req "$gw/test/v1/echo" >/dev/null
ok "$([ -z "$(header access-control-allow-origin)" ] && [ "$(header x-frame-options)" = DENY ]; echo $?)" \
	"a request without Origin gets no CORS header"

done_testing
