/*-------------------------------------------------------------------------
 *
 * envelope.c
 *		The signed context envelope, mandant.context: how the tenant context
 *		of a transaction on a Citus coordinator reaches the workers.
 *
 * Citus runs the shards' queries on the workers over connections of its
 * own, as the current user of the coordinator's backend, and forwards no
 * setting but those given with SET LOCAL (and only with
 * citus.propagate_set_commands = 'local').  The context settings of
 * context.c cannot travel that way: their check hooks refuse every SET.
 * So whenever mandant assigns a context on a node where Citus is
 * installed, it also runs SET LOCAL mandant.context = '<envelope>' through
 * SPI, with citus.propagate_set_commands at 'local' for that one
 * statement; Citus sends it to the worker connections the transaction has
 * and replays it on those it opens later (after the SAVEPOINTs in force),
 * and a rolled back savepoint takes it back on every node.
 *
 * The envelope is text, fields separated by dots:
 *
 *	m1.<tenant>.<user>.<scopes>.<expires>.<role>.<request id>.<trace id>
 *	  .<mac>
 *
 * (on one line), or o1.<...> for a table owner's operation (delete_tenant,
 * the exports, usertable.c): on a worker it stands in for the tenant of
 * the tenant tables' row level security only (mandant.tenant_filter(),
 * row_in_tenant()), never for the context of mandant's own tables or the
 * gate, so that the owner's code that runs on the shards, or a session of
 * the owner's role that replays it, reads no record of that tenant that
 * the owner's tables do not hold.  e1.<...> is an o1 envelope that also
 * lets its role delete the tenant's rows of mandant's distributed history
 * tables (MandantEnvelopeErasing, history.c): delete_tenant erases them
 * over the owner's connections, since Citus refuses a transaction that
 * touches colocated shards as two roles.
 *
 * tenant and user are uuids or empty, scopes a comma separated list,
 * expires unix seconds, role, request id and trace id base64url, and mac
 * the base64url HMAC-SHA256 of everything before it under the key of
 * mandant.context_key_file (the file's bytes as they are, at least 32; the
 * same file on every node).  The check hook accepts a value only when it
 * is empty, or its MAC verifies (compared in constant time), the current
 * user is the role it names (or has that role's privileges), it has not
 * expired, and it is set in a session (SET, SET LOCAL, set_config(), a
 * function's SET clause), not by a file, ALTER ROLE/DATABASE or connection
 * options.  Only servers with mandant.accept_context_envelopes on (Citus
 * workers) take envelopes from anyone; a coordinator takes only its own,
 * while it hands them to Citus, so that a session there cannot replay an
 * envelope of another session of its role read from a worker's log.
 * The role is the current user of whoever assigned the context,
 * which is the user Citus connects to the workers as; an envelope read
 * from a worker's log or pg_stat_activity is thus good only for that role
 * and only until it expires (mandant.context_lifetime).  No part of a
 * refused value appears in the messages.
 *
 * The accepted envelope is parsed once into the "extra" struct, with the
 * role it was accepted for and the transaction it was accepted in, and the
 * assign hook publishes it in MandantEnvelopeReceived; context.c's getters
 * fall back to it when the node has no context of its own, in that
 * transaction only (a session-level SET does not outlive it).
 *
 * The key is cached with the stat of its file, looked at again at most
 * once a second and read again when the file or the setting changes.  A
 * coordinator's backend hands out the envelope it signed last again for
 * the same context and role while it is young (a tenth of its lifetime),
 * and a worker's backend takes the text it verified last again without
 * its MAC (same role, same key, not expired): a session that enters the
 * same tenant transaction after transaction pays neither HMAC.  Whether
 * Citus is installed is asked only when its library is loaded (citus.c).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/envelope.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <time.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "commands/extension.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "mandant.h"

/* The first field of an envelope, its format. */
#define ENVELOPE_VERSION	"m1"
#define ENVELOPE_OWNER_VERSION	"o1"	/* a table owner's operation */
#define ENVELOPE_ERASE_VERSION	"e1"	/* the same, erasing a tenant's history */

/* Fields of an envelope, the version and the MAC included. */
#define ENVELOPE_FIELDS		9

/* Base64url length of an HMAC-SHA256. */
#define ENVELOPE_MAC_LEN	43

/* Bounds of the key file's size. */
#define CONTEXT_KEY_MIN		32
#define CONTEXT_KEY_MAX		4096

/* The setting whose SET LOCAL Citus forwards, and the one that makes it. */

static const char *const envelope_hint =
"mandant sets mandant.context itself: call mandant.set_tenant() or mandant.authenticate() on the coordinator.";

/* Settings. */
static char *envelope_text = NULL;
static char *context_key_file = NULL;
static int	context_lifetime = 300;
static bool accept_envelopes = false;

/* SetEnvelopeLocally is setting this node's own envelope for Citus. */
static bool forwarding = false;

/*
 * The settings that the workers' connections get with an erase envelope
 * (MandantForwardOwnerContext), how they are given back, and the
 * transaction whose connections have them until the caller's envelope is
 * handed back.
 */
#define ERASE_SETTINGS	"SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL standard_conforming_strings = on"
#define RESTORED_SETTINGS	"SET LOCAL search_path TO DEFAULT; SET LOCAL standard_conforming_strings TO DEFAULT"
static LocalTransactionId pinned_settings_lxid = InvalidLocalTransactionId;

/* The envelope in force, set by the assign hook; NULL when empty. */
const MandantEnvelope *MandantEnvelopeReceived = NULL;

/*
 * The key of context_key_file, the file it was read from and when that was
 * last looked at (see ContextKey).  key_generation counts the keys read,
 * so that the envelopes signed and verified under one key are known.
 */
static struct
{
	char		path[MAXPGPATH];
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec mtime;
	time_t		checked_at;
	size_t		len;
	uint8		bytes[CONTEXT_KEY_MAX];
}			context_key;
static uint64 key_generation = 0;

/* Room for an envelope: every field at its longest, with a margin. */
#define ENVELOPE_MAX_LEN	1024

/*
 * The last envelope this backend signed (SignEnvelope), handed out again
 * for the same context, role and key while it is younger than a tenth of
 * mandant.context_lifetime: a worker then gets the same text on every
 * transaction of a session and verifies it once (verified_envelope).  Its
 * expiry stays the one it was signed with.
 */
static struct
{
	uint64		generation;		/* key_generation it was signed under; 0:
								 * none */
	Oid			role;
	int64		signed_at;
	bool		owner_operation;
	bool		erase;
	bool		has_tenant;
	pg_uuid_t	tenant;
	bool		has_user;
	pg_uuid_t	user;
	int			scopes;
	char		request_id[MANDANT_REQUEST_ID_MAX_BYTES + 1];
	char		trace_id[MANDANT_REQUEST_ID_MAX_BYTES + 1];
	char		text[ENVELOPE_MAX_LEN];
}			signed_envelope;

/*
 * The last envelope this backend verified, for the current user it named
 * and under key generation: the same text again, for the same user, before
 * it expires, is accepted without computing its MAC again.
 */
static struct
{
	uint64		generation;		/* 0: none */
	int64		expires;
	char		role_name[NAMEDATALEN];
	MandantEnvelope parsed;
	char		text[ENVELOPE_MAX_LEN];
}			verified_envelope;


/* The session warned that Citus is installed and no key is configured. */
static bool warned_no_key = false;

/*
 * Citus forgets the SET LOCAL of a subtransaction that commits (RELEASE
 * SAVEPOINT, the end of a PL/pgSQL block with an EXCEPTION clause), while
 * the setting stays in force here: connections it opens afterwards would
 * get the parent's envelope, or none.  So the subtransaction level of the
 * last forwarding is kept, a commit of that level marks the envelope for
 * forwarding again at the parent's level (pending_lxid: in this
 * transaction), and mandant's executor and utility hooks do so before the
 * next statement (MandantForwardPendingEnvelope).
 */
static int	forwarded_level = 0;
static LocalTransactionId forwarded_lxid = InvalidLocalTransactionId;	/* any */
static bool forward_pending = false;
static int	pending_level = 0;
static LocalTransactionId pending_lxid = InvalidLocalTransactionId;

/*
 * The envelope carries the request and trace ids: when app.request_id or
 * app.trace_id changes in a transaction that handed Citus an envelope, a
 * new one is signed and handed over before the next statement
 * (MandantNoteRequestIdsChange).
 */
static bool resign_pending = false;
static Oid	resign_role = InvalidOid;	/* the role of the last own envelope */
static LocalTransactionId resign_lxid = InvalidLocalTransactionId;	/* and its transaction */

static void EnvelopeSubXactCallback(SubXactEvent event, SubTransactionId subid,
									SubTransactionId parent_subid, void *arg);

/* GUC "extra" memory: plain malloc before PostgreSQL 16, guc_malloc since. */
#if PG_VERSION_NUM >= 160000
#define GucExtraAlloc(size) guc_malloc(LOG, (size))
#else
#define GucExtraAlloc(size) malloc(size)
#endif

/*
 * RefuseEnvelope fills in the error of a refused envelope; detail says why
 * without quoting the value.
 */
static bool
RefuseEnvelope(const char *detail, const char *hint)
{
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("permission denied to set parameter \"%s\"", MANDANT_GUC_ENVELOPE);
	GUC_check_errdetail("%s", detail);
	GUC_check_errhint("%s", hint);
	return false;
}

/*
 * ContextKey returns the key of mandant.context_key_file and its length in
 * *len, or NULL when the setting is empty; raises when the file is
 * missing, readable by others or shorter than CONTEXT_KEY_MIN bytes.  The
 * file is looked at (stat) at most once a second, and read again when it
 * changed: a key replaced on disk is in force within a second.
 */
static const uint8 *
ContextKey(size_t *len)
{
	struct stat st;
	char	   *content;
	size_t		n;
	time_t		now = time(NULL);

	if (context_key_file == NULL || context_key_file[0] == '\0')
		return NULL;
	if (context_key.len > 0 && context_key.checked_at == now &&
		strcmp(context_key.path, context_key_file) == 0)
	{
		*len = context_key.len;
		return context_key.bytes;
	}
	MandantStatKeyFile(context_key_file, "mandant.context_key_file", "context key file", &st);
	if (context_key.len > 0 && strcmp(context_key.path, context_key_file) == 0 &&
		context_key.dev == st.st_dev && context_key.ino == st.st_ino &&
		context_key.size == st.st_size &&
		context_key.mtime.tv_sec == st.st_mtim.tv_sec &&
		context_key.mtime.tv_nsec == st.st_mtim.tv_nsec)
	{
		context_key.checked_at = now;
		*len = context_key.len;
		return context_key.bytes;
	}

	/* Forget the old key before anything can raise. */
	explicit_bzero(&context_key, sizeof(context_key));
	MandantCheckKeyFileMode(context_key_file, &st, "context key file");
	content = MandantReadKeyFile(context_key_file, "mandant.context_key_file", "context key file",
								 &st, CONTEXT_KEY_MAX, &n);
	if (n < CONTEXT_KEY_MIN)
	{
		explicit_bzero(content, n);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("context key file \"%s\" is too short", context_key_file),
				 errdetail("It has %zu bytes; at least %d are needed.", n, CONTEXT_KEY_MIN),
				 errhint("Create it with: openssl rand -hex 32")));
	}
	memcpy(context_key.bytes, content, n);
	explicit_bzero(content, n);
	pfree(content);
	strlcpy(context_key.path, context_key_file, sizeof(context_key.path));
	context_key.dev = st.st_dev;
	context_key.ino = st.st_ino;
	context_key.size = st.st_size;
	context_key.mtime = st.st_mtim;
	context_key.checked_at = now;
	context_key.len = n;
	key_generation++;
	*len = n;
	return context_key.bytes;
}

/*
 * EnvelopeMac computes the base64url HMAC-SHA256 of payload under the
 * context key into mac (ENVELOPE_MAC_LEN + 1 bytes).
 */
static void
EnvelopeMac(const uint8 *key, size_t key_len, const char *payload, size_t len, char *mac)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *text;

	MandantHmacSha256(key, key_len, (const uint8 *) payload, len, digest);
	text = MandantBase64UrlEncode(digest, sizeof(digest));
	strlcpy(mac, text, ENVELOPE_MAC_LEN + 1);
	pfree(text);
}

/*
 * DecodeField decodes a base64url field of at most max bytes of printable
 * ASCII into out (max + 1 bytes); false when it is not one.
 */
static bool
DecodeField(const char *text, size_t len, char *out, size_t max)
{
	unsigned char *bytes;
	size_t		n;

	if (len == 0)
	{
		out[0] = '\0';
		return true;
	}
	bytes = MandantBase64UrlDecode(text, len, &n);
	if (bytes == NULL || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (bytes[i] < 0x20 || bytes[i] > 0x7e)
			return false;
	memcpy(out, bytes, n);
	out[n] = '\0';
	pfree(bytes);
	return true;
}

/*
 * ParseUuidField parses an empty or uuid field into *has and *value.
 */
static bool
ParseUuidField(const char *text, size_t len, bool *has, pg_uuid_t *value)
{
	char		buf[UUID_LEN * 2 + 5];

	*has = len > 0;
	if (len == 0)
		return true;
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	return MandantParseUuid(buf, value);
}

/*
 * ParseEnvelope splits value into its fields and fills *parsed (role
 * unresolved) and role_name (NAMEDATALEN bytes), *expires, and
 * *payload_len (the bytes the MAC covers); false when value is not an
 * envelope of this format.
 */
static bool
ParseEnvelope(const char *value, MandantEnvelope *parsed, char *role_name,
			  int64 *expires, size_t *payload_len)
{
	const char *field[ENVELOPE_FIELDS];
	size_t		flen[ENVELOPE_FIELDS];
	const char *p = value;
	char		buf[64];
	char	   *end;
	const char *bad;
	int			badlen;

	for (int i = 0; i < ENVELOPE_FIELDS; i++)
	{
		const char *dot = strchr(p, '.');

		if ((dot == NULL) != (i == ENVELOPE_FIELDS - 1))
			return false;
		field[i] = p;
		flen[i] = dot ? (size_t) (dot - p) : strlen(p);
		p = dot ? dot + 1 : NULL;
	}
	if (flen[0] != strlen(ENVELOPE_VERSION) || flen[ENVELOPE_FIELDS - 1] != ENVELOPE_MAC_LEN ||
		(strncmp(field[0], ENVELOPE_VERSION, flen[0]) != 0 &&
		 strncmp(field[0], ENVELOPE_OWNER_VERSION, flen[0]) != 0 &&
		 strncmp(field[0], ENVELOPE_ERASE_VERSION, flen[0]) != 0))
		return false;
	*payload_len = field[ENVELOPE_FIELDS - 1] - 1 - value;

	memset(parsed, 0, sizeof(*parsed));
	parsed->erase = strncmp(field[0], ENVELOPE_ERASE_VERSION, flen[0]) == 0;
	parsed->owner_operation = parsed->erase ||
		strncmp(field[0], ENVELOPE_OWNER_VERSION, flen[0]) == 0;
	if (!ParseUuidField(field[1], flen[1], &parsed->has_tenant, &parsed->tenant) ||
		!ParseUuidField(field[2], flen[2], &parsed->has_user, &parsed->user))
		return false;

	/* Scopes: a list, parsed from a copy that ends where the field does. */
	if (flen[3] >= sizeof(buf))
		return false;
	memcpy(buf, field[3], flen[3]);
	buf[flen[3]] = '\0';
	if (!MandantParseScopeList(buf, &parsed->scopes, &bad, &badlen))
		return false;

	/* Expiry: unix seconds. */
	if (flen[4] == 0 || flen[4] > 18 || strspn(field[4], "0123456789") < flen[4])
		return false;
	*expires = strtoll(field[4], &end, 10);

	return DecodeField(field[5], flen[5], role_name, NAMEDATALEN - 1) && role_name[0] != '\0' &&
		DecodeField(field[6], flen[6], parsed->request_id, MANDANT_REQUEST_ID_MAX_BYTES) &&
		DecodeField(field[7], flen[7], parsed->trace_id, MANDANT_REQUEST_ID_MAX_BYTES);
}

/*
 * CheckEnvelopeSetting is the check hook of mandant.context; see the file
 * header for what it accepts (and the node's own SET for Citus, as is).  A parallel worker's copy of the leader's
 * value is parsed, not checked again (its MAC was, and it may have
 * expired since the leader's query began).
 */
static bool
CheckEnvelopeSetting(char **newval, void **extra, GucSource source)
{
	MandantEnvelope parsed;
	MandantEnvelope *copy;
	char		role_name[NAMEDATALEN];
	int64		expires;
	size_t		payload_len;
	const uint8 *key = NULL;
	size_t		key_len = 0;
	char		mac[ENVELOPE_MAC_LEN + 1];
	int64		now = (int64) time(NULL);

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;

	/*
	 * What this node signed and hands Citus (SetEnvelopeLocally) stands for
	 * no context here and needs no check: it may be handed over again later
	 * in the transaction (after a committed subtransaction, or a table
	 * owner's operation) by another current user, or after it expired here.
	 */
	if (forwarding)
	{
		copy = GucExtraAlloc(sizeof(MandantEnvelope));
		if (copy == NULL)
			return false;
		memset(copy, 0, sizeof(*copy));
		copy->own = true;
		*extra = copy;
		return true;
	}

	if (!InitializingParallelWorker && !accept_envelopes)
		return RefuseEnvelope("This server does not take context envelopes: mandant.accept_context_envelopes is off.",
							  "Turn it on in the configuration of Citus workers only; a coordinator sets the context itself.");
	if (!InitializingParallelWorker && source != PGC_S_SESSION)
		return RefuseEnvelope("An envelope is accepted from SET, SET LOCAL or set_config() in a session only, not from a configuration file, ALTER ROLE or ALTER DATABASE, or connection options.",
							  envelope_hint);
	if (!InitializingParallelWorker)
	{
		key = ContextKey(&key_len);
		if (key == NULL)
			return RefuseEnvelope("mandant.context_key_file is not set on this server, so no envelope can be verified.",
								  "Set mandant.context_key_file to the same key file on every node and reload.");

		/*
		 * The envelope verified last, again: same text, key and current user
		 * (the role it names, resolved again), not expired.
		 */
		if (verified_envelope.generation == key_generation &&
			verified_envelope.expires > now &&
			verified_envelope.parsed.role == GetUserId() &&
			strcmp(verified_envelope.text, *newval) == 0 &&
			get_role_oid(verified_envelope.role_name, true) == GetUserId())
		{
			parsed = verified_envelope.parsed;
			parsed.lxid = MyProc->lxid;
			goto accepted;
		}
	}
	if (!ParseEnvelope(*newval, &parsed, role_name, &expires, &payload_len))
		return RefuseEnvelope("The value is not a context envelope of this version of mandant.",
							  envelope_hint);

	if (InitializingParallelWorker)
	{
		parsed.role = InvalidOid;
		parsed.lxid = InvalidLocalTransactionId;
	}
	else
	{
		/* The MAC, under this node's key. */
		EnvelopeMac(key, key_len, *newval, payload_len, mac);
		if (!MandantEqualConstantTime((const uint8 *) mac,
									  (const uint8 *) (*newval + payload_len + 1),
									  ENVELOPE_MAC_LEN))
			return RefuseEnvelope("The envelope's MAC does not verify under this server's context key: it was altered, forged or signed with another key.",
								  "Give every node the same mandant.context_key_file.");

		/* The role: the current user, or one that has its privileges. */
		parsed.role = get_role_oid(role_name, true);
		if (!OidIsValid(parsed.role) ||
			(parsed.role != GetUserId() && !has_privs_of_role(GetUserId(), parsed.role)))
		{
			return RefuseEnvelope(psprintf("The envelope was issued to role \"%s\"; the current user is \"%s\".",
										   role_name, GetUserNameFromId(GetUserId(), false)),
								  "An envelope is good only for the role whose transaction it carries.");
		}

		/* The expiry, in whole seconds. */
		if (expires <= now)
			return RefuseEnvelope(psprintf("The envelope expired %lld seconds ago.",
										   (long long) (now - expires)),
								  "Envelopes live for mandant.context_lifetime seconds; keep the clocks of the nodes in step.");
		parsed.lxid = MyProc->lxid;
		parsed.own = false;

		/* remembered only for exactly the role it names */
		if (parsed.role == GetUserId() && strlen(*newval) < sizeof(verified_envelope.text))
		{
			verified_envelope.generation = key_generation;
			verified_envelope.expires = expires;
			strlcpy(verified_envelope.role_name, role_name, sizeof(verified_envelope.role_name));
			verified_envelope.parsed = parsed;
			strlcpy(verified_envelope.text, *newval, sizeof(verified_envelope.text));
		}
	}

accepted:
	parsed.own = false;

	copy = GucExtraAlloc(sizeof(MandantEnvelope));
	if (copy == NULL)
		return false;
	*copy = parsed;
	*extra = copy;
	return true;
}

/*
 * AssignEnvelopeSetting publishes the parsed envelope (NULL when empty, or
 * when this node set it for the workers).
 */
static void
AssignEnvelopeSetting(const char *newval, void *extra)
{
	const MandantEnvelope *envelope = (const MandantEnvelope *) extra;

	/* what this node hands Citus is no context of its own */
	MandantEnvelopeReceived = envelope != NULL && !envelope->own ? envelope : NULL;
}

/*
 * MandantDefineEnvelopeVariables defines mandant.context and its key and
 * lifetime settings; called once from _PG_init.
 */
void
MandantDefineEnvelopeVariables(void)
{
	RegisterSubXactCallback(EnvelopeSubXactCallback, NULL);

	DefineCustomStringVariable(MANDANT_GUC_ENVELOPE,
							   gettext_noop("Signed copy of the tenant context that Citus forwards to its workers (set by mandant itself)."),
							   NULL,
							   &envelope_text,
							   "",
							   PGC_USERSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE |
							   GUC_DISALLOW_IN_FILE | GUC_DISALLOW_IN_AUTO_FILE,
							   CheckEnvelopeSetting, AssignEnvelopeSetting, NULL);

	DefineCustomStringVariable("mandant.context_key_file",
							   gettext_noop("File whose bytes are the key that signs and verifies context envelopes (the same file on every node of a Citus cluster)."),
							   gettext_noop("Relative paths are relative to the data directory. The file must hold at least 32 bytes and not be readable by others."),
							   &context_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("mandant.accept_context_envelopes",
							 gettext_noop("Whether this server takes the context from an envelope (on for Citus workers only)."),
							 gettext_noop("Off, an envelope is refused: on a node that clients use, an envelope read from a log could otherwise be replayed by another session of its role."),
							 &accept_envelopes,
							 false,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("mandant.context_lifetime",
							gettext_noop("Seconds for which a context envelope may be installed on a node after it was signed."),
							NULL,
							&context_lifetime,
							300, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);
}

/*
 * SignEnvelope returns the envelope of a context, issued to the current
 * user, expiring context_lifetime seconds from when it was signed: the
 * one signed last when it is of the same context, user and key and younger
 * than a tenth of the lifetime (signed_envelope), else a new one.
 */
static const char *
SignEnvelope(const uint8 *key, size_t key_len, bool owner_operation, bool erase,
			 const pg_uuid_t *tenant, const pg_uuid_t *user, int scopes, const char *request_id,
			 const char *trace_id)
{
	StringInfoData buf;
	const char *role;
	char		mac[ENVELOPE_MAC_LEN + 1];
	int64		now = (int64) time(NULL);

	if (request_id == NULL)
		request_id = "";
	if (trace_id == NULL)
		trace_id = "";
	if (signed_envelope.generation == key_generation &&
		signed_envelope.role == GetUserId() &&
		now >= signed_envelope.signed_at &&
		now - signed_envelope.signed_at < context_lifetime / 10 &&
		signed_envelope.owner_operation == owner_operation &&
		signed_envelope.erase == erase &&
		signed_envelope.has_tenant == (tenant != NULL) &&
		(tenant == NULL || memcmp(&signed_envelope.tenant, tenant, sizeof(pg_uuid_t)) == 0) &&
		signed_envelope.has_user == (user != NULL) &&
		(user == NULL || memcmp(&signed_envelope.user, user, sizeof(pg_uuid_t)) == 0) &&
		signed_envelope.scopes == scopes &&
		strcmp(signed_envelope.request_id, request_id) == 0 &&
		strcmp(signed_envelope.trace_id, trace_id) == 0)
		return signed_envelope.text;

	role = GetUserNameFromId(GetUserId(), false);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s.%s.%s.%s.%lld.%s.%s.%s",
					 erase ? ENVELOPE_ERASE_VERSION :
					 owner_operation ? ENVELOPE_OWNER_VERSION : ENVELOPE_VERSION,
					 tenant ? MandantUuidText(tenant) : "",
					 user ? MandantUuidText(user) : "",
					 MandantScopeList(scopes),
					 (long long) now + context_lifetime,
					 MandantBase64UrlEncode((const unsigned char *) role, strlen(role)),
					 MandantBase64UrlEncode((const unsigned char *) request_id, strlen(request_id)),
					 MandantBase64UrlEncode((const unsigned char *) trace_id, strlen(trace_id)));
	EnvelopeMac(key, key_len, buf.data, buf.len, mac);
	appendStringInfo(&buf, ".%s", mac);
	if (buf.len >= (int) sizeof(signed_envelope.text))
		elog(ERROR, "a context envelope of %d bytes is longer than %d", buf.len, ENVELOPE_MAX_LEN - 1);

	memset(&signed_envelope, 0, sizeof(signed_envelope));
	signed_envelope.role = GetUserId();
	signed_envelope.signed_at = now;
	signed_envelope.owner_operation = owner_operation;
	signed_envelope.erase = erase;
	signed_envelope.has_tenant = tenant != NULL;
	if (tenant != NULL)
		signed_envelope.tenant = *tenant;
	signed_envelope.has_user = user != NULL;
	if (user != NULL)
		signed_envelope.user = *user;
	signed_envelope.scopes = scopes;
	strlcpy(signed_envelope.request_id, request_id, sizeof(signed_envelope.request_id));
	strlcpy(signed_envelope.trace_id, trace_id, sizeof(signed_envelope.trace_id));
	memcpy(signed_envelope.text, buf.data, buf.len + 1);
	signed_envelope.generation = key_generation;
	pfree(buf.data);
	return signed_envelope.text;
}

/*
 * SetEnvelopeLocally runs SET LOCAL mandant.context with
 * citus.propagate_set_commands at 'local' for that statement alone, so
 * that Citus forwards it (the caller's own value of that setting is back
 * when this returns).  The envelope holds no quote (uuids, digits, scope
 * names and base64url).  With workers_also, that SQL of mandant's (more
 * SET LOCALs of search_path and standard_conforming_strings) goes to the
 * workers in the same forwarded text: Citus hands over the whole query
 * string of a SET.  In a transaction block this node runs the envelope's
 * SET alone; outside one the DO block runs them all here too, so their
 * values here are saved first and back when this returns (a SECURITY
 * DEFINER caller keeps its own search_path).
 *
 * In a transaction block the statement goes straight to ProcessUtility
 * (Citus's hook forwards it with the text given here).  Outside one, Citus
 * forwards a SET LOCAL only from a function it sees running, and a plpgsql
 * expression (PERFORM mandant.delete_tenant_rows(...)) runs without its
 * executor: a DO block run through SPI is one it always sees.
 */
static void
SetEnvelopeLocally(const char *envelope, const char *workers_also)
{
	int			nest_level = NewGUCNestLevel();
	char	   *sql = psprintf("SET LOCAL %s = '%s'%s%s", MANDANT_GUC_ENVELOPE, envelope,
							   workers_also != NULL ? "; " : "",
							   workers_also != NULL ? workers_also : "");
	bool		in_block = IsTransactionBlock();
	bool		outer_forwarding;

	(void) set_config_option(CITUS_PROPAGATE_SET, "local", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (!in_block && workers_also != NULL)
	{
		(void) set_config_option("search_path", GetConfigOption("search_path", false, false),
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("standard_conforming_strings",
								 GetConfigOption("standard_conforming_strings", false, false),
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
	if (!in_block)
	{
		sql = psprintf("DO $mandant$BEGIN %s; END$mandant$", sql);
		SPI_connect();
	}
	outer_forwarding = forwarding;
	forwarding = true;
	PG_TRY();
	{
		if (in_block)
		{
			VariableSetStmt *stmt = makeNode(VariableSetStmt);
			A_Const    *value = makeNode(A_Const);
			PlannedStmt *pstmt = makeNode(PlannedStmt);

			value->val.sval.type = T_String;
			value->val.sval.sval = pstrdup(envelope);
			value->location = -1;
			stmt->kind = VAR_SET_VALUE;
			stmt->name = MANDANT_GUC_ENVELOPE;
			stmt->args = list_make1(value);
			stmt->is_local = true;
			pstmt->commandType = CMD_UTILITY;
			pstmt->utilityStmt = (Node *) stmt;
			pstmt->stmt_location = -1;
			ProcessUtility(pstmt, sql, false, PROCESS_UTILITY_QUERY, NULL, NULL,
						   None_Receiver, NULL);
		}
		else
		{
			int			rc = SPI_execute(sql, false, 0);

			if (rc != SPI_OK_UTILITY)
				elog(ERROR, "SPI_execute of SET LOCAL %s returned %s", MANDANT_GUC_ENVELOPE,
					 SPI_result_code_string(rc));
		}
	}
	PG_FINALLY();
	{
		forwarding = outer_forwarding;
	}
	PG_END_TRY();
	if (!in_block)
		SPI_finish();
	AtEOXact_GUC(true, nest_level);
	pfree(sql);
	forwarded_level = GetCurrentTransactionNestLevel();
	forwarded_lxid = MyProc->lxid;
	/* an envelope of older request ids still waits for its successor */
	forward_pending = resign_pending;
}

/*
 * MandantForwardingEnvelope says whether mandant is running its own SETs
 * for Citus to forward (SetEnvelopeLocally), so that the utility hook lets
 * them through (citus.c).
 */
bool
MandantForwardingEnvelope(void)
{
	return forwarding;
}

/*
 * EnvelopeSubXactCallback notes when a subtransaction that handed Citus an
 * envelope commits, so that it is handed over again (see above); when one
 * aborts, PostgreSQL and Citus both go back to the parent's.
 */
static void
EnvelopeSubXactCallback(SubXactEvent event, SubTransactionId subid,
						SubTransactionId parent_subid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (forwarded_lxid != MyProc->lxid)
		return;					/* nothing handed over in this transaction */
	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (forwarded_level >= level || (forward_pending && pending_level >= level))
		{
			forward_pending = true;
			pending_level = level - 1;
			pending_lxid = MyProc->lxid;
		}
		forwarded_level = Min(forwarded_level, level - 1);
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		if (forward_pending && pending_level >= level)
			forward_pending = false;
		/*
		 * Citus goes back to the parent's envelope, which may carry
		 * older request ids than app.request_id and app.trace_id, set
		 * before the subtransaction: sign the own context again.
		 */
		if (forwarded_level >= level && resign_lxid == MyProc->lxid)
		{
			forward_pending = true;
			resign_pending = true;
			pending_level = 0;
			pending_lxid = MyProc->lxid;
		}
		forwarded_level = Min(forwarded_level, level - 1);
	}
}

/*
 * MandantForwardPendingEnvelope hands Citus the envelope in force again
 * when a committed subtransaction made Citus forget it; called before
 * every statement by mandant's executor and utility hooks, where it costs
 * one test; also after app.request_id or app.trace_id changed
 * (MandantNoteRequestIdsChange).
 */
void
MandantForwardPendingEnvelope(void)
{
	if (likely(!forward_pending) || forwarding)
		return;
	forward_pending = false;
	if (pending_lxid != MyProc->lxid || IsInParallelMode() || !MandantCitusInstalled())
	{
		resign_pending = false;
		return;
	}
	if (resign_pending)
	{
		/*
		 * Signed only for the role that assigned the context, outside any
		 * function that runs as another (SECURITY DEFINER, a table
		 * owner's operation): theirs would be an envelope of the caller's
		 * context for a role that may read it on a worker.
		 */
		if (GetUserId() != resign_role || InLocalUserIdChange() || InSecurityRestrictedOperation())
		{
			forward_pending = true;
			return;
		}
		resign_pending = false;
		MandantForwardOwnContext();
		return;
	}
	MandantForwardRestoredContext();
}

/*
 * MandantNoteRequestIdsChange is called when app.request_id or
 * app.trace_id is assigned: if this transaction handed Citus an envelope,
 * the next statement hands it one with the new ids
 * (MandantForwardPendingEnvelope), so that the workers record what this
 * node would.  Top level: an aborted subtransaction assigns the old value
 * again, which comes here too.
 */
void
MandantNoteRequestIdsChange(void)
{
	if (MyProc == NULL || MyProc->lxid == InvalidLocalTransactionId ||
		forwarded_lxid != MyProc->lxid || resign_lxid != MyProc->lxid)
		return;
	forward_pending = true;
	resign_pending = true;
	pending_level = 0;
	pending_lxid = MyProc->lxid;
}

/*
 * MandantForwardContext hands the context just assigned on this node to
 * Citus's worker connections: a new envelope, or an empty one when the
 * context was cleared.  Nothing happens where Citus is not installed;
 * where it is and no key is configured, the session is warned once that
 * the workers see no tenant.  Nor inside a security-restricted operation:
 * a context assigned there (usertable.c's "outside any tenant" as a
 * table's owner) is undone with the operation's GUC nest level, while
 * Citus would keep replaying the SET LOCAL to the workers.
 */
void
MandantForwardContext(const pg_uuid_t *tenant, const pg_uuid_t *user, int scopes,
					  const char *request_id, const char *trace_id)
{
	const uint8 *key;
	size_t		key_len;

	if (InSecurityRestrictedOperation() || !MandantCitusInstalled())
		return;
	key = ContextKey(&key_len);
	if (key == NULL)
	{
		if (!warned_no_key)
		{
			warned_no_key = true;
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("the tenant context does not reach the Citus workers"),
					 errdetail("Citus is installed in this database, but mandant.context_key_file is not set, so the context cannot be signed for the workers, whose row level security then sees no tenant."),
					 errhint("Set mandant.context_key_file to the same key file on every node and reload (README, \"Scale out\").")));
		}
		return;
	}
	resign_pending = false;
	if (tenant == NULL && user == NULL && scopes == 0)
	{
		/* a context cleared here is cleared on the workers too */
		resign_lxid = InvalidLocalTransactionId;
		if (forwarded_lxid == MyProc->lxid)
			SetEnvelopeLocally("", NULL);
		return;
	}
	resign_role = GetUserId();
	resign_lxid = MyProc->lxid;
	SetEnvelopeLocally(SignEnvelope(key, key_len, false, false, tenant, user, scopes, request_id,
									trace_id), NULL);
}

/*
 * MandantForwardOwnerContext hands Citus's worker connections an envelope
 * of tenant (may be NULL) for the current user, the owner of a tenant
 * table that mandant works on as that owner (usertable.c): the owner's
 * connections to the workers, where row level security stays forced,
 * then see that tenant's rows; with erase, the owner may also delete the
 * tenant's rows of mandant's distributed history tables (history.c).  Unlike MandantForwardContext it runs inside
 * the security-restricted operation; MandantForwardRestoredContext hands
 * the workers the caller's envelope again when the operation ends.
 * Returns whether it forwarded anything.
 */
bool
MandantForwardOwnerContext(const pg_uuid_t *tenant, bool erase)
{
	const uint8 *key;
	size_t		key_len;

	if (!MandantCitusInstalled() || (key = ContextKey(&key_len)) == NULL)
		return false;
	/*
	 * Under an erase envelope the owner's connections run mandant's
	 * statements on the tenant's history, which Citus deparses with names
	 * of pg_catalog left unqualified ('...'::uuid) and literals written for
	 * standard_conforming_strings: with the owner's own settings (ALTER
	 * ROLE ... SET) a type or function of the owner's would run inside
	 * them, with the envelope's rights, or a backslash in a request id end
	 * a literal.  So the workers resolve names in pg_catalog only and read
	 * literals as standard until the caller's envelope is back
	 * (MandantForwardRestoredContext).
	 */
	SetEnvelopeLocally(tenant != NULL ? SignEnvelope(key, key_len, true, erase, tenant, NULL, 0, NULL, NULL) : "",
					   erase ? ERASE_SETTINGS : NULL);
	if (erase)
		pinned_settings_lxid = MyProc->lxid;
	return true;
}

/*
 * MandantForwardRestoredContext hands Citus's worker connections this
 * node's envelope as it is now, again: after a table owner's operation
 * (its GUC nest level has ended, taking the owner's envelope back here, so
 * Citus must stop replaying it) and after a committed subtransaction
 * (which Citus forgot, MandantForwardPendingEnvelope).
 */
void
MandantForwardRestoredContext(void)
{
	const char *value = GetConfigOption(MANDANT_GUC_ENVELOPE, false, false);
	bool		pinned = pinned_settings_lxid == MyProc->lxid;

	pinned_settings_lxid = InvalidLocalTransactionId;
	SetEnvelopeLocally(value != NULL ? value : "", pinned ? RESTORED_SETTINGS : NULL);
}

/*
 * MandantEnvelopeErasing returns the tenant whose rows of mandant's
 * distributed history tables the envelope in force lets the current user
 * delete: an e1 envelope accepted in this transaction for exactly that
 * user (delete_tenant's erasure on a worker, history.c), else NULL; never
 * for a role that bypasses row level security, which the policy limiting
 * the deletion to the tenant's rows would not hold (a superuser deletes
 * what the statement names).
 */
const pg_uuid_t *
MandantEnvelopeErasing(void)
{
	const MandantEnvelope *envelope = MandantEnvelopeReceived;

	if (envelope == NULL || !envelope->erase || !envelope->has_tenant ||
		envelope->lxid != MyProc->lxid || envelope->role != GetUserId())
		return NULL;
	/* the tenant's rows only: the log's policy must hold the role */
	if (!superuser() && has_bypassrls_privilege(GetUserId()))
		return NULL;
	return &envelope->tenant;
}
