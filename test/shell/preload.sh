#!/bin/sh
# preload.sh: without shared_preload_libraries = 'mandant', CREATE EXTENSION
# fails with a hint that says exactly what to add, and leaves nothing behind.
set -eu
cd "$(dirname "$0")/../.."
. scripts/cluster.sh

work=$(mktemp -d /tmp/mandant-preload.XXXXXX)
chmod 755 "$work"
give_to_server_user "$work"
trap 'cluster_stop "$work/data"; rm -rf "$work"' EXIT

cluster_init "$work/data" "$work/sock" 54330
as_server_user sh -c "echo \"shared_preload_libraries = ''\" >> '$work/data/postgresql.conf'"
as_server_user touch "$work/server.log"
cluster_start "$work/data" "$work/server.log"

psql_here() {
	psql -X -q -v ON_ERROR_STOP=1 -h "$work/sock" -p 54330 -U postgres -d postgres "$@"
}

if out=$(psql_here -c 'CREATE EXTENSION mandant CASCADE' 2>&1); then
	echo "CREATE EXTENSION succeeded without the preload"
	exit 1
fi
echo "$out"
echo "$out" | grep -q 'ERROR:  mandant must be loaded via "shared_preload_libraries"'
echo "$out" | grep -q "HINT:  Add shared_preload_libraries = 'mandant' to postgresql.conf"

left=$(psql_here -At -c "SELECT count(*) FROM pg_extension WHERE extname IN ('mandant', 'pgcrypto')")
[ "$left" = 0 ] || { echo "extensions left behind: $left"; exit 1; }

# Loading the library into a session is refused the same way.
if out=$(psql_here -c "LOAD 'mandant'" 2>&1); then
	echo "LOAD succeeded without the preload"
	exit 1
fi
echo "$out" | grep -q "HINT:  Add shared_preload_libraries = 'mandant'"
echo "refused as expected"
