# test/t/001_preload.pl: without shared_preload_libraries = 'mandant',
# CREATE EXTENSION fails with a hint that says exactly what to add, and
# leaves nothing behind; loading the library into a session is refused the
# same way.
#
# Copyright (c) 2026, the mandant developers
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A cluster with the settings of every test cluster (TEMP_CONFIG, set by
# scripts/test.sh), but without the preload.
my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->start;

my ($ret, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE EXTENSION mandant CASCADE');
isnt($ret, 0, 'CREATE EXTENSION fails without the preload');
like(
	$stderr,
	qr/ERROR:  mandant must be loaded via "shared_preload_libraries"/,
	'the error names shared_preload_libraries');
like(
	$stderr,
	qr/HINT:  Add shared_preload_libraries = 'mandant' to postgresql\.conf/,
	'the hint says what to add');

is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_extension WHERE extname IN ('mandant', 'pgcrypto')"
	),
	'0',
	'no extension is left behind');

($ret, $stdout, $stderr) = $node->psql('postgres', "LOAD 'mandant'");
isnt($ret, 0, 'LOAD fails without the preload');
like(
	$stderr,
	qr/HINT:  Add shared_preload_libraries = 'mandant'/,
	'LOAD is refused with the same hint');

$node->stop;
done_testing();
