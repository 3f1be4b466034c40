/*-------------------------------------------------------------------------
 *
 * deferred.c
 *		Writes that must survive the caller's rollback: a background worker
 *		commits them on the caller's behalf before the caller raises.
 *
 * A refused login raises MD050, and the error rolls back everything the
 * login wrote in its transaction; yet the failure's audit record and
 * login attempt must be kept, and a refresh token presented twice must
 * revoke its family although that call raises too.  So such a call hands
 * the write (a jsonb document for mandant.deferred_apply()) to this
 * module, which queues it in shared memory and makes sure a background
 * worker is running for the database; the worker applies it in its own
 * transaction and commits.  The caller waits until its entry is done
 * (or mandant.deferred_wait_ms passes) and only then raises: a client
 * that sees the error and looks finds the record.
 *
 * The caller must hold no lock the write needs (the SQL callers write
 * nothing before deferring), otherwise the worker would wait for the
 * caller's rollback, and the caller would time out before raising.
 *
 * One worker per database at a time, started on demand with
 * RegisterDynamicBackgroundWorker; it exits after a second without work
 * so that it never holds a database that someone wants to drop.  If no
 * worker can start (max_worker_processes exhausted), the entry waits for
 * the next start and the caller gets a warning.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/deferred.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "mandant.h"

#define DEFERRED_SLOTS			128
#define DEFERRED_MAX_BYTES		4000
#define DEFERRED_WORKERS		16
#define WORKER_IDLE_EXIT_MS		1000
#define WORKER_START_GRACE_MS	10000

PG_FUNCTION_INFO_V1(mandant_defer_write);
PGDLLEXPORT void mandant_deferred_main(Datum main_arg);

/* One queued write. */
typedef struct DeferredEntry
{
	bool		used;
	Oid			dboid;
	uint64		seq;
	char		payload[DEFERRED_MAX_BYTES];
} DeferredEntry;

/* The worker of one database. */
typedef struct DeferredWorker
{
	Oid			dboid;			/* InvalidOid: slot free */
	pid_t		pid;			/* 0 while starting */
	TimestampTz requested_at;
} DeferredWorker;

typedef struct DeferredQueue
{
	uint64		next_seq;
	ConditionVariable done;		/* broadcast whenever entries are applied */
	DeferredWorker workers[DEFERRED_WORKERS];
	DeferredEntry entries[DEFERRED_SLOTS];
} DeferredQueue;

static DeferredQueue *queue = NULL;
static int	deferred_wait_ms = 5000;

void
MandantDefineDeferredVariables(void)
{
	DefineCustomIntVariable("mandant.deferred_wait_ms",
							gettext_noop("How long a refused login waits for its failure record to be committed."),
							NULL, &deferred_wait_ms, 5000, 0, 60000,
							PGC_SUSET, GUC_UNIT_MS | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}

Size
MandantDeferredShmemSize(void)
{
	return MAXALIGN(sizeof(DeferredQueue));
}

void
MandantDeferredShmemInit(void)
{
	bool		found;

	queue = ShmemInitStruct("mandant deferred writes", sizeof(DeferredQueue), &found);
	if (!found)
	{
		memset(queue, 0, sizeof(DeferredQueue));
		queue->next_seq = 1;
		ConditionVariableInit(&queue->done);
	}
}

static LWLock *
QueueLock(void)
{
	return &MandantLocks[MANDANT_LOCK_DEFERRED].lock;
}

/* ---- the caller's side ---------------------------------------------------- */

/*
 * WorkerFor returns the worker slot of a database (caller holds the lock),
 * claiming a free one when create is set; NULL when none.
 */
static DeferredWorker *
WorkerFor(Oid dboid, bool create)
{
	DeferredWorker *free_slot = NULL;

	for (int i = 0; i < DEFERRED_WORKERS; i++)
	{
		if (queue->workers[i].dboid == dboid)
			return &queue->workers[i];
		if (queue->workers[i].dboid == InvalidOid && free_slot == NULL)
			free_slot = &queue->workers[i];
	}
	if (create && free_slot)
	{
		free_slot->dboid = dboid;
		free_slot->pid = 0;
		free_slot->requested_at = GetCurrentTimestamp();
	}
	return create ? free_slot : NULL;
}

/*
 * StartWorker asks the postmaster for a worker for this database.  Returns
 * false when it cannot (no free background worker slot).
 */
static bool
StartWorker(void)
{
	BackgroundWorker worker = {0};
	BackgroundWorkerHandle *handle;

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "mandant");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "mandant_deferred_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "mandant deferred writes (database %u)", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "mandant deferred writes");
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/*
 * Enqueue puts a payload in a free slot and makes sure a worker will take
 * it.  Returns the slot index and sets *seq; -1 when the queue is full.
 */
static int
Enqueue(const char *payload, uint64 *seq, bool *start_worker)
{
	int			slot = -1;
	DeferredWorker *worker;
	pid_t		wake = 0;

	LWLockAcquire(QueueLock(), LW_EXCLUSIVE);
	for (int i = 0; i < DEFERRED_SLOTS; i++)
	{
		if (!queue->entries[i].used)
		{
			slot = i;
			break;
		}
	}
	if (slot >= 0)
	{
		DeferredEntry *entry = &queue->entries[slot];

		entry->used = true;
		entry->dboid = MyDatabaseId;
		entry->seq = *seq = queue->next_seq++;
		strlcpy(entry->payload, payload, DEFERRED_MAX_BYTES);

		worker = WorkerFor(MyDatabaseId, false);
		*start_worker = false;
		if (worker == NULL)
			*start_worker = WorkerFor(MyDatabaseId, true) != NULL;
		else if (worker->pid == 0 &&
				 TimestampDifferenceExceeds(worker->requested_at, GetCurrentTimestamp(),
											WORKER_START_GRACE_MS))
		{
			worker->requested_at = GetCurrentTimestamp();	/* it never came up */
			*start_worker = true;
		}
		else
			wake = worker->pid;
	}
	LWLockRelease(QueueLock());
	if (wake != 0)
	{
		PGPROC	   *proc = BackendPidGetProc(wake);

		if (proc)
			SetLatch(&proc->procLatch);
	}
	return slot;
}

static bool
EntryDone(int slot, uint64 seq)
{
	bool		done;

	LWLockAcquire(QueueLock(), LW_SHARED);
	done = !queue->entries[slot].used || queue->entries[slot].seq != seq;
	LWLockRelease(QueueLock());
	return done;
}

static void
ForgetWorkerRequest(void)
{
	DeferredWorker *worker;

	LWLockAcquire(QueueLock(), LW_EXCLUSIVE);
	worker = WorkerFor(MyDatabaseId, false);
	if (worker && worker->pid == 0)
		worker->dboid = InvalidOid;
	LWLockRelease(QueueLock());
}

/*
 * mandant.defer_write(entry jsonb) returns boolean: has the entry applied
 * by mandant.deferred_apply() in a transaction of its own, and waits for
 * it.  Returns false (with a warning) when it was not applied in time; it
 * stays queued.  Internal.
 */
Datum
mandant_defer_write(PG_FUNCTION_ARGS)
{
	Jsonb	   *entry = PG_GETARG_JSONB_P(0);
	char	   *payload = JsonbToCString(NULL, &entry->root, VARSIZE(entry));
	uint64		seq = 0;
	bool		start_worker = false;
	int			slot;
	TimestampTz deadline;
	bool		done = false;

	if (strlen(payload) >= DEFERRED_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("deferred write is too large"),
				 errdetail("It has %zu bytes; at most %d fit.", strlen(payload), DEFERRED_MAX_BYTES - 1),
				 errhint("Shorten the values recorded.")));
	slot = Enqueue(payload, &seq, &start_worker);
	if (slot < 0)
	{
		ereport(WARNING,
				(errmsg("deferred write queue is full; a record was not kept"),
				 errdetail("%d writes are waiting.", DEFERRED_SLOTS)));
		PG_RETURN_BOOL(false);
	}
	if (start_worker && !StartWorker())
	{
		ForgetWorkerRequest();
		ereport(WARNING,
				(errmsg("could not start mandant's deferred write worker"),
				 errdetail("No background worker slot is free; the record waits for the next start."),
				 errhint("Raise max_worker_processes.")));
		PG_RETURN_BOOL(false);
	}

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), deferred_wait_ms);
	ConditionVariablePrepareToSleep(&queue->done);
	while (!(done = EntryDone(slot, seq)))
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

		if (left <= 0)
			break;
		ConditionVariableTimedSleep(&queue->done, Min(left, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	if (!done)
		ereport(WARNING,
				(errmsg("deferred write not applied within %d ms", deferred_wait_ms),
				 errdetail("It stays queued for mandant's worker."),
				 errhint("See the server log for errors of the worker.")));
	PG_RETURN_BOOL(done);
}

/* ---- the worker ------------------------------------------------------------ */

static volatile sig_atomic_t got_sigterm = false;

static void
HandleSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Called on exit: give up this database's worker slot. */
static void
ReleaseWorkerSlot(int code, Datum arg)
{
	DeferredWorker *worker;

	LWLockAcquire(QueueLock(), LW_EXCLUSIVE);
	worker = WorkerFor(DatumGetObjectId(arg), false);
	if (worker && worker->pid == MyProcPid)
		worker->dboid = InvalidOid;
	LWLockRelease(QueueLock());
}

/*
 * NextEntry copies the oldest entry of the database into payload and
 * returns its slot, or -1.  With none left and exit_if_idle set, it gives
 * up the worker slot under the same lock, so that a writer queuing
 * concurrently starts a new worker.
 */
static int
NextEntry(Oid dboid, char *payload, uint64 *seq, bool exit_if_idle)
{
	int			slot = -1;

	LWLockAcquire(QueueLock(), LW_EXCLUSIVE);
	for (int i = 0; i < DEFERRED_SLOTS; i++)
	{
		DeferredEntry *entry = &queue->entries[i];

		if (entry->used && entry->dboid == dboid &&
			(slot < 0 || entry->seq < queue->entries[slot].seq))
			slot = i;
	}
	if (slot >= 0)
	{
		memcpy(payload, queue->entries[slot].payload, DEFERRED_MAX_BYTES);
		*seq = queue->entries[slot].seq;
	}
	else if (exit_if_idle)
	{
		DeferredWorker *worker = WorkerFor(dboid, false);

		if (worker && worker->pid == MyProcPid)
			worker->dboid = InvalidOid;
	}
	LWLockRelease(QueueLock());
	return slot;
}

static void
FinishEntry(int slot, uint64 seq)
{
	LWLockAcquire(QueueLock(), LW_EXCLUSIVE);
	if (queue->entries[slot].used && queue->entries[slot].seq == seq)
		queue->entries[slot].used = false;
	LWLockRelease(QueueLock());
	ConditionVariableBroadcast(&queue->done);
}

/*
 * ApplyEntry runs mandant.deferred_apply(payload) in a transaction; an
 * error is logged and the entry dropped (retrying a write that fails
 * would fail again).
 */
static void
ApplyEntry(const char *payload)
{
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(payload)};

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "mandant.deferred_apply");
		SPI_execute_with_args("SELECT mandant.deferred_apply($1::jsonb)", 1, argtypes, args,
							  NULL, false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(cxt);
		error = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("mandant could not apply a deferred write: %s", error->message),
				 errdetail("The write was: %s", payload)));
		FreeErrorData(error);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * mandant_deferred_main is the worker: it applies the entries of its
 * database, oldest first, and exits after a second without any.
 */
void
mandant_deferred_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	char	   *payload = palloc(DEFERRED_MAX_BYTES);
	TimestampTz idle_since;
	DeferredWorker *worker;

	pqsignal(SIGTERM, HandleSigterm);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(QueueLock(), LW_EXCLUSIVE);
	worker = WorkerFor(dboid, false);
	if (worker == NULL || worker->pid != 0)
	{
		LWLockRelease(QueueLock());
		proc_exit(0);			/* another worker already serves the database */
	}
	worker->pid = MyProcPid;
	LWLockRelease(QueueLock());
	before_shmem_exit(ReleaseWorkerSlot, ObjectIdGetDatum(dboid));

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	idle_since = GetCurrentTimestamp();
	while (!got_sigterm)
	{
		uint64		seq = 0;
		bool		idle_long = TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
														   WORKER_IDLE_EXIT_MS);
		int			slot = NextEntry(dboid, payload, &seq, idle_long);

		if (slot >= 0)
		{
			ApplyEntry(payload);
			FinishEntry(slot, seq);
			idle_since = GetCurrentTimestamp();
			continue;
		}
		if (idle_long)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}
