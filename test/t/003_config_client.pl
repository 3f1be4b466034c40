# test/t/003_config_client.pl: bench/config_client.c, the example service
# client, builds without warnings, warm-loads, follows changes of its
# tenant and the global ones (not other tenants', not other services'),
# and after losing its connection reconnects and catches up.
#
# Copyright (c) 2026, the mandant developers
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $db = 'postgres';
my $acme = 'c1000000-0000-4000-8000-00000000000a';
my $globex = 'c2000000-0000-4000-8000-00000000000b';
my $dir = PostgreSQL::Test::Utils::tempdir;

my $node = PostgreSQL::Test::Cluster->new('config');
$node->init;
$node->start;

$node->safe_psql($db,
	"SET client_min_messages = warning; CREATE EXTENSION mandant CASCADE");
$node->safe_psql($db,
	"CREATE ROLE regress_config_service LOGIN IN ROLE mandant_service");
$node->safe_psql($db,
	"INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	 ('$acme', 'cc-acme', 'Acme', 'o\@acme.test'), ('$globex', 'cc-globex', 'Globex', 'o\@globex.test')"
);

ok( run_log(
		[
			'cc', '-Wall', '-Wextra', '-Werror',
			'-I' . $node->config_data('--includedir'),
			'bench/config_client.c', '-lpq', '-o', "$dir/config_client"
		]),
	'bench/config_client.c builds without warnings');

my $service = $node->connstr($db) . ' user=regress_config_service';

# in_tenant TENANT SQL: run SQL as the service inside the tenant.
sub in_tenant
{
	my ($tenant, $sql) = @_;
	$node->safe_psql($db,
		"BEGIN; SELECT mandant.set_tenant('$tenant'); $sql; COMMIT;",
		connstr => $service);
}

# start_client CONNINFO OPTION...: config_client in the background, its
# output in $dir/out and $dir/stderr.
sub start_client
{
	my ($conninfo, @options) = @_;
	return IPC::Run::start(
		[ "$dir/config_client", @options, $conninfo ],
		'>', "$dir/out", '2>', "$dir/stderr",
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}

# read_output NAME: what the client wrote to $dir/NAME so far, without
# the timings.
sub read_output
{
	my ($name) = @_;
	return '' unless -e "$dir/$name";
	my $text = slurp_file("$dir/$name");
	$text =~ s/ in [0-9.]* ms$//mg;
	return $text;
}

# wait_for NAME TEXT: until $dir/NAME contains TEXT (at most 20 s).
sub wait_for
{
	my ($name, $text) = @_;
	for (1 .. 200)
	{
		return if index(read_output($name), $text) >= 0;
		usleep(100_000);
	}
	die "waited in vain for \"$text\" in $name:\n"
	  . read_output('out')
	  . read_output('stderr');
}

$node->safe_psql($db,
	"SELECT mandant.config_set('mailer', 'smtp.host', '\"smtp.platform.example\"', 'initial')"
);
in_tenant($acme,
	"SELECT mandant.config_set('mailer', 'batch.size', '10', 'acme batches')");

# 1. Warm load, then five changes of which three concern acme's mailer.
my $client = start_client($service, '-t', $acme, '-s', 'mailer', '-n', '3');
wait_for('out', 'warm load');
in_tenant($globex,
	"SELECT mandant.config_set('mailer', 'smtp.host', '\"smtp.globex.example\"', 'not for acme')"
);
in_tenant($acme,
	"SELECT mandant.config_set('billing', 'currency', '\"EUR\"', 'another service')"
);
in_tenant($acme,
	"SELECT mandant.config_set('mailer', 'smtp.host', '\"smtp.acme.example\"', 'own relay')"
);
$node->safe_psql($db,
	"SELECT mandant.config_set('mailer', 'smtp.port', '587', 'submission port')"
);
in_tenant($acme,
	"SELECT mandant.config_delete('mailer', 'smtp.host', 'back to the platform relay')"
);
ok($client->finish, 'the client ends after three changes');
is(read_output('out'), <<'EOF_OUT', "it followed acme's mailer changes");
warm load: 2 entries up to revision 2
revision 5: tenant mailer/smtp.host set (version 1); in effect: "smtp.acme.example"
revision 6: global mailer/smtp.port set (version 1); in effect: 587
revision 7: tenant mailer/smtp.host deleted (version 2); in effect: "smtp.platform.example"
EOF_OUT

# 2. The connection is lost: the client reconnects and reads what it missed.
$client = start_client($service, '-t', $acme, '-s', 'mailer', '-n', '1');
wait_for('out', 'warm load');
$node->safe_psql($db,
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'regress_config_service'"
);
in_tenant($acme,
	"SELECT mandant.config_set('mailer', 'batch.size', '20', 'bigger batches')");
ok($client->finish, 'the client ends after one change');
like(read_output('stderr'), qr/connection lost/, 'it lost its connection');
note("after a lost connection:\n" . read_output('out'));
like(
	read_output('out'),
	qr{\Qrevision 8: tenant mailer/batch.size set (version 2); in effect: 20\E},
	'it reconnected and read the change it missed');

# 3. A role that may not enter tenants is told so (and retries, as for any
# failure to load): its error reaches stderr.
$node->safe_psql($db, "CREATE ROLE regress_config_nobody LOGIN");
$client = start_client($node->connstr($db) . ' user=regress_config_nobody',
	'-t', $acme);
wait_for('stderr', 'retrying');
$client->kill_kill;
note("a role that may not enter tenants:\n" . read_output('stderr'));
like(read_output('stderr'), qr/permission denied/,
	'a role that may not enter tenants is told so');

$node->stop;
done_testing();
