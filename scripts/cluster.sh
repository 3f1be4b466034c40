# cluster.sh: helpers to run a private PostgreSQL cluster; sourced by
# scripts/test.sh, scripts/run.sh and the shell tests.
#
# PostgreSQL refuses to run as root.  When these scripts run as root, the
# server runs as an unprivileged OS user (MANDANT_OS_USER, default postgres,
# created if missing) and its directories are handed to that user.

PG_CONFIG=${PG_CONFIG:-pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
export PATH="$PGBIN:$PATH"

if [ "$(id -u)" = 0 ]; then
	MANDANT_OS_USER=${MANDANT_OS_USER:-postgres}
	if ! id "$MANDANT_OS_USER" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin "$MANDANT_OS_USER"
	fi
else
	MANDANT_OS_USER=$(id -un)
fi

# as_server_user runs a command as the OS user that owns the cluster.
as_server_user() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$MANDANT_OS_USER" -- "$@"
	else
		"$@"
	fi
}

# give_to_server_user makes directories belong to the server's OS user.
give_to_server_user() {
	if [ "$(id -u)" = 0 ]; then
		chown -R "$MANDANT_OS_USER" "$@"
	fi
}

# cluster_init DATADIR SOCKDIR PORT [LISTEN]: a new cluster with mandant
# preloaded; local connections for the superuser "postgres" use peer/trust
# on the private socket only, TCP (if LISTEN is given) requires a password.
cluster_init() {
	datadir=$1 sockdir=$2 port=$3 listen=${4:-}
	mkdir -p "$datadir" "$sockdir"
	chmod 700 "$datadir"
	give_to_server_user "$datadir" "$sockdir"
	as_server_user initdb --no-sync -D "$datadir" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	as_server_user sh -c "cat >> '$datadir/postgresql.conf'" <<-EOF
		# mandant: private cluster
		shared_preload_libraries = 'mandant'
		listen_addresses = '$listen'
		port = $port
		unix_socket_directories = '$sockdir'
		unix_socket_permissions = 0700
		max_connections = 60
		log_line_prefix = '%m [%p] %q%u@%d '
		password_encryption = 'scram-sha-256'
	EOF
}

# cluster_start DATADIR LOGFILE
cluster_start() {
	as_server_user pg_ctl -D "$1" -l "$2" -w -t 60 start >/dev/null
}

# cluster_stop DATADIR
cluster_stop() {
	as_server_user pg_ctl -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}
