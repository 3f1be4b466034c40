#!/bin/sh
# upgrade.sh: a database created with the oldest release and updated step by
# step equals a fresh installation of the current version, keeps its data
# (audit chains still verify), and the current library serves the old
# schema until the update runs.  Runs against the cluster of
# scripts/test.sh (PGHOST, PGPORT, PGUSER set).
set -eu
cd "$(dirname "$0")/../.."

fresh=mandant_upgrade_fresh
old=mandant_upgrade_old
work=$(mktemp -d /tmp/mandant-upgrade.XXXXXX)
oldest=0.1.0
current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" mandant.control)

cleanup() {
	for db in $fresh $old; do
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

q() {
	db=$1
	shift
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"
}

for db in $fresh $old; do
	psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
q $fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant CASCADE"
q $old -c "SET client_min_messages = warning" -c "CREATE EXTENSION mandant VERSION '$oldest' CASCADE"

q postgres -c "SET client_min_messages = warning" -c "DO \$\$
	BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_upgrade_owner') THEN
			CREATE ROLE regress_upgrade_owner LOGIN;
		END IF;
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_upgrade_service') THEN
			CREATE ROLE regress_upgrade_service LOGIN IN ROLE mandant_service;
		END IF;
	END \$\$"

# Data written under the oldest release's schema, by the current library.
q $old -f test/fixtures/upgrade_data.sql >"$work/before.txt"
echo "== written under $oldest"
cat "$work/before.txt"

# Update step by step along the path PostgreSQL chooses, to the current version.
path=$(q $old -c "SELECT replace(path, '--', ' ') FROM pg_extension_update_paths('mandant')
				  WHERE source = '$oldest' AND target = '$current'")
if [ -z "$path" ]; then
	echo "no update path from $oldest to $current"
	exit 1
fi
echo "== update path: $path"
for version in $path; do
	[ "$version" = "$oldest" ] && continue
	q $old -c "SET client_min_messages = warning" -c "ALTER EXTENSION mandant UPDATE TO '$version'"
done

# The catalogs must be equal.
q $fresh -f test/fixtures/catalog_snapshot.sql >"$work/fresh.txt"
q $old -f test/fixtures/catalog_snapshot.sql >"$work/updated.txt"
if ! diff -u "$work/fresh.txt" "$work/updated.txt" >"$work/catalog.diff"; then
	echo "== an updated database differs from a fresh installation of $current"
	echo "   (- fresh, + updated; each line names the object)"
	cat "$work/catalog.diff"
	exit 1
fi
echo "== catalogs equal ($(wc -l <"$work/fresh.txt") facts)"

# The data survived and still works.
q $old -f test/fixtures/upgrade_check.sql >"$work/after.txt"
echo "== after the update"
cat "$work/after.txt"
if grep -q '^FAIL' "$work/after.txt"; then
	exit 1
fi
