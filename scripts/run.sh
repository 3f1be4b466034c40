#!/bin/sh
# run.sh: what `make run` / `make stop` do.
#
#   scripts/run.sh start    install what is missing, build, start the private
#                           cluster under .run/ (port $PGPORT, default 5433),
#                           create database "mandant" with the extension and
#                           the demo, start the HTTP gateway (shim/run, port
#                           $MANDANT_HTTP_PORT, default 8888), print how to
#                           connect and what to try; each phase is announced
#                           with the seconds elapsed
#   scripts/run.sh ensure   the same, quietly (used by make bench)
#   scripts/run.sh stop     stop the gateway and the cluster
#   scripts/run.sh demo     load the demo into database "mandant" of the
#                           server that PGHOST and PGPORT name, as PGUSER (a
#                           superuser), with its passwords in
#                           $MANDANT_RUN_DIR (test/shell/readme.sh)
#   scripts/run.sh tour     print the tour that `start` ends with
#
# The superuser connects over the private unix socket in .run/ only; the
# demo's login roles connect over TCP on 127.0.0.1 with passwords generated
# into .run/pgpass (never committed).
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
action=${1:-start}

rundir=${MANDANT_RUN_DIR:-$top/.run}
datadir=$rundir/data
logfile=$rundir/server.log
port=${PGPORT:-5433}
http_port=${MANDANT_HTTP_PORT:-8888}
db=mandant
gateway_pid=$rundir/gateway.pid
gateway_log=$rundir/gateway.log

# Unix socket paths are limited to about 100 bytes.
sockdir=$rundir
if [ ${#sockdir} -gt 80 ]; then
	sockdir=/tmp/mandant-run-$(id -u)-$port
fi

# stop_gateway stops the gateway `make run` started, if it runs.
stop_gateway() {
	if [ -f "$gateway_pid" ] && kill -0 "$(cat "$gateway_pid")" 2>/dev/null; then
		kill -TERM "$(cat "$gateway_pid")"
		i=0
		while kill -0 "$(cat "$gateway_pid")" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		echo "mandant: gateway stopped"
	fi
	rm -f "$gateway_pid"
}

stop() {
	stop_gateway
	if [ -f "$datadir/PG_VERSION" ]; then
		. scripts/cluster.sh
		cluster_stop "$datadir"
		echo "mandant: cluster in $datadir stopped"
	fi
}

if [ "$action" = stop ]; then
	stop
	exit 0
fi

started=$(date +%s)

# phase WHAT announces the next step of `make run` with the seconds elapsed
# since it began (ensure stays quiet: make bench prints its own lines).
phase() {
	[ "$action" = ensure ] || printf 'mandant [%3d s] %s\n' $(($(date +%s) - started)) "$1"
}

su_psql() {
	psql -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U "$superuser" "$@"
}

password_of() {
	grep ":$1:" "$pgpass" | cut -d: -f5
}

# load_demo creates database "mandant" with the extension and the demo
# (scripts/demo.sql), with passwords generated into $rundir.
load_demo() {
	# Passwords for the demo roles: generated once, kept in $rundir/pgpass.
	if [ ! -f "$pgpass" ]; then
		umask 077
		for role in mandant_demo_app mandant_demo_admin mandant_demo_owner; do
			pw=$(od -An -tx1 -N18 /dev/urandom | tr -d ' \n')
			echo "127.0.0.1:$port:*:$role:$pw" >>"$pgpass"
		done
		umask 022
	fi
	# The demo's end user logs in with a password generated the same way.
	if [ ! -f "$demo_login" ]; then
		umask 077
		echo "ada@acme.example $(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')" >"$demo_login"
		umask 022
	fi
	# The same, as the JSON body of the HTTP login.
	if [ ! -f "$demo_login.json" ]; then
		umask 077
		awk '{ printf "{\"email\": \"%s\", \"password\": \"%s\"}\n", $1, $2 }' "$demo_login" >"$demo_login.json"
		umask 022
	fi

	# The demo database is rebuilt when the extension's install script or
	# the demo changed (during development the version number stays).
	script_sum=$(cat "sql/mandant--$(sed -n "s/^default_version = '\(.*\)'/\1/p" mandant.control).sql" \
		scripts/demo.sql "$demo_login" | cksum)
	if [ "$(cat "$rundir/script.sum" 2>/dev/null)" != "$script_sum" ]; then
		su_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db"
	fi
	phase "install: database \"$db\", CREATE EXTENSION mandant"
	if [ "$(su_psql -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
		su_psql -d postgres -c "CREATE DATABASE $db"
	fi
	su_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS mandant CASCADE"
	phase "demo: roles, tenants acme and globex, Ada, demo.note (scripts/demo.sql)"
	su_psql -d "$db" \
		-v app_password="$(password_of mandant_demo_app)" \
		-v admin_password="$(password_of mandant_demo_admin)" \
		-v owner_password="$(password_of mandant_demo_owner)" \
		-v ada_password="$(cut -d' ' -f2 "$demo_login")" \
		-f scripts/demo.sql
	echo "$script_sum" >"$rundir/script.sum"
}

# print_tour prints what to try.  test/shell/readme.sh runs its SQL: an
# indented "psql ... -U ROLE" line opens a session as ROLE, the indented
# paragraphs after it are typed there, and "-- refused: CODE" marks a
# statement that fails with that SQLSTATE.
print_tour() {
	cat <<EOF
Connect as the demo's trusted backend (a member of mandant_service):

  export PGPASSFILE=$pgpass
  psql -h 127.0.0.1 -p $port -U mandant_demo_app $db

and try:

  SELECT count(*) FROM demo.note;                -- 0: no tenant, no rows
  BEGIN;
  SELECT mandant.set_tenant(id) FROM mandant.tenant WHERE slug = 'acme';
  SELECT title, status FROM demo.note;           -- acme's notes only
  INSERT INTO demo.note (title) VALUES ('Check fire exits');  -- tenant_id and status filled in
  UPDATE demo.note SET title = 'Check fire exits, building B' WHERE title = 'Check fire exits';
  UPDATE demo.note SET status = 'done' WHERE title LIKE 'Check%';  -- a declared transition
  SELECT action, entity_id, changes FROM mandant.audit_event;    -- acme's audit trail
  SELECT * FROM mandant.usage();                 -- notes counted against the pro plan
  UPDATE demo.note SET status = 'open' WHERE status = 'done';    -- refused: MD010
  ROLLBACK;
  BEGIN;
  SELECT mandant.set_tenant(id) FROM mandant.tenant WHERE slug = 'acme';
  SELECT mandant.config_get('mailer', 'smtp.host');  -- the platform default
  SELECT mandant.config_set('mailer', 'smtp.host', '"mx.acme.example"', 'own relay');
  SELECT * FROM mandant.config_get_all('mailer');     -- acme's value over the global one
  SELECT mandant.config_set('mailer', 'smtp.host', '"late"', 'stale writer', 0);  -- refused: MD020
  ROLLBACK;
  BEGIN;
  SELECT mandant.set_tenant(id) FROM mandant.tenant WHERE slug = 'acme';
  INSERT INTO demo.note (tenant_id, title)
    SELECT id, 'planted' FROM mandant.tenant WHERE slug = 'globex';  -- refused: 42501
  ROLLBACK;
  SET app.current_tenant = 'a0000000-0000-4000-8000-00000000000a';  -- refused: 42501
  SELECT * FROM mandant.tenancy_lint();          -- no rows: the schema is clean

An end user: Ada, owner of acme, logs in, and her token is all a session
needs. Her password ($demo_login) goes in as COPY data, never as part
of a statement: psql 15 cannot send parameters, and the server would log
the text of a failed statement (README, "Identity").

  CREATE TEMP TABLE credentials (email text, password text);
  \\copy credentials FROM '$demo_login' (DELIMITER ' ')
  SELECT mandant.login(email, password) ->> 'accessToken' AS token FROM credentials \\gset
  BEGIN;
  SELECT mandant.authenticate(:'token');         -- tenant, user and scopes from the token
  SELECT email, role FROM mandant.list_members();
  COMMIT;
  SELECT mandant.login(email, password || '!') FROM credentials;  -- refused: MD050, and recorded
  SELECT mandant.jwks();                         -- the public keys (.run/keys)

Over HTTP, through the gateway on 127.0.0.1:$http_port (log: $gateway_log): Ada
signs in (her password comes from a file), and her token is all a request
needs. Each answer is the JSON envelope; the lines marked "refused"
answer an error on purpose. The refresh token comes only as a cookie
(HttpOnly, Secure: a browser sends it back over HTTPS only), so here it is
taken from the login's headers and sent by hand.

  curl -s http://127.0.0.1:$http_port/health
  curl -s -X POST http://127.0.0.1:$http_port/api/v1/auth/login -H 'X-Tenant: acme' -H 'Content-Type: application/json' -d @$demo_login.json -D $rundir/login.headers -o $rundir/login.json
  TOKEN=\$(sed 's/.*"accessToken": *"\([^"]*\)".*/\1/' $rundir/login.json)
  curl -s http://127.0.0.1:$http_port/api/v1/auth/me -H "Authorization: Bearer \$TOKEN"
  curl -s 'http://127.0.0.1:$http_port/api/v1/notes?pageSize=2' -H "Authorization: Bearer \$TOKEN"
  NOTE=\$(curl -s -X POST http://127.0.0.1:$http_port/api/v1/notes -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"title": "Check fire exits"}' | sed 's/.*"id": *\([0-9]*\).*/\1/')
  curl -s -X PUT http://127.0.0.1:$http_port/api/v1/notes/\$NOTE/status -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"status": "done"}'
  curl -s -X PUT http://127.0.0.1:$http_port/api/v1/notes/\$NOTE/status -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"status": "open"}'   # refused: INVALID_TRANSITION
  curl -s http://acme.localhost:$http_port/api/v1/notes -H "Authorization: Bearer \$TOKEN"     # the tenant by subdomain
  curl -s http://globex.localhost:$http_port/api/v1/notes -H "Authorization: Bearer \$TOKEN"   # refused: FORBIDDEN
  curl -s http://127.0.0.1:$http_port/api/v1/notes   # refused: TOKEN_INVALID
  REFRESH=\$(sed -n 's/^set-cookie: mandant_refresh=\([^;]*\);.*/\1/p' $rundir/login.headers)
  curl -s -X POST http://127.0.0.1:$http_port/api/v1/auth/refresh -H "Cookie: mandant_refresh=\$REFRESH" -H 'Content-Type: application/json' -d '{}'
  curl -s http://127.0.0.1:$http_port/api/v1/openapi.json -o $rundir/openapi.json   # the OpenAPI 3.1 document

Platform administration: create a tenant (the operation id makes a retry
return the same tenant), seal the audit trail, verify a tenant's chain:

  psql -h 127.0.0.1 -p $port -U mandant_demo_admin $db

  SELECT mandant.create_tenant('initech', 'Initech', 'owner@initech.example',
                               operation_id => '5f0c6a52-3f8e-4b7e-9a51-0d6c1a7e2b03');
  SELECT mandant.audit_seal();
  SELECT * FROM mandant.audit_verify((SELECT id FROM mandant.tenant WHERE slug = 'acme'));

Superuser (over the private socket): psql -h $sockdir -p $port -U postgres $db
Server log: $logfile
Stop it with: make stop
EOF
}

superuser=postgres
pgpass=$rundir/pgpass
demo_login=$rundir/demo-login

case $action in
tour)
	print_tour
	exit 0
	;;
demo)
	sockdir=${PGHOST:?run.sh demo: set PGHOST and PGPORT to the server to load}
	superuser=${PGUSER:-postgres}
	. scripts/cluster.sh
	mkdir -p "$rundir"
	load_demo
	exit 0
	;;
start | ensure) ;;
*)
	echo "run.sh: unknown action \"$action\" (start, ensure, stop, demo, tour)" >&2
	exit 2
	;;
esac

phase "dependencies: Debian packages (scripts/install-deps.sh)"
scripts/install-deps.sh
. scripts/cluster.sh
phase "build: make, make install"
make -s >/dev/null
if [ "$(id -u)" = 0 ]; then
	make -s install >/dev/null
else
	sudo -n make -s install >/dev/null
fi

mkdir -p "$rundir"
if ! as_server_user test -x "$rundir"; then
	give_to_server_user "$rundir"
	if ! as_server_user test -x "$rundir"; then
		echo "run: the server user $MANDANT_OS_USER cannot reach $rundir" >&2
		echo "run: clone the repository under a world-readable path, or set MANDANT_RUN_DIR" >&2
		exit 1
	fi
fi

if [ ! -f "$datadir/PG_VERSION" ]; then
	phase "cluster: initdb in $datadir"
	cluster_init "$datadir" "$sockdir" "$port" 127.0.0.1
	as_server_user touch "$logfile"
fi
# Development keys for access tokens and TOTP secrets, under .run/keys.
if [ ! -f "$rundir/keys/jwt.key" ]; then
	cluster_keys "$datadir" "$rundir/keys"
	as_server_user pg_ctl -D "$datadir" status >/dev/null 2>&1 &&
		as_server_user pg_ctl -D "$datadir" reload >/dev/null
fi
# The server preloads mandant.so once: when the installed library is not
# the one it started with (make install rewrites the file every time, so
# its content is compared, not its time), restart it.
library=$("$PG_CONFIG" --pkglibdir)/mandant.so
library_sum=$(cksum <"$library")
if as_server_user pg_ctl -D "$datadir" status >/dev/null 2>&1; then
	if [ "$(cat "$rundir/library.sum" 2>/dev/null)" != "$library_sum" ]; then
		server_started=$(su_psql -d postgres -Atc "SELECT to_char(pg_postmaster_start_time(), 'HH24:MI:SS')")
		phase "cluster: restarting the server (up since $server_started): $library changed at $(date -r "$library" +%T)"
		as_server_user pg_ctl -D "$datadir" -l "$logfile" -w -m fast restart >/dev/null
	else
		phase "cluster: running on port $port"
	fi
else
	phase "cluster: starting PostgreSQL on port $port ($datadir)"
	cluster_start "$datadir" "$logfile"
fi
echo "$library_sum" >"$rundir/library.sum"

load_demo

# The gateway: restarted on every make run, so it serves the shim just built.
stop_gateway >/dev/null
phase "gateway: shim/run on 127.0.0.1:$http_port (log $gateway_log)"
MANDANT_DATABASE_URL="host=$sockdir port=$port dbname=$db user=mandant_demo_gateway" \
	MANDANT_HTTP_PORT=$http_port MANDANT_BASE_DOMAIN=localhost MANDANT_GATEWAY_DIR=$rundir/gateway \
	nohup shim/run >"$gateway_log" 2>&1 &
echo $! >"$gateway_pid"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$http_port/health"; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$(cat "$gateway_pid")" 2>/dev/null; then
		echo "run: the gateway did not start; its log:" >&2
		tail -20 "$gateway_log" >&2
		exit 1
	fi
	sleep 0.1
done
phase "ready"

[ "$action" = ensure ] && exit 0

echo
echo "mandant is running: PostgreSQL $(su_psql -d "$db" -Atc 'SHOW server_version' | cut -d' ' -f1) on 127.0.0.1:$port, database \"$db\";"
echo "the HTTP gateway on http://127.0.0.1:$http_port."
echo
print_tour
