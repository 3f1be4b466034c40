# Makefile for mandant: PGXS build of the extension, plus the two user commands
#
#   make run     a private cluster under .run/ with the extension and demo data
#   make test    dependencies, build, throwaway cluster, every suite, summary line
#   make test-citus  the distributed suite on a 1 + 2 node Citus cluster
#   make bench   the benchmarks in bench/ against the .run/ cluster (not
#                bench/tenant_scale.sh, a tenant of 5,000,000 rows moved,
#                deleted and verified: tens of minutes; run it by hand)
#
# The PGXS part is only included once pg_config and the server headers exist,
# so that `make test` and `make run` work on a machine that has neither yet:
# they install the Debian packages first (scripts/install-deps.sh).

EXTENSION = mandant
EXTVERSION = 0.2.0

MODULE_big = mandant
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard extension/*.c)))

# The install script of the current version is written by topic in
# sql/mandant/ and concatenated.  Released versions keep their install
# script (sql/mandant--0.1.0.sql, frozen) and every release ships the
# upgrade step from the one before (sql/mandant--<from>--<to>.sql), so
# that a database of any released version can be updated.
SQL_PARTS = $(sort $(wildcard sql/mandant/*.sql))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

# pg_regress: one topic per file, listed by wildcard.
TESTS = $(sort $(wildcard test/sql/*.sql))
REGRESS = $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --load-extension=pgcrypto --load-extension=mandant --load-extension=pgtap

# isolation specs (concurrency); PGXS writes their output to output_iso/
# unless EXTRA_REGRESS_OPTS names another --outputdir (scripts/test.sh).
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=pgcrypto --load-extension=mandant

EXTRA_CLEAN = $(DATA_built) output_iso shim/shim.so

PG_CPPFLAGS = -Iextension
SHLIB_LINK = -lcrypto
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter $(MANDANT_CFLAGS)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all install installcheck:
	@echo "PostgreSQL server headers are missing: run 'make test' or 'make run'," >&2
	@echo "or scripts/install-deps.sh, which install them." >&2
	@exit 1
endif

# The HTTP gateway (shim/shim.so, run by shim/run), compiled with cc
# directly rather than kodev: no certificates are generated and nothing is
# fetched.  `make` builds it too when Kore is installed.
KORE_FEATURES = /usr/share/kore/features
SHIM_SRCS = $(sort $(wildcard shim/src/*.c))
SHIM_CFLAGS = -O2 -fPIC -Wall -Wextra -Wmissing-prototypes -Wstrict-prototypes $(MANDANT_CFLAGS)

shim/shim.so: $(SHIM_SRCS) shim/src/shim.h
	@test -f $(KORE_FEATURES) || { echo "Kore is not installed: run scripts/install-deps.sh" >&2; exit 1; }
	$(CC) $(SHIM_CFLAGS) -shared $$(cat $(KORE_FEATURES)) -o $@ $(SHIM_SRCS) -lpq -lssl -lcrypto

shim: shim/shim.so

ifneq ($(wildcard $(KORE_FEATURES)),)
all: shim/shim.so
endif

$(DATA_built): $(SQL_PARTS)
	cat $^ > $@

$(OBJS): extension/mandant.h

.PHONY: test test-citus run stop bench deps fuzz fuzz-request fuzz-sql shim

deps:
	scripts/install-deps.sh

test:
	scripts/test.sh

# The distributed suite (test/citus/) on a Citus cluster of one coordinator
# and two workers: builds Citus from ../shared/vendor once (cached outside
# the checkout), installs it and mandant (shared by every checkout); see
# scripts/citus.sh.  MANDANT_CITUS_ALL=1 also runs what is not built yet.
test-citus:
	scripts/citus.sh

# The fuzzers, for FUZZ_SECONDS in total (default 600), a third each:
#   fuzz-request  the libFuzzer target of the gateway's request object
#                 (shim/fuzz/run.sh; installs clang; no database)
#   fuzz-sql      the crash fuzzer of every function (test/shell/fuzz.sh,
#                 with half-gigabyte inputs) and random requests to
#                 http_call (test/shell/fuzz_http.sh), on the throwaway
#                 cluster of scripts/test.sh, which installs the extension
# make test runs the crash fuzzer for 60 s, the libFuzzer target for 20 s
# (when clang is there) and http_call's random test with its fixed seed.
FUZZ_SECONDS ?= 600
FUZZ_PART = $(shell expr $(FUZZ_SECONDS) / 3)

fuzz: fuzz-request fuzz-sql

fuzz-request:
	scripts/install-deps.sh fuzz
	FUZZ_SECONDS=$(FUZZ_PART) shim/fuzz/run.sh

fuzz-sql:
	MANDANT_TEST_ONLY=fuzz FUZZ_SECONDS=$(FUZZ_PART) FUZZ_HUGE=1 scripts/test.sh

run:
	scripts/run.sh start

stop:
	scripts/run.sh stop

bench:
	scripts/run.sh ensure
	bench/tenancy.sh
	bench/audit.sh
	bench/audit_verify.sh
	bench/fsm.sh
	bench/outbox.sh
	bench/config.sh
	bench/auth.sh
	bench/quota.sh
