/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		Rate limits shared by every connection: mandant.rate_limit() and
 *		the failure counters of logins.
 *
 * A limit is "at most max per window".  Counters live in shared memory,
 * not in a table, for two reasons: they must not roll back (a refused
 * login raises, and its failure must still count), and they are hit on
 * every request, where a table row would be a hot spot of row locks and
 * WAL.  They are lost on restart, which an attacker cannot cause.
 *
 * The algorithm is the sliding window counter: each key keeps the count
 * of the current fixed window and of the previous one, and the estimate
 * of events in the last full window is
 *
 *		previous * (time left of the current window / window) + current
 *
 * It needs two counters per key (the exact sliding log needs one
 * timestamp per event), never lets a burst at a window boundary double
 * the rate as fixed windows do, and forgets a key entirely one window
 * after it went quiet, which is what "locked until the window passes"
 * means for logins.  GCRA would be as small, but it refills one event at
 * a time, so a locked-out attacker could keep trying at the refill rate.
 *
 * Keys are hashed (SHA-256 of database, namespace, key and window, with
 * PostgreSQL's cryptohash through crypto.c) to fixed 32-byte entries, so
 * databases never share a counter.  The login failure counters and
 * mandant.rate_limit()'s keys live in two separate tables
 * (mandant.login_limit_slots and mandant.rate_limit_slots entries):
 * whatever a caller of the public rate_limit() does, it can neither read,
 * count nor evict a login counter.  rate_limit()'s keys are the tenant's
 * own when a tenant is set (tenants never share a counter) and the
 * platform's otherwise, which only trusted backends and the gateway may
 * count.  When a table is full, its entries idle for a whole window are
 * dropped; if none is, the oldest entry of the namespace that holds the
 * most entries goes, so that a tenant filling the table with keys evicts
 * its own, never another tenant's live counters.
 *
 * Login keys are "pair:<account>|<address>" (10 failures per 15 minutes
 * lock that account from that address), "ip:<address>" (a higher ceiling
 * for one address across accounts) and "account:<account>" (a higher
 * ceiling across addresses, which slows distributed guessing without
 * letting one address lock an account out for everyone); see
 * mandant.login().  MD040 names the limit that was hit.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "mandant.h"

#define RATE_KEY_LEN	32

PG_FUNCTION_INFO_V1(mandant_rate_limit);
PG_FUNCTION_INFO_V1(mandant_login_guard);
PG_FUNCTION_INFO_V1(mandant_login_failed_count);
PG_FUNCTION_INFO_V1(mandant_login_reset);

typedef struct RateKey
{
	unsigned char hash[RATE_KEY_LEN];
} RateKey;

typedef struct RateEntry
{
	RateKey		key;			/* hash key: must be first */
	uint32		owner;			/* hash of database and namespace */
	int64		window_usec;
	TimestampTz window_start;	/* start of the current window */
	int32		current;
	int32		previous;
} RateEntry;

static int	rate_limit_slots = 16384;
static int	login_limit_slots = 16384;
static int	login_lockout_pair = 10;
static int	login_lockout_address = 50;
static int	login_lockout_account = 100;
static HTAB *rate_table = NULL;		/* mandant.rate_limit() */
static HTAB *login_table = NULL;	/* failed logins */

/* Namespaces of keys. */
#define NS_APP		"app"
#define NS_LOGIN	"login"
#define NS_HTTP		"http"

/*
 * MandantDefineRateLimitVariables defines mandant.rate_limit_slots.
 */
void
MandantDefineRateLimitVariables(void)
{
	DefineCustomIntVariable("mandant.rate_limit_slots",
							gettext_noop("Number of rate limit keys kept in shared memory."),
							gettext_noop("When they are all in use, keys idle for a window are dropped first, then the oldest."),
							&rate_limit_slots, 16384, 256, 1024 * 1024,
							PGC_POSTMASTER, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.login_limit_slots",
							gettext_noop("Number of failed-login counters kept in shared memory."),
							gettext_noop("Separate from mandant.rate_limit_slots; when all are in use, counters idle for a window are dropped first, then the oldest."),
							&login_limit_slots, 16384, 256, 1024 * 1024,
							PGC_POSTMASTER, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.login_lockout_pair",
							gettext_noop("Failed logins of one account from one address within 15 minutes that lock it from there."),
							NULL, &login_lockout_pair, 10, 1, 1000000,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.login_lockout_address",
							gettext_noop("Failed logins from one address within 15 minutes (any accounts) that lock the address."),
							NULL, &login_lockout_address, 50, 1, 1000000,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.login_lockout_account",
							gettext_noop("Failed logins of one account within 15 minutes (any addresses) that lock the account."),
							NULL, &login_lockout_account, 100, 1, 1000000,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}

Size
MandantRateLimitShmemSize(void)
{
	return add_size(hash_estimate_size(rate_limit_slots, sizeof(RateEntry)),
					hash_estimate_size(login_limit_slots, sizeof(RateEntry)));
}

void
MandantRateLimitShmemInit(void)
{
	HASHCTL		info;

	info.keysize = sizeof(RateKey);
	info.entrysize = sizeof(RateEntry);
	rate_table = ShmemInitHash("mandant rate limits", rate_limit_slots, rate_limit_slots,
							   &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	login_table = ShmemInitHash("mandant login counters", login_limit_slots, login_limit_slots,
								&info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

static LWLock *
RateLock(void)
{
	return &MandantLocks[MANDANT_LOCK_RATE_LIMIT].lock;
}

/*
 * HashKey turns database, namespace, key and window into the table key:
 * the SHA-256 of "namespace\0database:window\0key".
 */
static RateKey
HashKey(const char *namespace, const char *key, int64 window_usec)
{
	RateKey		result;
	StringInfoData input;

	StaticAssertStmt(RATE_KEY_LEN == PG_SHA256_DIGEST_LENGTH, "a rate key is a SHA-256");
	initStringInfo(&input);
	appendBinaryStringInfo(&input, namespace, strlen(namespace) + 1);
	appendStringInfo(&input, "%u:%lld", MyDatabaseId, (long long) window_usec);
	appendStringInfoChar(&input, '\0');
	appendStringInfoString(&input, key);
	MandantSha256(input.data, input.len, result.hash);
	pfree(input.data);
	return result;
}

/* Roll moves an entry's counters to the window that contains now. */
static void
Roll(RateEntry *entry, TimestampTz now)
{
	TimestampTz start = now - (now % entry->window_usec);

	if (entry->window_start == start)
		return;
	entry->previous = (entry->window_start == start - entry->window_usec) ? entry->current : 0;
	entry->current = 0;
	entry->window_start = start;
}

/* Estimate is the sliding-window count of events in the last window. */
static double
Estimate(const RateEntry *entry, TimestampTz now)
{
	double		left = 1.0 - (double) (now - entry->window_start) / entry->window_usec;

	return entry->previous * left + entry->current;
}

/*
 * SecondsUntilRoom returns how long, without new events, until the
 * estimate of an entry is at most max - 1, so that one more event fits.
 * Within the current window that needs previous * (1 - x) + current <=
 * max - 1 (x: fraction of the window elapsed); when current alone is too
 * many, it needs current * (1 - x') <= max - 1 in the next window.
 */
static int64
SecondsUntilRoom(const RateEntry *entry, TimestampTz now, int max)
{
	double		w = entry->window_usec;
	double		into = now - entry->window_start;
	double		target = max - 1;
	double		wait;

	if (entry->current > target)
		wait = (w - into) + w * (1.0 - target / entry->current);
	else if (entry->previous > 0)
		wait = w * (1.0 - (target - entry->current) / entry->previous) - into;
	else
		wait = 0;
	return wait > 0 ? (int64) ceil(wait / USECS_PER_SEC) : 1;
}

/* OwnerOf identifies the database and namespace a key belongs to. */
static uint32
OwnerOf(const char *namespace)
{
	char	   *owner = psprintf("%u:%s", MyDatabaseId, namespace);

	return hash_bytes((const unsigned char *) owner, strlen(owner));
}

/* How many live entries an owner holds, and its oldest, for MakeRoom. */
typedef struct OwnerCount
{
	uint32		owner;			/* hash key: must be first */
	int			entries;
	RateEntry  *oldest;
} OwnerCount;

/*
 * MakeRoom, when a table is full, drops the entries idle for a whole
 * window; if there are none, the oldest entry of the owner holding the
 * most entries.
 */
static void
MakeRoom(HTAB *table, TimestampTz now)
{
	HASH_SEQ_STATUS scan;
	RateEntry  *entry;
	HASHCTL		info;
	HTAB	   *owners;
	OwnerCount *busiest = NULL;
	int			dropped = 0;

	info.keysize = sizeof(uint32);
	info.entrysize = sizeof(OwnerCount);
	info.hcxt = CurrentMemoryContext;
	owners = hash_create("mandant rate limit owners", 256, &info,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	hash_seq_init(&scan, table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		OwnerCount *count;
		bool		found;

		if (entry->window_start + 2 * entry->window_usec <= now)
		{
			hash_search(table, &entry->key, HASH_REMOVE, NULL);
			dropped++;
			continue;
		}
		count = hash_search(owners, &entry->owner, HASH_ENTER, &found);
		if (!found)
		{
			count->entries = 0;
			count->oldest = entry;
		}
		count->entries++;
		if (entry->window_start < count->oldest->window_start)
			count->oldest = entry;
		if (busiest == NULL || count->entries > busiest->entries)
			busiest = count;
	}
	if (dropped == 0 && busiest != NULL)
		hash_search(table, &busiest->oldest->key, HASH_REMOVE, NULL);
	hash_destroy(owners);
}

/*
 * Lookup finds or creates the entry of a key of owner (caller holds the
 * lock).
 */
static RateEntry *
Lookup(HTAB *table, const RateKey *key, uint32 owner, int64 window_usec, TimestampTz now,
	   bool create)
{
	bool		found;
	RateEntry  *entry;

	entry = hash_search(table, key, create ? HASH_ENTER_NULL : HASH_FIND, &found);
	if (entry == NULL && create)
	{
		MakeRoom(table, now);
		entry = hash_search(table, key, HASH_ENTER_NULL, &found);
		if (entry == NULL)
			elog(ERROR, "rate limit table is full");
	}
	if (entry == NULL)
		return NULL;
	if (!found)
	{
		entry->owner = owner;
		entry->window_usec = window_usec;
		entry->window_start = now - (now % window_usec);
		entry->current = 0;
		entry->previous = 0;
	}
	Roll(entry, now);
	return entry;
}

/* WindowText describes a window for messages: "15 minutes", "1 hour". */
static char *
WindowText(int64 usec)
{
	static const struct
	{
		int64		unit;
		const char *name;
	}			units[] = {
		{USECS_PER_DAY, "day"}, {USECS_PER_HOUR, "hour"},
		{USECS_PER_MINUTE, "minute"}, {USECS_PER_SEC, "second"}
	};

	for (size_t i = 0; i < lengthof(units); i++)
	{
		if (usec % units[i].unit == 0)
		{
			int64		n = usec / units[i].unit;

			return psprintf("%lld %s%s", (long long) n, units[i].name, n == 1 ? "" : "s");
		}
	}
	return psprintf("%.3f seconds", usec / (double) USECS_PER_SEC);
}

static int64
WindowOf(Interval *per)
{
	int64		usec = per->time + (int64) per->day * USECS_PER_DAY +
		(int64) per->month * 30 * USECS_PER_DAY;

	if (usec < USECS_PER_SEC || usec > 366 * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate limit window must be between 1 second and 1 year"),
				 errdetail("The window given is %s.", WindowText(usec)),
				 errhint("For example '1 minute' or '15 minutes'.")));
	return usec;
}

static void
RateLimited(const char *what, double used, int max, int64 window, int64 retry_after)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_RATE_LIMITED),
			 errmsg("rate limit exceeded for %s", what),
			 errdetail("%.0f of %d allowed per %s used.", floor(used), max, WindowText(window)),
			 errhint("Retry after %lld seconds.", (long long) retry_after)));
}

/*
 * AppNamespace returns the namespace of mandant.rate_limit()'s keys: the
 * tenant of the transaction, so that tenants never share a counter, or,
 * without a tenant, the platform's, which only trusted backends and the
 * gateway may count in (per address limits in front of every tenant).
 */
static const char *
AppNamespace(void)
{
	const pg_uuid_t *tenant = MandantCurrentTenant();

	if (tenant != NULL)
		return psprintf("%s:%s", NS_APP,
						MandantUuidText(tenant));
	if (MandantCallerIsTrusted() || MandantHasPrivilegesOfRole(MANDANT_ROLE_GATEWAY))
		return NS_APP;
	MandantRaiseNoTenant("Rate limits count per tenant; platform-wide limits are for trusted backends and the gateway.");
	return NULL;				/* not reached */
}

/*
 * CountEvent counts one event for key of namespace in table unless max are
 * used already; returns the estimate of events used before it, and sets
 * *retry_after to the seconds until there is room (0: counted).
 */
static double
CountEvent(const char *namespace, const char *key, int max, int64 window, int64 *retry_after)
{
	RateKey		hashed = HashKey(namespace, key, window);
	uint32		owner = OwnerOf(namespace);
	TimestampTz now = GetCurrentTimestamp();
	RateEntry  *entry;
	double		used;

	*retry_after = 0;
	LWLockAcquire(RateLock(), LW_EXCLUSIVE);
	entry = Lookup(rate_table, &hashed, owner, window, now, true);
	used = Estimate(entry, now);
	if (used + 1 > max)
		*retry_after = SecondsUntilRoom(entry, now, max);
	else
		entry->current++;
	LWLockRelease(RateLock());
	return used;
}

/*
 * MandantHttpRateLimit counts one request of the HTTP gateway for key
 * (an address or a tenant) against max per minute; returns 0, or the
 * seconds until the key has room again (the request is then not counted).
 * Its counters are the gateway's own, apart from mandant.rate_limit()'s.
 */
int64
MandantHttpRateLimit(const char *key, int max)
{
	int64		retry;

	(void) CountEvent(NS_HTTP, key, max, USECS_PER_MINUTE, &retry);
	return retry;
}

/*
 * mandant.rate_limit(key text, max int, per interval) returns int: counts
 * one event for key and returns how many remain in the window; raises
 * MD040 (and counts nothing) when max are already used.
 */
Datum
mandant_rate_limit(PG_FUNCTION_ARGS)
{
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		max = PG_GETARG_INT32(1);
	Interval   *per = PG_GETARG_INTERVAL_P(2);
	int64		window = WindowOf(per);
	const char *namespace = AppNamespace();
	double		used;
	int64		retry;

	if (max < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate limit must allow at least one event"),
				 errdetail("mandant.rate_limit() was called with max %d.", max),
				 errhint("Pass a positive max.")));

	used = CountEvent(namespace, key, max, window, &retry);
	if (retry > 0)
		RateLimited(psprintf("\"%s\"", key), used, max, window, retry);
	PG_RETURN_INT32((int32) Max(0, floor(max - used - 1)));
}

/*
 * LoginLimitName says which limit a login key stands for, for MD040.
 */
static const char *
LoginLimitName(const char *key)
{
	if (strncmp(key, "pair:", 5) == 0)
		return "for this account from this address";
	if (strncmp(key, "ip:", 3) == 0)
		return "from this address";
	if (strncmp(key, "account:", 8) == 0)
		return "for this account";
	if (strncmp(key, "client:", 7) == 0)
		return "for this client id";
	return "";
}

/*
 * mandant.login_guard(keys text[], max int, per interval) returns void:
 * raises MD040 when any of the keys has max or more failures in the
 * window.  Counts nothing.  Internal (login, service_token).
 */
Datum
mandant_login_guard(PG_FUNCTION_ARGS)
{
	ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(0);
	int32		max = PG_GETARG_INT32(1);
	Interval   *per = PG_GETARG_INTERVAL_P(2);
	int64		window = WindowOf(per);
	TimestampTz now = GetCurrentTimestamp();
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		RateKey		hashed;
		RateEntry  *entry;
		double		used = 0;
		int64		retry = 0;
		const char *key;

		if (nulls[i])
			continue;
		key = TextDatumGetCString(elems[i]);
		hashed = HashKey(NS_LOGIN, key, window);
		LWLockAcquire(RateLock(), LW_EXCLUSIVE);
		entry = Lookup(login_table, &hashed, 0, window, now, false);
		if (entry)
		{
			used = Estimate(entry, now);
			if (used >= max)
				retry = SecondsUntilRoom(entry, now, max);
		}
		LWLockRelease(RateLock());
		if (retry > 0)
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_RATE_LIMITED),
					 errmsg("too many failed attempts %s", LoginLimitName(key)),
					 errdetail("%.0f failed attempts %s within %s; at most %d are allowed.", floor(used),
							   LoginLimitName(key), WindowText(window), max),
					 errhint("Retry after %lld seconds.", (long long) retry)));
	}
	PG_RETURN_VOID();
}

/*
 * mandant.login_failed_count(keys text[], per interval) returns void:
 * counts a failure for each key.  Internal; not undone by a rollback.
 */
Datum
mandant_login_failed_count(PG_FUNCTION_ARGS)
{
	ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(0);
	int64		window = WindowOf(PG_GETARG_INTERVAL_P(1));
	TimestampTz now = GetCurrentTimestamp();
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	uint32		owner = OwnerOf(NS_LOGIN);

	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		RateKey		hashed;

		if (nulls[i])
			continue;
		hashed = HashKey(NS_LOGIN, TextDatumGetCString(elems[i]), window);
		LWLockAcquire(RateLock(), LW_EXCLUSIVE);
		Lookup(login_table, &hashed, owner, window, now, true)->current++;
		LWLockRelease(RateLock());
	}
	PG_RETURN_VOID();
}

/*
 * mandant.login_reset(key text, per interval) returns void: forgets the
 * failures of a key (an account after a successful login).  Internal.
 */
Datum
mandant_login_reset(PG_FUNCTION_ARGS)
{
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		window = WindowOf(PG_GETARG_INTERVAL_P(1));
	RateKey		hashed = HashKey(NS_LOGIN, key, window);

	LWLockAcquire(RateLock(), LW_EXCLUSIVE);
	hash_search(login_table, &hashed, HASH_REMOVE, NULL);
	LWLockRelease(RateLock());
	PG_RETURN_VOID();
}
