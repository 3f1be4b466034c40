/*-------------------------------------------------------------------------
 *
 * mandant.h
 *		Declarations shared by the C files of the mandant extension.
 *
 * Every file in extension/ implements one capability; this header holds what
 * they share: mandant's own SQLSTATEs, the scope bits of the tenant context
 * and the few functions one capability offers another.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/mandant.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MANDANT_H
#define MANDANT_H

#include "access/htup.h"
#include "access/tableam.h"
#include "port/atomics.h"
#include "access/tupdesc.h"
#include "executor/execdesc.h"
#include "nodes/parsenodes.h"
#include "tcop/cmdtag.h"
#include "fmgr.h"
#include "storage/lwlock.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

/*
 * MANDANT_ERROR_CODES is the one table of mandant's SQLSTATEs (class MD):
 * X(name, the code's five characters, HTTP status, HTTP error code).  The
 * ERRCODE_MANDANT_<name> constants below and MandantErrorHttp are made
 * from it; the gateway answers with the status and the error code (see
 * "Errors" in README.md, whose table must say the same: make test checks
 * both against the codes sql/mandant/ and extension/ raise, in
 * test/shell/error_codes.sh).  Keep names and numbers stable.
 */
#define MANDANT_ERROR_CODES(X) \
	/* entering a tenant */ \
	X(TENANT_REQUIRED,		'M','D','0','0','1', 400, "TENANT_REQUIRED") \
	X(TENANT_NOT_FOUND,		'M','D','0','0','2', 404, "TENANT_NOT_FOUND") \
	X(TENANT_SUSPENDED,		'M','D','0','0','3', 403, "TENANT_SUSPENDED") \
	/* conflicting changes: state machines, configuration versions */ \
	X(INVALID_TRANSITION,	'M','D','0','1','0', 409, "INVALID_TRANSITION") \
	X(VERSION_CONFLICT,		'M','D','0','2','0', 409, "VERSION_CONFLICT") \
	/* limits: plans, rates */ \
	X(PLAN_LIMIT,			'M','D','0','3','0', 403, "PLAN_LIMIT_REACHED") \
	X(RATE_LIMITED,			'M','D','0','4','0', 429, "RATE_LIMITED") \
	/* identity: logins, tokens, second factor */ \
	X(INVALID_CREDENTIALS,	'M','D','0','5','0', 401, "INVALID_CREDENTIALS") \
	X(TOKEN_INVALID,		'M','D','0','5','1', 401, "TOKEN_INVALID") \
	X(TOKEN_EXPIRED,		'M','D','0','5','2', 401, "TOKEN_EXPIRED") \
	X(TOKEN_REVOKED,		'M','D','0','5','3', 401, "TOKEN_REVOKED") \
	X(MFA_REQUIRED,			'M','D','0','5','4', 401, "MFA_REQUIRED") \
	X(NOT_A_MEMBER,			'M','D','0','5','5', 403, "NOT_A_MEMBER") \
	/* configuration: values that must be secret references */ \
	X(SECRET_NOT_ALLOWED,	'M','D','0','6','0', 400, "SECRET_NOT_ALLOWED")

/* ERRCODE_MANDANT_<name>, for errcode() like PostgreSQL's ERRCODE_*. */
enum MandantErrorCode
{
#define MANDANT_ERRCODE_CONSTANT(name, c1, c2, c3, c4, c5, http, code) \
	ERRCODE_MANDANT_##name = MAKE_SQLSTATE(c1, c2, c3, c4, c5),
	MANDANT_ERROR_CODES(MANDANT_ERRCODE_CONSTANT)
#undef MANDANT_ERRCODE_CONSTANT
};

/*
 * MandantErrorHttp returns the HTTP error code (e.g. "TENANT_REQUIRED") of
 * one of mandant's SQLSTATEs and sets *http_status, or returns NULL for
 * any other SQLSTATE, whose status the gateway derives from its class.
 */
static inline const char *
MandantErrorHttp(int sqlerrcode, int *http_status)
{
	switch (sqlerrcode)
	{
#define MANDANT_ERRCODE_CASE(name, c1, c2, c3, c4, c5, http, code) \
		case ERRCODE_MANDANT_##name: \
			*http_status = (http); \
			return (code);
		MANDANT_ERROR_CODES(MANDANT_ERRCODE_CASE)
#undef MANDANT_ERRCODE_CASE
	}
	return NULL;
}

/*
 * Refusals of the audit trail use the standard codes (42501 for writes to
 * the append-only tables, 22023 for bad arguments); see audit.c.
 */

/* Names of the context variables and of the roles that may set them. */
#define MANDANT_GUC_TENANT		"app.current_tenant"
#define MANDANT_GUC_USER		"app.current_user_id"
#define MANDANT_GUC_SCOPES		"app.current_scopes"
#define MANDANT_GUC_REQUEST_ID	"app.request_id"
#define MANDANT_GUC_TRACE_ID	"app.trace_id"
#define MANDANT_GUC_ENVELOPE	"mandant.context"

/* Longest app.request_id accepted (request ids end up in logs). */
#define MANDANT_REQUEST_ID_MAX_BYTES 200

#define MANDANT_ROLE_ADMIN		"mandant_admin"
#define MANDANT_ROLE_SERVICE	"mandant_service"
#define MANDANT_ROLE_GATEWAY	"mandant_gateway"

/* The state machine of mandant.tenant's status; only upgrades change it. */
#define MANDANT_BUILTIN_MACHINE	"mandant_tenant"

/*
 * Scopes an access token or a trusted backend can hold.  The set is closed:
 * tenant-defined roles pick a subset of these.
 */
#define MANDANT_SCOPE_READ		(1 << 0)
#define MANDANT_SCOPE_WRITE		(1 << 1)
#define MANDANT_SCOPE_DELETE	(1 << 2)
#define MANDANT_SCOPE_ADMIN		(1 << 3)
#define MANDANT_SCOPE_INTERNAL	(1 << 4)
#define MANDANT_SCOPE_COUNT		5

/* Status of a row in mandant.tenant, as far as entering it is concerned. */
typedef enum MandantTenantStatus
{
	MANDANT_TENANT_MISSING,		/* no such row */
	MANDANT_TENANT_ENTERABLE,	/* active, or pending while provisioning */
	MANDANT_TENANT_SUSPENDED,
	MANDANT_TENANT_GONE			/* failed or deleted */
} MandantTenantStatus;

/* How a column value becomes jsonb (rowjson.c). */
typedef enum MandantJsonKind
{
	MANDANT_JSON_BOOL,
	MANDANT_JSON_INTEGER,
	MANDANT_JSON_NUMERIC,
	MANDANT_JSON_TEXT,
	MANDANT_JSON_UUID,
	MANDANT_JSON_JSONB,
	MANDANT_JSON_DATETIME,
	MANDANT_JSON_GENERIC		/* through to_jsonb() */
} MandantJsonKind;

typedef struct MandantColumnJson
{
	Oid			typid;
	int16		typlen;
	MandantJsonKind kind;
	FmgrInfo	to_jsonb;		/* MANDANT_JSON_GENERIC only */
} MandantColumnJson;

/* One live column of a table, as the row triggers see it (rowshape.c). */
typedef struct MandantColumn
{
	AttrNumber	attnum;
	const char *name;
	int			namelen;
	bool		typbyval;
	MandantColumnJson json;
} MandantColumn;

typedef struct MandantRowShape
{
	const char *schema;			/* of the table events are named after */
	const char *entity_type;	/* schema.table, the partitioned root's */
	int			ncolumns;
	MandantColumn *columns;		/* live columns in attnum order */
	int			nkeys;
	int		   *keys;			/* primary key columns, tenant column left out */
	int			tenant_column;	/* index into columns, or -1 */
	int			state_column;	/* column of its state machine, or -1 */
} MandantRowShape;

/* Header of every entry of a per-trigger cache; the key comes first. */
typedef struct MandantTriggerCacheEntry
{
	Oid			tgoid;
	Oid			relid;
	bool		valid;
	MemoryContext cxt;			/* owns what the entry points to */
} MandantTriggerCacheEntry;

struct TriggerData;

/* What every backend shares (mandant.c). */
typedef struct MandantShared
{
	pg_atomic_uint64 outbox_last_notify;	/* TimestampTz of the last wake-up */
} MandantShared;

/* crypto.c: hashes, MACs and random bytes through PostgreSQL's own APIs */
extern void MandantSha256(const void *data, size_t len, uint8 *digest);
extern void MandantHmacSha1(const uint8 *key, size_t key_len, const uint8 *data,
							size_t len, uint8 *digest);
extern void MandantHmacSha256(const uint8 *key, size_t key_len, const uint8 *data,
							  size_t len, uint8 *digest);
extern bool MandantEqualConstantTime(const uint8 *a, const uint8 *b, size_t len);
extern void MandantStrongRandom(void *buf, size_t len);
extern char *MandantOpenSslError(void);

/* encode.c */
extern int	MandantHexDigitValue(char c);
extern char *MandantBase64UrlEncode(const unsigned char *data, size_t len);
extern unsigned char *MandantBase64UrlDecode(const char *text, size_t len,
											 size_t *outlen);

/* keyfile.c */
struct stat;
extern void MandantStatKeyFile(const char *path, const char *setting,
							   const char *what, struct stat *st);
extern void MandantCheckKeyFileMode(const char *path, const struct stat *st,
									const char *what);
extern char *MandantReadKeyFile(const char *path, const char *setting,
								const char *what, const struct stat *st,
								size_t max, size_t *len);

/*
 * Access tokens: jwtkeys.c loads the keys, jwt.c reads, verifies and signs
 * tokens, authenticate.c checks them against the database.
 */
#define MANDANT_JWT_KID_LEN		43	/* base64url SHA-256 thumbprint */

typedef struct MandantJwtKey
{
	struct evp_pkey_st *pkey;	/* OpenSSL's EVP_PKEY */
	char		kid[MANDANT_JWT_KID_LEN + 1];
} MandantJwtKey;

typedef struct MandantJwtClaims
{
	char	   *payload;		/* the JSON text */
	const char *sub;
	const char *tid;
	const char *tslug;
	const char *role;
	const char *jti;
	const char *typ;
	const char *sid;
	double		exp;
	double		iat;
	int64		ver;
	bool		has_ver;
	int			scopes;
	List	   *scope_names;
} MandantJwtClaims;

extern void MandantDefineTokenKeyVariables(void);
extern MandantJwtKey *MandantJwtSigningKey(void);
extern MandantJwtKey **MandantJwtVerificationKeys(int *nkeys);
extern void MandantDefineTokenVariables(void);
extern MandantJwtClaims *MandantVerifyToken(text *token);

/* tokencache.c */
extern MandantJwtClaims *MandantCachedClaims(const uint8 *digest, const char *issuer,
											 const char **kid);
extern void MandantRememberClaims(const uint8 *digest, const char *kid, const char *issuer,
								  const MandantJwtClaims *claims);
extern void MandantInvalidToken(const char *why) pg_attribute_noreturn();
extern Datum MandantAuthenticate(text *token, const char *warn_as);

/* httpcall.c */
extern void MandantDefineHttpVariables(void);
extern char *MandantIsoUtc(double unix_seconds);

/* mandant.c */
extern MandantShared *MandantShmem;
extern LWLockPadded *MandantLocks;

/* mandant's LWLocks (one named tranche). */
#define MANDANT_LOCK_RATE_LIMIT	0
#define MANDANT_LOCK_DEFERRED	1
#define MANDANT_LOCK_COUNT		2

/* ratelimit.c */
extern void MandantDefineRateLimitVariables(void);
extern int64 MandantHttpRateLimit(const char *key, int max);
extern Size MandantRateLimitShmemSize(void);
extern void MandantRateLimitShmemInit(void);

/* deferred.c */
extern void MandantDefineDeferredVariables(void);
extern Size MandantDeferredShmemSize(void);
extern void MandantDeferredShmemInit(void);

/* totp.c */
extern void MandantDefineSecretVariables(void);

/* context.c */
extern void MandantDefineContextVariables(void);
extern void MandantCheckSetStatement(Node *stmt);
extern bool MandantCallerIsTrusted(void);
extern bool MandantContextIsCallers(void);
extern void MandantRaiseNoTenant(const char *detail) pg_attribute_noreturn();
extern const pg_uuid_t *MandantTenantOrPlatform(const char *detail_fmt,...) pg_attribute_printf(1, 2);
extern const pg_uuid_t *MandantOwnerOperationTenant(void);
extern bool MandantHasPrivilegesOfRole(const char *rolename);
extern void MandantCheckTrustedCaller(const char *function_name);
extern void MandantWarnContextMistakes(const char *function);
extern char *MandantCurrentScopesText(void);
extern void MandantAssignContext(const pg_uuid_t *tenant, const pg_uuid_t *user,
								 int scopes);
extern const pg_uuid_t *MandantCurrentTenant(void);
extern const pg_uuid_t *MandantCurrentUserId(void);
extern const char *MandantCurrentRequestId(void);
extern const char *MandantCurrentTraceId(void);
extern int	MandantCurrentScopes(void);

/* mandant.c */
extern void MandantOnRelcacheInvalidation(RelcacheCallbackFunction callback);

/*
 * citus.c: where the rows of a table are on a node of a Citus cluster.
 * CITUS_PROPAGATE_SET is the setting whose SET LOCAL Citus forwards
 * (envelope.c), which exists exactly when Citus's library is loaded.
 */
#define CITUS_PROPAGATE_SET		"citus.propagate_set_commands"
extern bool MandantCitusInstalled(void);
extern bool MandantCitusInternalBackend(void);
extern void MandantRefuseInPushedDownQuery(const char *function);
extern void MandantCitusRequireTransactionBlock(const char *function);
extern void MandantCitusCheckUtility(Node *stmt);
extern bool MandantCitusPlacement(Oid relid, Oid indexid, Oid *placement, Oid *placement_index);
extern Oid	MandantCitusLogicalTable(Relation rel);
extern Oid	MandantLogicalRelid(Relation rel);
extern bool MandantCitusDistributedTable(Oid relid);
extern Oid	MandantCitusPartitionWithTrigger(Oid relid, const char *tgname);
extern bool MandantCitusManagedTable(Oid relid);
extern bool MandantCitusTableWithTrigger(Oid relid, const char *tgname);
extern Oid	MandantCitusWrittenTable(PlannedStmt *plannedstmt, const char *tgname,
									 Oid *partition);
extern Oid	MandantCitusColocatedShard(Oid target, Relation beside);
extern int64 MandantCitusRowIdBase(void);
extern bool MandantCitusTrustedShardTrigger(Relation rel, Oid fnoid);

/*
 * envelope.c: the signed copy of the context (mandant.context) that Citus
 * forwards to its workers, where it stands in for a context of their own.
 */
typedef struct MandantEnvelope
{
	bool		has_tenant;
	pg_uuid_t	tenant;
	bool		has_user;
	pg_uuid_t	user;
	int			scopes;
	Oid			role;			/* the current user it was accepted for */
	LocalTransactionId lxid;	/* its transaction; invalid in a parallel
								 * worker */
	bool		own;			/* this node set it for Citus to forward */
	bool		owner_operation;	/* a table owner's (o1, e1): tenant
									 * tables only */
	bool		erase;			/* e1: may erase the tenant's history */
	char		request_id[MANDANT_REQUEST_ID_MAX_BYTES + 1];
	char		trace_id[MANDANT_REQUEST_ID_MAX_BYTES + 1];
} MandantEnvelope;

extern const MandantEnvelope *MandantEnvelopeReceived;
extern void MandantDefineEnvelopeVariables(void);
extern void MandantForwardContext(const pg_uuid_t *tenant, const pg_uuid_t *user,
								  int scopes, const char *request_id,
								  const char *trace_id);
extern bool MandantForwardOwnerContext(const pg_uuid_t *tenant, bool erase);
extern const pg_uuid_t *MandantEnvelopeErasing(void);
extern void MandantForwardPendingEnvelope(void);
extern void MandantNoteRequestIdsChange(void);
extern bool MandantForwardingEnvelope(void);
extern void MandantForwardOwnContext(void);
extern void MandantForwardRestoredContext(void);

/* scope.c */
extern const char *MandantScopeName(int scope_bit);
extern int	MandantScopeBit(const char *name);
extern void MandantRaiseUnknownScope(const char *name, const char *detail) pg_attribute_noreturn();
extern bool MandantParseScopeList(const char *list, int *scopes, const char **bad,
								  int *badlen);
extern char *MandantScopeList(int scopes);
extern ArrayType *MandantScopeArray(int scopes);
extern int	MandantScopeArrayBits(ArrayType *array, bool strict);

/* uuid.c */
extern bool MandantParseUuid(const char *text, pg_uuid_t *uuid);
extern char *MandantUuidText(const pg_uuid_t *uuid);

/* tenant.c */
extern void MandantDefineTenantVariables(void);
extern void MandantCheckTenantEnterable(const pg_uuid_t *tenant_id);

/* member.c */
extern bool MandantFetchUser(const pg_uuid_t *user, char **status,
							 int64 *token_version);
extern char *MandantMemberRole(const pg_uuid_t *tenant, const pg_uuid_t *user);
extern int	MandantRoleScopes(const pg_uuid_t *tenant, const char *role);

/* lookup.c */

/* One equality of an index lookup (MandantFetchByIndex). */
typedef struct MandantIndexKey
{
	Datum		value;
	RegProcedure eqproc;		/* e.g. F_UUID_EQ, F_TEXTEQ */
	bool		isnull;			/* match NULL (value and eqproc unused) */
} MandantIndexKey;

extern bool MandantFetchByIndex(const char *table, const char *index, int nkeys,
								const MandantIndexKey *keys, int ncolumns,
								const char *const *columns, Datum *values,
								bool *isnull);
extern void MandantLookupTable(const char *table, const char *index,
							   Oid *relid, Oid *indexid);
extern Oid	MandantTableOwner(const char *table, const char *pkey);
extern Datum MandantFetchColumn(const char *table, const char *pkey,
								RegProcedure eqproc, Datum key,
								const char *column, bool *found);
extern char *MandantRegisteredColumn(const char *registry, const char *column,
									 Oid relid);

/* rowjson.c */
extern void MandantInitColumnJson(MandantColumnJson *col,
								  Form_pg_attribute att, MemoryContext cxt);
extern void MandantColumnToJsonbValue(const MandantColumnJson *col,
									  Datum value, bool isnull,
									  JsonbValue *out);
extern void MandantPushKey(JsonbParseState **state, const char *key, int len);
extern void MandantPushTextPair(JsonbParseState **state, const char *key,
								const char *value);

/* rowshape.c */
extern const pg_uuid_t MandantPlatformTenant;
extern Oid	MandantRootOf(Relation rel);
extern MandantTriggerCacheEntry *MandantTriggerCacheLookup(HTAB **cache,
														   const char *name,
														   Size entrysize,
														   struct TriggerData *trigdata);
extern void MandantLoadRowShape(MandantRowShape *shape, Relation rel);
extern int	MandantFindColumn(const MandantRowShape *shape, const char *name);
struct Trigger;
extern bool *MandantLoadExclusions(const MandantRowShape *shape, struct Trigger *trigger,
								   int first, const char *kind, const char *written,
								   const char *enable_function);
extern char *MandantRowEntityId(const MandantRowShape *shape, HeapTuple tuple,
								TupleDesc desc);
extern const pg_uuid_t *MandantRowTenant(const MandantRowShape *shape,
										 HeapTuple tuple, TupleDesc desc, bool deleting);
extern void MandantCheckRowTenant(const pg_uuid_t *tenant, const char *table, bool deleting);
extern bool MandantRowErased(const MandantRowShape *shape, const struct TriggerData *trigdata);
extern void MandantCheckTriggerArgs(struct Trigger *trigger, Relation rel, int nfixed,
									const char *const *fixed, Datum list, bool list_isnull,
									const char *enable_function);
/* what MandantCheckTriggerCall requires */
#define MANDANT_TRIGGER_ROW			0x01
#define MANDANT_TRIGGER_AFTER		0x02
#define MANDANT_TRIGGER_BEFORE		0x04
#define MANDANT_TRIGGER_NO_DELETE	0x08
extern void MandantCheckTriggerCall(FunctionCallInfo fcinfo, int events, int nargs,
									const char *function, const char *how,
									const char *hint);
extern void MandantCheckRegisteredPair(struct TriggerData *trigdata, const char *registry,
									   const char *enable_function,
									   const char *const columns[2],
									   const char *first, const char *second);
extern bool MandantCheckRegistered(struct TriggerData *trigdata, const char *registry,
								   const char *enable_function, int ncolumns,
								   const char *const *columns, Datum *values,
								   bool *isnull);
extern bool MandantColumnChanged(const MandantColumn *col, Datum oldvalue,
								 bool oldnull, Datum newvalue, bool newnull);

/* gate.c */
extern void MandantCheckGateFor(const char *opname, const pg_uuid_t *tenant);
extern char *MandantJsonbKeyText(Jsonb *args, const char *key);

/* usertable.c */
typedef struct MandantSavedUser
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
	bool		forwarded;		/* an envelope went to Citus meanwhile */
} MandantSavedUser;

extern void MandantBecomeOwner(Oid owner, int flags, MandantSavedUser *saved);
extern int64 MandantTenantRowCount(Oid relid, const char *column, const pg_uuid_t *tenant);
extern bool MandantErasingTenant(const pg_uuid_t *tenant);
extern bool MandantErasingTenantRows(void);
extern void MandantEnterTableOwner(Oid relid, const pg_uuid_t *tenant, MandantSavedUser *saved);
extern Oid	MandantCitusOperationOwner(void);
extern void MandantEnterOwnerToErase(Oid owner, const pg_uuid_t *tenant, MandantSavedUser *saved);
extern void MandantEnterErasure(const pg_uuid_t *tenant, MandantSavedUser *saved);
extern void MandantLeaveErasure(const MandantSavedUser *saved);
extern const pg_uuid_t *MandantErasingHistoryOf(void);
extern void MandantCheckErasureRecord(const char *about, const char *described);
extern void MandantCheckGuardedTenant(const pg_uuid_t *named, const char *what,
									  const char *platform_detail, const char *hint);
extern bool MandantErasingRow(const struct TriggerData *trigdata, AttrNumber attnum);
extern void MandantRestoreUser(const MandantSavedUser *saved);
extern void MandantCheckTableTarget(Oid relid, const char *function_name);

/* heapwrite.c */
typedef struct MandantColumnSpec
{
	const char *name;
	Oid			type;
} MandantColumnSpec;

typedef struct MandantAppendTarget MandantAppendTarget;
extern Relation MandantOpenAppendTarget(const char *relname, Relation beside,
										const MandantColumnSpec *columns,
										int ncolumns,
										MandantAppendTarget **target,
										bool *loaded);
extern bool MandantAppendThroughCitus(const char *relname, Relation beside);
extern bool MandantInsertThroughCitus(const char *relname, const MandantColumnSpec *columns,
									  int ncolumns, Datum *values, const bool *isnull,
									  const char *returning, Datum *returned);
extern Relation MandantOpenGuardedShard(FunctionCallInfo fcinfo, const char *relname,
										const MandantColumnSpec *columns, int ncolumns,
										const char *hint, MandantAppendTarget **target,
										Datum *values, bool *nulls);
extern int64 MandantNextRowId(MandantAppendTarget *target, Relation rel);
extern void MandantAppendRow(MandantAppendTarget *target, Relation rel,
							 Datum *values, bool *nulls);
extern TM_Result MandantUpdateRow(MandantAppendTarget *target, Relation rel,
								  ItemPointer otid, HeapTuple newtup);

/* audit.c */
extern void MandantDefineAuditVariables(void);

/* outbox.c */
extern void MandantDefineOutboxVariables(void);
extern void MandantWakeForDistributedWrite(QueryDesc *queryDesc, int eflags);

/* quota.c */
extern void MandantCheckDistributedWrite(QueryDesc *queryDesc, int eflags);
extern void MandantCountDistributedWrite(QueryDesc *queryDesc);
extern void MandantCheckDistributedUtility(Node *stmt);
extern void MandantCountDistributedUtility(Node *stmt, QueryCompletion *qc);
extern void MandantCheckQuotaStatement(Query *query);

#endif							/* MANDANT_H */
