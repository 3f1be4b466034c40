#!/bin/sh
# tls.sh: the gateway with TLS (MANDANT_TLS_CERT/KEY/DHPARAM): self-signed
# certificates made here with openssl, an ECDSA and an RSA one, each
# checked with curl --cacert over TLS 1.3 and 1.2, with HSTS on every
# response, a routed request reaching the database, and no cleartext
# HTTP on the TLS port.  Kore 4.1's key manager cannot sign with
# OpenSSL 3; shim/src/tls.c gives the workers the key.
. "$(dirname "$0")/lib.sh"
http_cluster

tls=$http_work/tls
mkdir "$tls"
# RFC 7919's ffdhe2048 group: standard DH parameters, made at once.
openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out "$tls/dh.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$tls/ec.key" -out "$tls/ec.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 1 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$tls/rsa.key" -out "$tls/rsa.pem" 2>/dev/null

# status VERSION PATH: the status of a GET over TLS VERSION only.
status() {
	req --cacert "$gw_cacert" --tlsv"$1" --tls-max "$1" "$gw$2"
}

for kind in ec rsa; do
	gw_cacert=$tls/$kind.pem
	gateway_start MANDANT_TLS_CERT="$tls/$kind.pem" MANDANT_TLS_KEY="$tls/$kind.key" \
		MANDANT_TLS_DHPARAM="$tls/dh.pem"
	ok "$([ "$(status 1.3 /health)" = 200 ] && body_has '"success": *true'; echo $?)" \
		"$kind: /health answers 200 over TLS 1.3, the certificate verified"
	ok "$([ "$(status 1.2 /health)" = 200 ]; echo $?)" "$kind: and over TLS 1.2"
	ok "$([ "$(header strict-transport-security)" = "max-age=31536000; includeSubDomains" ]; echo $?)" \
		"$kind: HSTS is sent with TLS"
	ok "$([ "$(status 1.3 /test/v1/echo)" = 200 ] && [ -n "$(header strict-transport-security)" ] &&
		[ "$(header x-content-type-options)" = nosniff ]; echo $?)" \
		"$kind: a routed request reaches the database over TLS, with HSTS and the security headers"
	i=0
	while [ $i -lt 20 ]; do
		curl -s -o /dev/null --cacert "$gw_cacert" "$gw/health" || break
		i=$((i + 1))
	done
	ok "$([ $i -eq 20 ] && kill -0 "$gw_pid"; echo $?)" "$kind: 20 more handshakes, the workers alive"
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw_port/health" || true)
	ok "$([ "$code" = 000 ]; echo $?)" "$kind: no cleartext HTTP on the TLS port (got $code)"
	check "$kind: no worker died (sandbox or otherwise)" \
		sh -c "! grep -E 'died|sandbox violation' '$http_work/gateway.out'"
	gateway_stop
	ok "$gw_status" "$kind: SIGTERM stops the gateway (exit 0)"
done

# A key that is not the certificate's: the gateway refuses to start.
gw_port=$(free_port)
rc=0
env MANDANT_DATABASE_URL="$db_url" MANDANT_HTTP_PORT="$gw_port" MANDANT_GATEWAY_DIR="$http_work/gateway" \
	MANDANT_TLS_CERT="$tls/ec.pem" MANDANT_TLS_KEY="$tls/rsa.key" MANDANT_TLS_DHPARAM="$tls/dh.pem" \
	timeout 20 shim/run >"$http_work/gateway.out" 2>&1 || rc=$?
ok "$([ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q 'is not the key of the certificate' "$http_work/gateway.out"; echo $?)" \
	"a key that does not fit the certificate: the gateway does not start, and says why"

done_testing
