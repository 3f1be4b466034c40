# test/t/002_outbox_crash.pl: a consumer that claims events and dies (its
# connection killed) loses nothing.  After a committed claim the events
# come back when the lease expires; after a claim whose transaction never
# committed they are claimable at once.
#
# Copyright (c) 2026, the mandant developers
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $db = 'postgres';
my $node = PostgreSQL::Test::Cluster->new('outbox');
$node->init;
$node->start;

$node->safe_psql($db,
	"SET client_min_messages = warning; CREATE EXTENSION mandant CASCADE");
$node->safe_psql($db,
	"CREATE ROLE regress_consumer LOGIN IN ROLE mandant_service");
$node->safe_psql($db,
	"SELECT mandant.emit('crash.test.event', 'a' || i, jsonb_build_object('i', i)) FROM generate_series(1, 3) i"
);

my $consumer = $node->connstr($db) . ' user=regress_consumer';

# consume SQL: what the surviving consumer sees when it runs SQL.
sub consume
{
	my ($sql) = @_;
	return $node->safe_psql($db, $sql, connstr => $consumer);
}

# start_doomed NAME COMMAND...: a consumer's psql, with application_name
# NAME, that runs each COMMAND (one -c each, so each commits unless it is
# inside BEGIN) and then sleeps.
sub start_doomed
{
	my ($name, @commands) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ('psql', '-X', '-q', '-At', '-d',
		"$consumer application_name=$name",
		map { ('-c', $_) } (@commands, 'SELECT pg_sleep(60)'));
	return IPC::Run::start(\@cmd, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}

# kill_doomed NAME HANDLE: terminate the backend of the consumer NAME once
# it sleeps after its claim, and wait for its psql to end.
sub kill_doomed
{
	my ($name, $handle) = @_;
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$name' AND query LIKE '%pg_sleep%'"
	) or die "consumer $name never started";
	$node->safe_psql($db,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$name'"
	);
	$handle->finish;
}

# 1. Claim committed, then the consumer dies: the lease holds, then expires.
my $doomed = start_doomed('doomed',
	"SELECT count(*) FROM mandant.outbox_claim('doomed', 10, '2 seconds')");
kill_doomed('doomed', $doomed);
is(consume("SELECT count(*) FROM mandant.outbox_claim('survivor', 10)"),
	'0', "nothing is claimable while the dead consumer's lease holds");
usleep(2_500_000);
is( consume(
		"WITH c AS (SELECT * FROM mandant.outbox_claim('survivor', 10))
		 SELECT string_agg(aggregate_id || ':' || attempts, ',' ORDER BY aggregate_id) || ' acked ' || mandant.outbox_ack(array_agg(id)) FROM c"
	),
	'a1:2,a2:2,a3:2 acked 3',
	'after the lease expired every event is claimable (aggregate:attempts)');

# 2. Claim not committed when the consumer dies: nothing was leased.
$node->safe_psql($db, "SELECT mandant.emit('crash.test.event', 'b1', '{}')");
$doomed = start_doomed('doomed2', 'BEGIN',
	"SELECT count(*) FROM mandant.outbox_claim('doomed2', 10, '1 hour')");
kill_doomed('doomed2', $doomed);
is( consume(
		"SELECT string_agg(aggregate_id, ',') FROM mandant.outbox_claim('survivor', 10)"
	),
	'b1',
	'claimable at once after an uncommitted claim died');
is(consume("SELECT pending, leased, dead FROM mandant.outbox_stats()"),
	'0|1|0', 'pending|leased|dead');

$node->stop;
done_testing();
