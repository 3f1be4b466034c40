# test/t/004_move_tenant.pl: a tenant moves between two clusters with the
# one command line of README.md ("Moving a tenant"), run as a platform
# administrator (not a superuser) on both sides: export piped into import,
# then the deletion on the source.  Afterwards the target has the same
# rows, members, configuration and a verified audit trail, and records the
# import; the source keeps a tombstone, quarantines the slug and records
# the deletion.  A move cut short or refused changes neither side, the
# tenant can move back, and the stream can go through a file of plain JSON
# lines, or come from a streaming replica of the source.
#
# Copyright (c) 2026, the mandant developers
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'postgres';
my $dir = PostgreSQL::Test::Utils::tempdir;

my %node;
for my $name ('source', 'target')
{
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $name eq 'source');
	$node->start;
	$node->safe_psql(
		$db, q{
		SET client_min_messages = warning;
		CREATE EXTENSION mandant CASCADE;
		CREATE ROLE regress_move_admin LOGIN IN ROLE mandant_admin;
		CREATE ROLE regress_move_service LOGIN IN ROLE mandant_service;
		CREATE ROLE regress_move_owner;
		CREATE SCHEMA app AUTHORIZATION regress_move_owner;
		GRANT USAGE ON SCHEMA app TO regress_move_service;
		SET ROLE regress_move_owner;
		CREATE TABLE app.project (tenant_id uuid, id bigint GENERATED ALWAYS AS IDENTITY, name text NOT NULL,
								  PRIMARY KEY (tenant_id, id));
		CREATE TABLE app.task (tenant_id uuid, id bigserial, project_id bigint NOT NULL, title text NOT NULL,
							   done boolean NOT NULL DEFAULT false, due date,
							   PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, project_id) REFERENCES app.project);
		SELECT mandant.enable_tenancy(t) FROM unnest(ARRAY['app.project', 'app.task']::regclass[]) t;
		SELECT mandant.enable_audit('app.task', 'work');
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA app TO regress_move_service;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO regress_move_service;
		RESET ROLE;
		SET ROLE regress_move_service;
		SELECT mandant.create_user('ada@acme.test', 'adas long password', 'Ada');
	});
	$node{$name} = $node;
}
my ($source, $target) = @node{ 'source', 'target' };

# admin NODE SQL: run SQL as the platform administrator.
sub admin
{
	my ($node, $sql, %opts) = @_;
	return $node->safe_psql($db, $sql,
		connstr => $node->connstr($db) . ' user=regress_move_admin', %opts);
}

# The source: acme with projects, tasks, two members (one has no account
# on the target), configuration and a sealed audit trail; another tenant
# that stays.  The target has a tenant of its own.
my $acme = admin($source, "SELECT mandant.create_tenant('acme', 'Acme', 'ada\@acme.test', 'pro')");
my $stay = admin($source, "SELECT mandant.create_tenant('stay', 'Stay', 's\@stay.test', 'pro')");
admin($target, "SELECT mandant.create_tenant('local', 'Local', 'l\@local.test', 'pro')");
$source->safe_psql(
	$db, qq{
	SET ROLE regress_move_service;
	SELECT mandant.create_user('bob\@acme.test', 'bobs long password', 'Bob') AS bob \\gset
	BEGIN;
	SELECT mandant.set_tenant('$acme');
	SELECT mandant.add_member('$acme', :'bob', 'viewer');
	INSERT INTO app.project (name) VALUES ('Rocket'), ('Anvil');
	INSERT INTO app.task (project_id, title, due)
	SELECT 1 + i % 2, 'task ' || i || E' \\\\ "quoted" \\t', DATE '2026-12-01' + i FROM generate_series(1, 3000) i;
	UPDATE app.task SET done = true WHERE id % 3 = 0;
	SELECT mandant.config_set('mailer', 'from', '"ops\@acme.test"', 'sender');
	COMMIT;
	BEGIN;
	SELECT mandant.set_tenant('$stay');
	INSERT INTO app.project (name) VALUES ('Staying');
	COMMIT;
});
admin($source, 'SELECT mandant.audit_seal()');

# digest NODE TENANT [NO_MEMBERS]: the tenant's rows, members (unless
# NO_MEMBERS), configuration and audit events as one hash.
sub digest
{
	my ($node, $tenant, $no_members) = @_;
	my $members = $no_members ? 'false' : 'true';
	return $node->safe_psql(
		$db, qq{
		SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM (
			SELECT format('project %s %s', id, name) FROM app.project WHERE tenant_id = '$tenant'
			UNION ALL SELECT format('task %s %s %s %s %s', id, project_id, title, done, due) FROM app.task WHERE tenant_id = '$tenant'
			UNION ALL SELECT format('member %s %s', u.email, m.role) FROM mandant.membership m
					  JOIN mandant.users u ON u.id = m.user_id WHERE m.tenant_id = '$tenant' AND $members
			UNION ALL SELECT format('config %s %s %s', service, key, value) FROM mandant.config_entry WHERE tenant_id = '$tenant'
			UNION ALL SELECT format('event %s %s', id, hash) FROM mandant.audit_event WHERE tenant_id = '$tenant') r (x)});
}

# The command lines of README.md, with the administrator's connections.
my $src = $source->connstr($db) . ' user=regress_move_admin';
my $dst = $target->connstr($db) . ' user=regress_move_admin';
my $export = qq{psql "$src" -Xq -c "COPY (SELECT mandant.export_tenant_stream('$acme')) TO STDOUT"};
my $import = qq{psql "$dst" -Xq -c "COPY mandant.tenant_import FROM STDIN"};

# move CUT: the move's command line, the stream passed through CUT; returns
# the exit status and what psql printed.
sub move
{
	my ($cut) = @_;
	my $line = "$export | $cut $import && psql \"$src\" -Xq -c \"SELECT mandant.delete_tenant('$acme', 'acme')\"";
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'sh', '-c', $line ], '>', \$stdout, '2>', \$stderr);
	return ($ok, $stderr);
}

# A streaming replica of the source exports the same stream: a large
# export can run there, away from the primary's other tenants.
$source->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($source, 'base', has_streaming => 1);
$standby->start;
$source->wait_for_catchup($standby);
my $body = "SELECT string_agg(l, E'\\n' ORDER BY n) FROM mandant.export_tenant_stream('$acme') WITH ORDINALITY c (chunk, i),
			LATERAL string_to_table(chunk, E'\\n') WITH ORDINALITY s (l, j), LATERAL (SELECT i * 100000 + j) x (n)
			WHERE l NOT LIKE '{\"format\":%' AND l NOT LIKE '{\"end\":%'";
my $from_standby = $standby->safe_psql($db, "SELECT md5(($body))",
	connstr => $standby->connstr($db) . ' user=regress_move_admin');
like($from_standby, qr/^[0-9a-f]{32}$/, 'a streaming replica exports the tenant');
is($from_standby,
	$source->safe_psql($db, "SELECT md5(($body))", connstr => $source->connstr($db) . ' user=regress_move_admin'),
	'the replica exports the same lines as the primary');
$standby->stop;

my $before = digest($source, $acme);
my $before_rows = digest($source, $acme, 'no members');
my $stay_before = digest($source, $stay);

# A move cut short changes neither side.
my ($ok, $stderr) = move('head -n 3 |');
ok(!$ok, 'a stream cut short fails');
like($stderr, qr/tenant stream ended before its trailer/, 'the import says the stream was cut short');
is($target->safe_psql($db, "SELECT count(*) FROM mandant.tenant WHERE id = '$acme'"), '0', 'the target has no part of it');
is(digest($source, $acme), $before, 'the source still has all of it');

# A move to a target that has the slug already is refused.
admin($target, "SELECT mandant.create_tenant('acme', 'Other Acme', 'x\@other.test')");
($ok, $stderr) = move('');
ok(!$ok, 'a move onto a taken slug fails');
like($stderr, qr/tenant "acme" already exists/, 'the import names the taken slug');
is(digest($source, $acme), $before, 'the source still has all of it');
# (the other tenant gets another slug; deleting it would quarantine "acme")
$target->safe_psql($db, "UPDATE mandant.tenant SET slug = 'other-acme' WHERE slug = 'acme'");

# The move: suspended on the source first, so nothing is written meanwhile.
admin($source, "SELECT mandant.suspend_tenant('$acme', 'moving to the target cluster')");
($ok, $stderr) = move('');
ok($ok, 'the move succeeds') or diag($stderr);
like($stderr, qr/WARNING:  members without an account here were not imported: bob\@acme\.test/,
	'a member without an account on the target is named');
is($source->safe_psql($db, "SELECT count(*) FROM app.task WHERE tenant_id = '$acme'"), '0',
	'the source has no rows of it left');
is(digest($target, $acme, 'no members'), $before_rows, 'the target has the same rows, configuration and audit events');
admin($target, "SELECT mandant.resume_tenant('$acme')");

# The target: the same rows, the member with an account, the configuration, a verified trail.
is( $target->safe_psql(
		$db, qq{
		SELECT (SELECT count(*) FROM app.project WHERE tenant_id = '$acme') || ' ' ||
			   (SELECT count(*) FROM app.task WHERE tenant_id = '$acme') || ' ' ||
			   (SELECT count(*) FROM app.task WHERE tenant_id = '$acme' AND done) || ' ' ||
			   (SELECT string_agg(u.email || ':' || m.role, ',' ORDER BY u.email) FROM mandant.membership m
				JOIN mandant.users u ON u.id = m.user_id WHERE m.tenant_id = '$acme') || ' ' ||
			   (SELECT value::text FROM mandant.config_entry WHERE tenant_id = '$acme' AND key = 'from')}),
	'2 3000 1000 ada@acme.test:owner "ops@acme.test"',
	'the target has the projects, tasks, the member and the configuration');
is( $target->safe_psql($db, "SELECT title FROM app.task WHERE tenant_id = '$acme' AND id = 7"),
	"task 7 \\ \"quoted\" \t",
	'backslashes, quotes and tabs arrive unchanged');
is(admin($target, "SELECT ok FROM mandant.audit_verify('$acme')"), 't', 'the audit trail verifies on the target');
is( $target->safe_psql(
		$db,
		"SELECT string_agg(action, ',' ORDER BY id) FROM mandant.audit_event WHERE entity_id = '$acme' AND tenant_id = '00000000-0000-0000-0000-000000000000'"),
	'tenant.imported,tenant.resumed',
	'the target records the import and the resumption');
like( $target->safe_psql(
		$db, qq{
		BEGIN; SET ROLE regress_move_service; SELECT mandant.set_tenant('$acme');
		INSERT INTO app.task (project_id, title) VALUES (1, 'on the target') RETURNING id > 3000; COMMIT;}),
	qr/(^|\n)t$/,
	'the target writes the tenant, its sequence past the moved ids');

# The source: a tombstone, the slug quarantined, the steps recorded, the other tenant untouched.
is( $source->safe_psql(
		$db,
		"SELECT count(*) || ' ' || bool_and(slug_sha256 = sha256('acme'::bytea)) FROM mandant.tenant_tombstone WHERE tenant_id = '$acme'"),
	'1 true',
	'the source keeps a tombstone');
my ($ret, $out, $err) = $source->psql($db, "SELECT mandant.create_tenant('acme', 'Squatter', 'x\@squat.test')",
	connstr => $src);
like($err, qr/tenant slug "acme" belonged to a deleted tenant/, 'the slug is quarantined on the source');
is( $source->safe_psql(
		$db,
		"SELECT string_agg(action, ',' ORDER BY id) FROM mandant.audit_event WHERE entity_id = '$acme' AND tenant_id = '00000000-0000-0000-0000-000000000000'"),
	'tenant.created,tenant.suspended,tenant.deleted',
	'the source records creation, suspension and deletion');
is(digest($source, $stay), $stay_before, 'the other tenant on the source is untouched');
is(admin($source, "SELECT ok FROM mandant.audit_verify(NULL)"), 't', "the source's platform trail verifies");

# Back again, through a file of plain JSON lines (the portability form):
# the source accepts its own tenant back despite the quarantine.
admin($target, "SELECT mandant.suspend_tenant('$acme', 'moving back')");
my $file = "$dir/acme.jsonl";
system_or_bail('sh', '-c',
	qq{psql "$dst" -XAtq -v FETCH_COUNT=1000 -c "SELECT mandant.export_tenant_stream('$acme')" > $file});
is( system(
		'sh', '-c',
		qq{psql "$src" -Xq -c "COPY mandant.tenant_import FROM STDIN (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')" < $file}
	),
	0,
	'the tenant moves back from a JSON lines file');
like(slurp_file($file), qr/^\{"format":"mandant\.tenant-stream","version":1,/, 'the file starts with the header');
is( $source->safe_psql(
		$db, "SELECT count(*) FROM app.task WHERE tenant_id = '$acme' AND title LIKE 'task 7 \\\\ \"quoted\"%'"),
	'1',
	'a row with a backslash comes back unchanged from the file');
is( $source->safe_psql($db, "SELECT count(*) FROM app.task WHERE tenant_id = '$acme'"),
	'3001', 'the source has every row again, the one written on the target too');
is(admin($source, "SELECT ok FROM mandant.audit_verify('$acme')"), 't', 'the audit trail verifies back on the source');

$source->stop;
$target->stop;
done_testing();
