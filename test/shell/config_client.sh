#!/bin/sh
# config_client.sh: bench/config_client.c, the example service client,
# builds without warnings, warm-loads, follows changes of its tenant and
# the global ones (not other tenants', not other services'), and after
# losing its connection reconnects and catches up.  Runs against the
# cluster of scripts/test.sh (PGHOST, PGPORT, PGUSER set).
set -eu
db=mandant_config_client
acme=c1000000-0000-4000-8000-00000000000a
globex=c2000000-0000-4000-8000-00000000000b
work=$(mktemp -d /tmp/mandant-config-client.XXXXXX)

q() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"
}

psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
client=
trap '[ -z "$client" ] || kill $client 2>/dev/null || true; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
q -c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant CASCADE" >/dev/null
q -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_config_service')
	  THEN CREATE ROLE regress_config_service LOGIN IN ROLE mandant_service; END IF; END \$\$"
q -c "INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	  ('$acme', 'cc-acme', 'Acme', 'o@acme.test'), ('$globex', 'cc-globex', 'Globex', 'o@globex.test')"

cc -Wall -Wextra -Werror -I"$(pg_config --includedir)" bench/config_client.c -lpq -o "$work/config_client"
conninfo="host=$PGHOST port=$PGPORT user=regress_config_service dbname=$db"

# in_tenant TENANT SQL: run SQL as the service inside the tenant.
in_tenant() {
	q -U regress_config_service -c "BEGIN" -c "SELECT mandant.set_tenant('$1')" -c "$2" -c "COMMIT" >/dev/null
}

# wait_for FILE TEXT: until FILE contains TEXT (at most 20 s).
wait_for() {
	n=0
	until grep -qF "$2" "$1"; do
		n=$((n + 1))
		if [ $n -gt 200 ]; then
			echo "waited in vain for \"$2\" in $1:"
			cat "$1" "$work/stderr"
			exit 1
		fi
		sleep 0.1
	done
}

q -c "SELECT mandant.config_set('mailer', 'smtp.host', '\"smtp.platform.example\"', 'initial')" >/dev/null
in_tenant $acme "SELECT mandant.config_set('mailer', 'batch.size', '10', 'acme batches')"

# 1. Warm load, then five changes of which three concern acme's mailer.
"$work/config_client" -t "$acme" -s mailer -n 3 "$conninfo" >"$work/out" 2>"$work/stderr" &
client=$!
wait_for "$work/out" "warm load"
in_tenant $globex "SELECT mandant.config_set('mailer', 'smtp.host', '\"smtp.globex.example\"', 'not for acme')"
in_tenant $acme "SELECT mandant.config_set('billing', 'currency', '\"EUR\"', 'another service')"
in_tenant $acme "SELECT mandant.config_set('mailer', 'smtp.host', '\"smtp.acme.example\"', 'own relay')"
q -c "SELECT mandant.config_set('mailer', 'smtp.port', '587', 'submission port')" >/dev/null
in_tenant $acme "SELECT mandant.config_delete('mailer', 'smtp.host', 'back to the platform relay')"
wait $client
cat >"$work/expected" <<'EOF'
warm load: 2 entries up to revision 2
revision 5: tenant mailer/smtp.host set (version 1); in effect: "smtp.acme.example"
revision 6: global mailer/smtp.port set (version 1); in effect: 587
revision 7: tenant mailer/smtp.host deleted (version 2); in effect: "smtp.platform.example"
EOF
sed 's/ in [0-9.]* ms$//' "$work/out" >"$work/actual"
echo "followed acme's mailer changes:"
cat "$work/actual"
diff "$work/expected" "$work/actual"

# 2. The connection is lost: the client reconnects and reads what it missed.
"$work/config_client" -t "$acme" -s mailer -n 1 "$conninfo" >"$work/out" 2>"$work/stderr" &
client=$!
wait_for "$work/out" "warm load"
q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'regress_config_service'" >/dev/null
in_tenant $acme "SELECT mandant.config_set('mailer', 'batch.size', '20', 'bigger batches')"
wait $client
grep -q "connection lost" "$work/stderr"
echo "after a lost connection:"
sed 's/ in [0-9.]* ms$//' "$work/out"
grep -qF 'revision 8: tenant mailer/batch.size set (version 2); in effect: 20' "$work/out"

# 3. A role that may not enter tenants is told so (and retries, as for any
# failure to load): its error reaches stderr.
q -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_config_nobody')
	  THEN CREATE ROLE regress_config_nobody LOGIN; END IF; END \$\$"
"$work/config_client" -t "$acme" "host=$PGHOST port=$PGPORT user=regress_config_nobody dbname=$db" \
	>"$work/out" 2>"$work/stderr" &
client=$!
wait_for "$work/stderr" "retrying"
kill $client
echo "a role that may not enter tenants:"
head -1 "$work/stderr"
grep -q "permission denied" "$work/stderr"
