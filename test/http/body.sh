#!/bin/sh
# body.sh: request bodies: JSON passed on, too large 413, not JSON 400.
. "$(dirname "$0")/lib.sh"
http_cluster
gateway_start

ok "$([ "$(req -X POST -H 'Content-Type: application/json' --data '{"message":"hi \"there\""}' "$gw/test/v1/echo")" = 200 ] &&
	body_has 'hi \\"there\\"'; echo $?)" "a JSON body reaches the function"
ok "$([ "$(req -X POST -H 'Content-Type: application/json; charset=utf-8' --data '{"message":"é"}' "$gw/test/v1/echo")" = 200 ]; echo $?)" \
	"application/json with a charset parameter is accepted"
big=$(head -c 5000 /dev/zero | tr '\0' a)
ok "$([ "$(req -X POST -H 'Content-Type: application/json' --data "{\"message\":\"$big\"}" "$gw/test/v1/echo")" = 413 ]; echo $?)" \
	"a body over MANDANT_MAX_BODY is refused with 413"
ok "$([ "$(req -X POST -H 'Content-Type: text/plain' --data '{"message":"x"}' "$gw/test/v1/echo")" = 400 ] &&
	envelope_code VALIDATION_ERROR; echo $?)" "a body that is not application/json is refused with 400 VALIDATION_ERROR"
ok "$([ "$(req -X POST --data '{"message":"x"}' -H 'Content-Type:' "$gw/test/v1/echo")" = 400 ] &&
	envelope_code VALIDATION_ERROR; echo $?)" "a body without Content-Type is refused with 400"
ok "$([ "$(req -X POST -H 'Content-Type: application/json' --data '{"message":' "$gw/test/v1/echo")" = 400 ] &&
	envelope_code VALIDATION_ERROR; echo $?)" "a body that does not parse is the database's 400 VALIDATION_ERROR"
printf '{"message":"\377"}' >"$http_work/latin1"
ok "$([ "$(req -X POST -H 'Content-Type: application/json' --data-binary "@$http_work/latin1" "$gw/test/v1/echo")" = 400 ] &&
	envelope_code VALIDATION_ERROR; echo $?)" "a body that is not UTF-8 is refused with 400"
ok "$([ "$(req -X POST -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data '{}' "$gw/test/v1/echo")" = 411 ]; echo $?)" \
	"a chunked body is refused (411, Kore)"
ok "$([ "$(req "$gw/health")" = 200 ]; echo $?)" "the gateway still answers"

done_testing
