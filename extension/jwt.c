/*-------------------------------------------------------------------------
 *
 * jwt.c
 *		Access tokens: RS256 signing and verification, the key set, and
 *		mandant.authenticate().
 *
 * Tokens are compact JWS (RFC 7515) signed with RSASSA-PKCS1-v1_5 SHA-256
 * through OpenSSL's libcrypto.  The signing key is read from the PEM file
 * named by mandant.jwt_private_key_file, the verification keys from
 * mandant.jwt_public_key_file (any number of PEM public keys, so that the
 * keys of a rotation verify side by side) plus the signing key's own
 * public half.  Both settings are superuser-only; no key lives in a table.
 * Every key is known by its RFC 7638 thumbprint, which is the "kid" of the
 * tokens it signs and of its entry in mandant.jwks().
 *
 * Keys are loaded on first use and again whenever the setting or the
 * file (inode, size, mtime) changes, so rotating is: write the new files,
 * reload the configuration.
 *
 * Verification trusts nothing before the signature checks out: the header
 * is decoded with PostgreSQL's JSON lexer into a handful of known fields
 * (duplicates refused), "alg" must be exactly RS256 (so "none" and HS256
 * are refused whatever the key), the key is chosen by "kid" among the
 * configured ones, and only then is the payload parsed.  Every refusal is
 * MD051 (invalid), MD052 (expired) or MD053 (revoked), with the reason in
 * the detail.
 *
 * mandant.authenticate() adds what only the database knows: the jti is not
 * on the denylist, the user is active with the token's token_version and
 * still holds the token's role in its tenant (or the service account is
 * active), the tenant may be entered.  Then it sets tenant, user and
 * scopes for the rest of the transaction.  All lookups go straight through
 * the primary key indexes (tenancy.c), with a fresh snapshot so that a
 * revocation committed a moment ago counts.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/jwt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/jsonapi.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "mandant.h"

/* Longest token accepted (a mandant token is well under 1 kB). */
#define JWT_MAX_BYTES		8192
/* Clock skew tolerated for exp, nbf and iat, in seconds. */
#define JWT_LEEWAY			30
/* Verification keys beyond the signing key. */
#define JWT_MAX_KEYS		16
/* A base64url SHA-256 thumbprint has 43 characters. */
#define JWT_KID_LEN			43

PG_FUNCTION_INFO_V1(mandant_jwt_sign);
PG_FUNCTION_INFO_V1(mandant_jwt_verify);
PG_FUNCTION_INFO_V1(mandant_jwks);
PG_FUNCTION_INFO_V1(mandant_authenticate);
PG_FUNCTION_INFO_V1(mandant_random_token);
PG_FUNCTION_INFO_V1(mandant_random_bytes);

/* Settings (superuser-only). */
static char *private_key_file = NULL;
static char *public_key_file = NULL;
static char *jwt_issuer = NULL;
static int	access_token_ttl = 900;
static int	refresh_token_ttl = 7 * 24 * 3600;

/* A loaded key and its thumbprint. */
typedef struct JwtKey
{
	EVP_PKEY   *pkey;
	char		kid[JWT_KID_LEN + 1];
} JwtKey;

/* What a key file was when it was loaded, to notice changes. */
typedef struct KeyFileStamp
{
	char	   *path;			/* in TopMemoryContext; NULL: not loaded */
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec mtime;
} KeyFileStamp;

static KeyFileStamp signing_stamp;
static JwtKey signing_key;
static KeyFileStamp public_stamp;
static JwtKey public_keys[JWT_MAX_KEYS];
static int	npublic_keys = 0;

/* Fields read from a token's header or payload. */
typedef enum JwtFieldKind
{
	JWT_STRING,
	JWT_NUMBER,
	JWT_STRING_ARRAY
} JwtFieldKind;

typedef struct JwtField
{
	const char *name;
	JwtFieldKind kind;
	bool		present;
	char	   *string;			/* JWT_STRING */
	double		number;			/* JWT_NUMBER */
	List	   *strings;		/* JWT_STRING_ARRAY: list of char * */
} JwtField;

#define FIELD(n, k) {.name = (n), .kind = (k)}

/* State of the JSON walk that fills the fields. */
typedef struct JwtFieldParse
{
	JwtField   *fields;
	int			nfields;
	int			depth;			/* 1 inside the top-level object */
	bool		is_object;
	JwtField   *current;		/* field whose value is being read */
	bool		bad_value;		/* a known field had the wrong type */
	const char *duplicate;		/* a known field given twice */
} JwtFieldParse;

/* Claims of a verified token. */
typedef struct JwtClaims
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
} JwtClaims;

/* ---- settings --------------------------------------------------------- */

/*
 * MandantDefineTokenVariables defines the settings of token issuing and
 * verification.  Called from _PG_init.
 */
void
MandantDefineTokenVariables(void)
{
	DefineCustomStringVariable("mandant.jwt_private_key_file",
							   gettext_noop("PEM file with the RSA private key that signs access tokens."),
							   gettext_noop("Relative paths are relative to the data directory. The file must not be readable by others."),
							   &private_key_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("mandant.jwt_public_key_file",
							   gettext_noop("PEM file with the RSA public keys that verify access tokens, besides the signing key's."),
							   gettext_noop("List the previous key here while rotating, until its tokens have expired."),
							   &public_key_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("mandant.jwt_issuer",
							   gettext_noop("The iss claim of access tokens, checked on verification."),
							   NULL, &jwt_issuer, "mandant",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.access_token_ttl",
							gettext_noop("Lifetime of access tokens."),
							NULL, &access_token_ttl, 900, 60, 24 * 3600,
							PGC_SUSET, GUC_UNIT_S | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.refresh_token_ttl",
							gettext_noop("Lifetime of refresh tokens."),
							NULL, &refresh_token_ttl, 7 * 24 * 3600, 300, 90 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}

/* ---- base64url ---------------------------------------------------------- */

static const char b64url_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* MandantBase64UrlEncode encodes len bytes without padding. */
char *
MandantBase64UrlEncode(const unsigned char *data, size_t len)
{
	char	   *out = palloc((len + 2) / 3 * 4 + 1);
	char	   *p = out;
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];

		*p++ = b64url_alphabet[(v >> 18) & 63];
		*p++ = b64url_alphabet[(v >> 12) & 63];
		*p++ = b64url_alphabet[(v >> 6) & 63];
		*p++ = b64url_alphabet[v & 63];
	}
	if (i < len)
	{
		uint32		v = data[i] << 16;

		if (i + 1 < len)
			v |= data[i + 1] << 8;
		*p++ = b64url_alphabet[(v >> 18) & 63];
		*p++ = b64url_alphabet[(v >> 12) & 63];
		if (i + 1 < len)
			*p++ = b64url_alphabet[(v >> 6) & 63];
	}
	*p = '\0';
	return out;
}

static int
Base64UrlValue(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * MandantBase64UrlDecode decodes unpadded base64url strictly (no padding,
 * no other characters, no stray bits); returns NULL when the input is not
 * such a string.
 */
unsigned char *
MandantBase64UrlDecode(const char *text, size_t len, size_t *outlen)
{
	unsigned char *out;
	size_t		n = 0;
	uint32		acc = 0;
	int			bits = 0;

	if (len % 4 == 1)
		return NULL;
	out = palloc(len * 3 / 4 + 1);
	for (size_t i = 0; i < len; i++)
	{
		int			v = Base64UrlValue(text[i]);

		if (v < 0)
		{
			pfree(out);
			return NULL;
		}
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[n++] = (acc >> bits) & 0xFF;
		}
	}
	if (bits > 0 && (acc & ((1 << bits) - 1)) != 0)
	{
		pfree(out);
		return NULL;
	}
	*outlen = n;
	return out;
}

/* ---- keys --------------------------------------------------------------- */

static char *
OpenSslError(void)
{
	unsigned long code = ERR_get_error();
	char		buf[256];

	ERR_clear_error();
	if (code == 0)
		return pstrdup("no further detail");
	ERR_error_string_n(code, buf, sizeof(buf));
	return pstrdup(buf);
}

/* BignumToBase64Url encodes an RSA parameter for a JWK. */
static char *
BignumToBase64Url(const BIGNUM *bn)
{
	int			len = BN_num_bytes(bn);
	unsigned char *buf = palloc(len > 0 ? len : 1);
	char	   *out;

	BN_bn2bin(bn, buf);
	out = MandantBase64UrlEncode(buf, len);
	pfree(buf);
	return out;
}

/*
 * RsaParameters returns the modulus and public exponent of an RSA key,
 * base64url encoded.
 */
static void
RsaParameters(EVP_PKEY *pkey, char **n, char **e)
{
	BIGNUM	   *bn_n = NULL;
	BIGNUM	   *bn_e = NULL;

	if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &bn_n) ||
		!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &bn_e))
		elog(ERROR, "could not read RSA key parameters: %s", OpenSslError());
	*n = BignumToBase64Url(bn_n);
	*e = BignumToBase64Url(bn_e);
	BN_free(bn_n);
	BN_free(bn_e);
}

/* Thumbprint computes the RFC 7638 SHA-256 thumbprint of an RSA key. */
static void
Thumbprint(EVP_PKEY *pkey, char *kid)
{
	char	   *n;
	char	   *e;
	char	   *canonical;
	unsigned char digest[32];
	unsigned int digest_len;
	char	   *encoded;

	RsaParameters(pkey, &n, &e);
	canonical = psprintf("{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e, n);
	if (!EVP_Digest(canonical, strlen(canonical), digest, &digest_len, EVP_sha256(), NULL))
		elog(ERROR, "could not hash a key: %s", OpenSslError());
	encoded = MandantBase64UrlEncode(digest, digest_len);
	strlcpy(kid, encoded, JWT_KID_LEN + 1);
}

/* CheckRsaKey refuses keys that are not RSA of at least 2048 bits. */
static void
CheckRsaKey(EVP_PKEY *pkey, const char *path)
{
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pkey) < 2048)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key in \"%s\" is not an RSA key of at least 2048 bits", path),
				 errdetail("Access tokens are signed with RS256."),
				 errhint("Generate one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072")));
}

/* StampMatches: the file is still the one the key was loaded from. */
static bool
StampMatches(const KeyFileStamp *stamp, const char *path, const struct stat *st)
{
	return stamp->path != NULL && strcmp(stamp->path, path) == 0 &&
		stamp->dev == st->st_dev && stamp->ino == st->st_ino &&
		stamp->size == st->st_size &&
		stamp->mtime.tv_sec == st->st_mtim.tv_sec &&
		stamp->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void
SetStamp(KeyFileStamp *stamp, const char *path, const struct stat *st)
{
	if (stamp->path)
		pfree(stamp->path);
	stamp->path = MemoryContextStrdup(TopMemoryContext, path);
	stamp->dev = st->st_dev;
	stamp->ino = st->st_ino;
	stamp->size = st->st_size;
	stamp->mtime = st->st_mtim;
}

/* StatKeyFile stats a key file, with a clear error when it cannot. */
static void
StatKeyFile(const char *path, const char *setting, struct stat *st)
{
	if (stat(path, st) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not read token key file \"%s\": %m", path),
				 errdetail("The file is named by %s.", setting),
				 errhint("Point %s at a readable PEM file and reload the configuration.", setting)));
}

static BIO *
OpenKeyFile(const char *path)
{
	BIO		   *bio = BIO_new_file(path, "r");

	if (bio == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not open token key file \"%s\"", path),
				 errdetail("%s", OpenSslError())));
	return bio;
}

/*
 * SigningKey returns the signing key, (re)loading it when the setting or
 * the file changed.  The file must not be accessible to others (nor to the
 * group unless it belongs to root), as PostgreSQL demands of ssl_key_file.
 */
static JwtKey *
SigningKey(void)
{
	struct stat st;
	BIO		   *bio;
	EVP_PKEY   *pkey;
	char		kid[JWT_KID_LEN + 1];

	if (private_key_file == NULL || private_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no token signing key is configured"),
				 errdetail("mandant.jwt_private_key_file is not set."),
				 errhint("Set mandant.jwt_private_key_file to a PEM RSA private key (superuser) and reload; `make run` generates a development key.")));
	StatKeyFile(private_key_file, "mandant.jwt_private_key_file", &st);
	if (StampMatches(&signing_stamp, private_key_file, &st))
		return &signing_key;

	if ((st.st_mode & S_IRWXO) != 0 || ((st.st_mode & S_IRWXG) != 0 && st.st_uid != 0))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("token signing key file \"%s\" has group or world access", private_key_file),
				 errdetail("Its mode is %04o.", (unsigned int) (st.st_mode & 07777)),
				 errhint("chmod 600 the file (or 640 when it belongs to root).")));

	bio = OpenKeyFile(private_key_file);
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not load the token signing key from \"%s\"", private_key_file),
				 errdetail("%s", OpenSslError()),
				 errhint("The file must hold an unencrypted PEM private key.")));
	PG_TRY();
	{
		CheckRsaKey(pkey, private_key_file);
		Thumbprint(pkey, kid);
	}
	PG_CATCH();
	{
		EVP_PKEY_free(pkey);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (signing_key.pkey)
		EVP_PKEY_free(signing_key.pkey);
	signing_key.pkey = pkey;
	memcpy(signing_key.kid, kid, sizeof(kid));
	SetStamp(&signing_stamp, private_key_file, &st);
	return &signing_key;
}

static void
FreePublicKeys(void)
{
	for (int i = 0; i < npublic_keys; i++)
		EVP_PKEY_free(public_keys[i].pkey);
	npublic_keys = 0;
}

/*
 * LoadPublicKeys (re)loads the keys of mandant.jwt_public_key_file when the
 * setting or the file changed.
 */
static void
LoadPublicKeys(void)
{
	struct stat st;
	BIO		   *bio;
	EVP_PKEY   *pkey;

	if (public_key_file == NULL || public_key_file[0] == '\0')
	{
		FreePublicKeys();
		if (public_stamp.path)
			pfree(public_stamp.path);
		public_stamp.path = NULL;
		return;
	}
	StatKeyFile(public_key_file, "mandant.jwt_public_key_file", &st);
	if (StampMatches(&public_stamp, public_key_file, &st))
		return;

	FreePublicKeys();
	if (public_stamp.path)
		pfree(public_stamp.path);
	public_stamp.path = NULL;
	bio = OpenKeyFile(public_key_file);
	PG_TRY();
	{
		while ((pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) != NULL)
		{
			if (npublic_keys == JWT_MAX_KEYS)
			{
				EVP_PKEY_free(pkey);
				ereport(ERROR,
						(errcode(ERRCODE_CONFIG_FILE_ERROR),
						 errmsg("too many keys in \"%s\"", public_key_file),
						 errdetail("At most %d public keys are read.", JWT_MAX_KEYS),
						 errhint("Remove the keys whose tokens have expired.")));
			}
			public_keys[npublic_keys++].pkey = pkey;
			CheckRsaKey(pkey, public_key_file);
			Thumbprint(pkey, public_keys[npublic_keys - 1].kid);
		}
	}
	PG_CATCH();
	{
		BIO_free(bio);
		FreePublicKeys();
		PG_RE_THROW();
	}
	PG_END_TRY();
	BIO_free(bio);
	ERR_clear_error();			/* the end of the file reads as an error */
	if (npublic_keys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no public key found in \"%s\"", public_key_file),
				 errdetail("The file is named by mandant.jwt_public_key_file."),
				 errhint("Concatenate the PEM public keys (BEGIN PUBLIC KEY) of the keys that may verify tokens.")));
	SetStamp(&public_stamp, public_key_file, &st);
}

/*
 * VerificationKeys returns the keys that verify tokens: the signing key's
 * public half (if a signing key is configured) and the public keys, each
 * once.  *n is set to their number.
 */
static JwtKey **
VerificationKeys(int *n)
{
	JwtKey	  **keys = palloc((JWT_MAX_KEYS + 1) * sizeof(JwtKey *));

	*n = 0;
	if (private_key_file != NULL && private_key_file[0] != '\0')
		keys[(*n)++] = SigningKey();
	LoadPublicKeys();
	for (int i = 0; i < npublic_keys; i++)
	{
		if (*n > 0 && strcmp(keys[0]->kid, public_keys[i].kid) == 0)
			continue;
		keys[(*n)++] = &public_keys[i];
	}
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no token keys are configured"),
				 errdetail("Neither mandant.jwt_private_key_file nor mandant.jwt_public_key_file is set."),
				 errhint("Set them (superuser) and reload; `make run` generates a development key pair.")));
	return keys;
}

/* ---- reading token JSON ------------------------------------------------- */

#if PG_VERSION_NUM >= 160000
#define JSON_ACTION_RESULT JsonParseErrorType
#define JSON_ACTION_DONE return JSON_SUCCESS
#else
#define JSON_ACTION_RESULT void
#define JSON_ACTION_DONE return
#endif

static JSON_ACTION_RESULT
FieldObjectStart(void *state)
{
	JwtFieldParse *parse = state;

	if (parse->depth == 0)
		parse->is_object = true;
	else if (parse->depth <= 2 && parse->current)
		parse->bad_value = true;	/* an object where a known field's value is */
	parse->depth++;
	JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
FieldObjectEnd(void *state)
{
	((JwtFieldParse *) state)->depth--;
	JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
FieldArrayStart(void *state)
{
	JwtFieldParse *parse = state;

	if (parse->depth == 1 && parse->current && parse->current->kind != JWT_STRING_ARRAY)
		parse->bad_value = true;
	if (parse->depth == 2 && parse->current)
		parse->bad_value = true;	/* nested inside a string array */
	parse->depth++;
	JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
FieldArrayEnd(void *state)
{
	((JwtFieldParse *) state)->depth--;
	JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
FieldStart(void *state, char *fname, bool isnull)
{
	JwtFieldParse *parse = state;

	if (parse->depth != 1)
		JSON_ACTION_DONE;
	parse->current = NULL;
	for (int i = 0; i < parse->nfields; i++)
	{
		if (strcmp(parse->fields[i].name, fname) != 0)
			continue;
		if (parse->fields[i].present)
			parse->duplicate = parse->fields[i].name;
		parse->fields[i].present = true;
		parse->current = &parse->fields[i];
	}
	JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
FieldScalar(void *state, char *token, JsonTokenType type)
{
	JwtFieldParse *parse = state;
	JwtField   *field = parse->current;

	if (parse->depth == 0)
		JSON_ACTION_DONE;		/* a scalar document: is_object stays false */
	if (field == NULL || parse->depth > 2)
		JSON_ACTION_DONE;
	if (parse->depth == 2)
	{
		if (field->kind == JWT_STRING_ARRAY && type == JSON_TOKEN_STRING)
			field->strings = lappend(field->strings, token);
		else
			parse->bad_value = true;
	}
	else if (field->kind == JWT_STRING && type == JSON_TOKEN_STRING)
		field->string = token;
	else if (field->kind == JWT_NUMBER && type == JSON_TOKEN_NUMBER)
		field->number = strtod(token, NULL);
	else
		parse->bad_value = true;
	JSON_ACTION_DONE;
}

/*
 * ReadTokenPart decodes one base64url part of a token and reads the known
 * fields of its JSON object.  Returns NULL when it is fine, else why not.
 */
static const char *
ReadTokenPart(const char *part, size_t len, JwtField *fields, int nfields, char **json_out)
{
	size_t		json_len;
	char	   *json = (char *) MandantBase64UrlDecode(part, len, &json_len);
	JsonLexContext *lex;
	JsonSemAction sem = {0};
	JwtFieldParse parse = {0};
	JsonParseErrorType error;

	if (json == NULL)
		return "it is not base64url";
	json[json_len] = '\0';
	if (strlen(json) != json_len || !pg_verifymbstr(json, json_len, true))
		return "it is not valid text";

	/* PostgreSQL 17 added the leading JsonLexContext argument. */
#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, json, json_len, GetDatabaseEncoding(), true);
#else
	lex = makeJsonLexContextCstringLen(json, json_len, GetDatabaseEncoding(), true);
#endif
	parse.fields = fields;
	parse.nfields = nfields;
	sem.semstate = &parse;
	sem.object_start = FieldObjectStart;
	sem.object_end = FieldObjectEnd;
	sem.array_start = FieldArrayStart;
	sem.array_end = FieldArrayEnd;
	sem.object_field_start = FieldStart;
	sem.scalar = FieldScalar;
	error = pg_parse_json(lex, &sem);
	if (error != JSON_SUCCESS)
		return "it is not JSON";
	if (!parse.is_object)
		return "it is not a JSON object";
	if (parse.duplicate)
		return psprintf("field \"%s\" appears twice", parse.duplicate);
	if (parse.bad_value)
		return "a field has a value of the wrong type";
	if (json_out)
		*json_out = json;
	return NULL;
}

/* ---- verification --------------------------------------------------------- */

static void
InvalidToken(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_TOKEN_INVALID),
			 errmsg("invalid access token"),
			 errdetail("%s", why),
			 errhint("Log in again (mandant.login) or refresh (mandant.refresh) for a new token.")));
}

/* IsoUtc formats Unix seconds as ISO 8601 UTC, e.g. 2026-11-25T16:40:22Z. */
static char *
IsoUtc(double unix_seconds)
{
	pg_time_t	t = (pg_time_t) unix_seconds;
	char		buf[32];

	pg_strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", pg_gmtime(&t));
	return pstrdup(buf);
}

static int64
UnixNow(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now / USECS_PER_SEC + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

static bool
VerifySignature(EVP_PKEY *pkey, const char *signed_part, size_t signed_len,
				const unsigned char *signature, size_t signature_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	if (ctx == NULL)
		elog(ERROR, "out of memory in OpenSSL");
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, signature, signature_len,
						 (const unsigned char *) signed_part, signed_len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/*
 * CheckTokenHeader reads the header and returns the key that must verify
 * the signature.
 */
static EVP_PKEY *
CheckTokenHeader(const char *header, size_t len)
{
	JwtField	fields[] = {
		FIELD("alg", JWT_STRING), FIELD("kid", JWT_STRING), FIELD("typ", JWT_STRING), FIELD("crit", JWT_STRING_ARRAY)
	};
	const char *why = ReadTokenPart(header, len, fields, lengthof(fields), NULL);
	JwtKey	  **keys;
	int			nkeys;

	if (why)
		InvalidToken(psprintf("The header is unreadable: %s.", why));
	if (!fields[0].present || strcmp(fields[0].string, "RS256") != 0)
		InvalidToken(psprintf("The algorithm is \"%s\"; only RS256 is accepted.",
							  fields[0].present ? fields[0].string : "(none)"));
	if (fields[2].present && strcmp(fields[2].string, "JWT") != 0)
		InvalidToken(psprintf("The token type is \"%s\", not JWT.", fields[2].string));
	if (fields[3].present)
		InvalidToken("The header has critical extensions, which are not supported.");
	if (!fields[1].present)
		InvalidToken("The header names no key (kid).");

	keys = VerificationKeys(&nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		if (strcmp(keys[i]->kid, fields[1].string) == 0)
			return keys[i]->pkey;
	}
	InvalidToken(psprintf("Key \"%s\" is not one of this server's keys.", fields[1].string));
	return NULL;				/* not reached */
}

/* ScopeNamesToBits maps the scopes claim to scope bits. */
static int
ScopeNamesToBits(List *names)
{
	ListCell   *lc;
	int			bits = 0;

	foreach(lc, names)
	{
		int			bit = MandantScopeBit(lfirst(lc));

		if (bit == 0)
			InvalidToken(psprintf("The token holds the unknown scope \"%s\".", (char *) lfirst(lc)));
		bits |= bit;
	}
	return bits;
}

/*
 * VerifyToken checks a token's form, signature, issuer and times and
 * returns its claims; raises MD051 or MD052.  What the database knows
 * about revocation is checked by the callers.
 */
static JwtClaims *
VerifyToken(text *token_text)
{
	char	   *token = text_to_cstring(token_text);
	size_t		len = strlen(token);
	char	   *dot1;
	char	   *dot2;
	EVP_PKEY   *pkey;
	unsigned char *signature;
	size_t		signature_len;
	JwtField	fields[] = {
		FIELD("sub", JWT_STRING), FIELD("tid", JWT_STRING), FIELD("tslug", JWT_STRING),
		FIELD("role", JWT_STRING), FIELD("jti", JWT_STRING), FIELD("typ", JWT_STRING),
		FIELD("sid", JWT_STRING), FIELD("iss", JWT_STRING), FIELD("exp", JWT_NUMBER),
		FIELD("iat", JWT_NUMBER), FIELD("nbf", JWT_NUMBER), FIELD("ver", JWT_NUMBER),
		FIELD("scopes", JWT_STRING_ARRAY)
	};
	JwtClaims  *claims = palloc0(sizeof(JwtClaims));
	const char *why;
	int64		now = UnixNow();

	if (len > JWT_MAX_BYTES)
		InvalidToken(psprintf("The token has %zu bytes; at most %d are accepted.", len, JWT_MAX_BYTES));
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		InvalidToken("A token has three parts separated by dots.");
	if (dot1 == token || dot2 == dot1 + 1 || dot2[1] == '\0')
		InvalidToken("A part of the token is empty.");

	pkey = CheckTokenHeader(token, dot1 - token);
	signature = MandantBase64UrlDecode(dot2 + 1, strlen(dot2 + 1), &signature_len);
	if (signature == NULL)
		InvalidToken("The signature is not base64url.");
	if (!VerifySignature(pkey, token, dot2 - token, signature, signature_len))
		InvalidToken("The signature does not match the token.");

	why = ReadTokenPart(dot1 + 1, dot2 - dot1 - 1, fields, lengthof(fields), &claims->payload);
	if (why)
		InvalidToken(psprintf("The payload is unreadable: %s.", why));
	if (!fields[7].present || strcmp(fields[7].string, jwt_issuer) != 0)
		InvalidToken(psprintf("The issuer is \"%s\", not \"%s\".",
							  fields[7].present ? fields[7].string : "(none)", jwt_issuer));
	if (!fields[0].present || !fields[4].present || !fields[8].present || !fields[9].present)
		InvalidToken("The token lacks one of the claims sub, jti, exp and iat.");
	if (fields[9].number > now + JWT_LEEWAY)
		InvalidToken("The token was issued in the future.");
	if (fields[10].present && fields[10].number > now + JWT_LEEWAY)
		InvalidToken("The token is not valid yet (nbf).");
	if (fields[8].number + JWT_LEEWAY < now)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_TOKEN_EXPIRED),
				 errmsg("access token expired"),
				 errdetail("It expired at %s.", IsoUtc(fields[8].number)),
				 errhint("Refresh it with mandant.refresh(refresh_token), or log in again.")));

	claims->sub = fields[0].string;
	claims->tid = fields[1].present ? fields[1].string : NULL;
	claims->tslug = fields[2].present ? fields[2].string : NULL;
	claims->role = fields[3].present ? fields[3].string : NULL;
	claims->jti = fields[4].string;
	claims->typ = fields[5].present ? fields[5].string : "access";
	claims->sid = fields[6].present ? fields[6].string : NULL;
	claims->exp = fields[8].number;
	claims->iat = fields[9].number;
	claims->has_ver = fields[11].present;
	claims->ver = (int64) fields[11].number;
	claims->scope_names = fields[12].strings;
	claims->scopes = ScopeNamesToBits(fields[12].strings);
	return claims;
}

/* ---- database checks ---------------------------------------------------- */

static int
HexDigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	return tolower((unsigned char) c) - 'a' + 10;
}

static pg_uuid_t *
ClaimUuid(const char *value, const char *claim)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	int			n = 0;

	/* canonical form only: 8-4-4-4-12 lower or upper hex */
	if (value == NULL || strlen(value) != 36)
		InvalidToken(psprintf("Claim %s is not a uuid.", claim));
	for (int i = 0; i < 36; i++)
	{
		char		c = value[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				InvalidToken(psprintf("Claim %s is not a uuid.", claim));
			continue;
		}
		if (!isxdigit((unsigned char) c))
			InvalidToken(psprintf("Claim %s is not a uuid.", claim));
		uuid->data[n / 2] = (n % 2 == 0) ? (HexDigit(c) << 4) : (uuid->data[n / 2] | HexDigit(c));
		n++;
	}
	return uuid;
}

static void
RevokedToken(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_TOKEN_REVOKED),
			 errmsg("access token revoked"),
			 errdetail("%s", why),
			 errhint("Log in again.")));
}

/* CheckNotDenied refuses a jti on the denylist (logout). */
static void
CheckNotDenied(pg_uuid_t *jti)
{
	MandantIndexKey key = {UUIDPGetDatum(jti), F_UUID_EQ, false};
	const char *column = "jti";
	Datum		value;
	bool		isnull;

	if (MandantFetchByIndex("revoked_jti", "revoked_jti_pkey", 1, &key, 1, &column, &value, &isnull))
		RevokedToken("The token was revoked (logout).");
}

/*
 * CheckUserToken: the user exists, is active and has the token's
 * token_version, and still holds the token's role in its tenant.
 */
static void
CheckUserToken(JwtClaims *claims, pg_uuid_t *user, pg_uuid_t *tenant)
{
	MandantIndexKey user_key = {UUIDPGetDatum(user), F_UUID_EQ, false};
	const char *user_columns[] = {"status", "token_version"};
	Datum		values[2];
	bool		isnull[2];

	if (!claims->has_ver)
		InvalidToken("The token lacks the claim ver.");
	if (!MandantFetchByIndex("users", "users_pkey", 1, &user_key, 2, user_columns, values, isnull))
		RevokedToken("The user no longer exists.");
	if (strcmp(TextDatumGetCString(values[0]), "active") != 0)
		RevokedToken("The user is disabled.");
	if (DatumGetInt64(values[1]) != claims->ver)
		RevokedToken("The user's tokens were revoked (password change, reset or sign-out everywhere).");

	if (tenant)
	{
		MandantIndexKey member_key[2] = {
			{UUIDPGetDatum(tenant), F_UUID_EQ, false},
			{UUIDPGetDatum(user), F_UUID_EQ, false}
		};
		const char *role_column = "role";
		Datum		role;
		bool		role_isnull;

		if (!MandantFetchByIndex("membership", "membership_pkey", 2, member_key, 1,
								 &role_column, &role, &role_isnull))
			RevokedToken("The user is no longer a member of the token's tenant.");
		if (claims->role == NULL || strcmp(TextDatumGetCString(role), claims->role) != 0)
			RevokedToken("The user's role in the tenant changed.");
	}
}

/* CheckServiceToken: the service account exists and is active. */
static void
CheckServiceToken(pg_uuid_t *account)
{
	MandantIndexKey key = {UUIDPGetDatum(account), F_UUID_EQ, false};
	const char *column = "status";
	Datum		status;
	bool		isnull;

	if (!MandantFetchByIndex("service_account", "service_account_pkey", 1, &key, 1,
							 &column, &status, &isnull))
		RevokedToken("The service account no longer exists.");
	if (strcmp(TextDatumGetCString(status), "active") != 0)
		RevokedToken("The service account is disabled.");
}

/* ---- SQL functions -------------------------------------------------------- */

/*
 * mandant.jwt_sign(claims jsonb) returns text: the claims signed with the
 * signing key.  Internal (no EXECUTE for PUBLIC): login, refresh and
 * service_token build the claims.
 */
Datum
mandant_jwt_sign(PG_FUNCTION_ARGS)
{
	Jsonb	   *claims = PG_GETARG_JSONB_P(0);
	JwtKey	   *key = SigningKey();
	char	   *header;
	char	   *payload;
	StringInfoData token;
	EVP_MD_CTX *ctx;
	size_t		siglen = 0;
	unsigned char *signature;

	if (!JB_ROOT_IS_OBJECT(claims) || JB_ROOT_IS_SCALAR(claims))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token claims must be a JSON object"),
				 errdetail("mandant.jwt_sign() was called with %s.", JsonbToCString(NULL, &claims->root, VARSIZE(claims))),
				 errhint("Pass the claims as a jsonb object.")));

	header = psprintf("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", key->kid);
	payload = JsonbToCString(NULL, &claims->root, VARSIZE(claims));
	initStringInfo(&token);
	appendStringInfoString(&token, MandantBase64UrlEncode((unsigned char *) header, strlen(header)));
	appendStringInfoChar(&token, '.');
	appendStringInfoString(&token, MandantBase64UrlEncode((unsigned char *) payload, strlen(payload)));

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL ||
		EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) != 1 ||
		EVP_DigestSign(ctx, NULL, &siglen, (unsigned char *) token.data, token.len) != 1)
	{
		EVP_MD_CTX_free(ctx);
		elog(ERROR, "could not sign a token: %s", OpenSslError());
	}
	signature = palloc(siglen);
	if (EVP_DigestSign(ctx, signature, &siglen, (unsigned char *) token.data, token.len) != 1)
	{
		EVP_MD_CTX_free(ctx);
		elog(ERROR, "could not sign a token: %s", OpenSslError());
	}
	EVP_MD_CTX_free(ctx);
	appendStringInfoChar(&token, '.');
	appendStringInfoString(&token, MandantBase64UrlEncode(signature, siglen));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(token.data, token.len));
}

/*
 * mandant.jwt_verify(token text) returns jsonb: the claims of a token whose
 * form, signature, issuer and times check out (MD051, MD052 otherwise);
 * revocation is not checked.  Internal, for logout and the tests.
 */
Datum
mandant_jwt_verify(PG_FUNCTION_ARGS)
{
	JwtClaims  *claims = VerifyToken(PG_GETARG_TEXT_PP(0));

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims->payload)));
}

/*
 * mandant.jwks() returns jsonb: the verification keys as a JSON Web Key
 * Set, for clients that verify tokens themselves.
 */
Datum
mandant_jwks(PG_FUNCTION_ARGS)
{
	int			nkeys;
	JwtKey	  **keys = VerificationKeys(&nkeys);
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfoString(&json, "{\"keys\": [");
	for (int i = 0; i < nkeys; i++)
	{
		char	   *n;
		char	   *e;

		RsaParameters(keys[i]->pkey, &n, &e);
		appendStringInfo(&json,
						 "%s{\"kty\": \"RSA\", \"use\": \"sig\", \"alg\": \"RS256\", \"kid\": \"%s\", \"n\": \"%s\", \"e\": \"%s\"}",
						 i > 0 ? ", " : "", keys[i]->kid, n, e);
	}
	appendStringInfoString(&json, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}

/* AuthenticationAnswer describes the context authenticate() set. */
static Datum
AuthenticationAnswer(JwtClaims *claims, bool m2m)
{
	StringInfoData json;
	bool		first = true;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"type\": \"%s\", ", m2m ? "m2m" : "user");
	if (m2m)
		appendStringInfo(&json, "\"serviceAccountId\": \"%s\", \"userId\": null, ", claims->sub);
	else
		appendStringInfo(&json, "\"userId\": \"%s\", ", claims->sub);
	if (claims->tid)
		appendStringInfo(&json, "\"tenantId\": \"%s\", ", claims->tid);
	else
		appendStringInfoString(&json, "\"tenantId\": null, ");
	appendStringInfoString(&json, "\"tenantSlug\": ");
	if (claims->tslug)
		escape_json(&json, claims->tslug);
	else
		appendStringInfoString(&json, "null");
	appendStringInfoString(&json, ", \"role\": ");
	if (claims->role)
		escape_json(&json, claims->role);
	else
		appendStringInfoString(&json, "null");
	appendStringInfoString(&json, ", \"scopes\": [");
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if ((claims->scopes & (1 << i)) == 0)
			continue;
		appendStringInfo(&json, "%s\"%s\"", first ? "" : ", ", MandantScopeName(1 << i));
		first = false;
	}
	appendStringInfo(&json, "], \"expiresAt\": \"%s\"}", IsoUtc(claims->exp));
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/*
 * mandant.authenticate(token text) returns jsonb: verifies an access token
 * and sets tenant, user and scopes for the rest of the transaction.  For
 * anyone: the token is the credential.
 */
Datum
mandant_authenticate(PG_FUNCTION_ARGS)
{
	JwtClaims  *claims;
	pg_uuid_t  *subject;
	pg_uuid_t  *tenant = NULL;
	bool		m2m;

	if (PG_ARGISNULL(0))
		InvalidToken("No token was given.");
	claims = VerifyToken(PG_GETARG_TEXT_PP(0));
	m2m = strcmp(claims->typ, "m2m") == 0;
	if (!m2m && strcmp(claims->typ, "access") != 0)
		InvalidToken(psprintf("A token of type \"%s\" is not an access token.", claims->typ));
	subject = ClaimUuid(claims->sub, "sub");
	if (claims->tid)
		tenant = ClaimUuid(claims->tid, "tid");

	CheckNotDenied(ClaimUuid(claims->jti, "jti"));
	if (m2m)
		CheckServiceToken(subject);
	else
		CheckUserToken(claims, subject, tenant);
	if (tenant)
		MandantCheckTenantEnterable(tenant);

	MandantAssignContext(tenant, m2m ? NULL : subject, claims->scopes);
	PG_RETURN_DATUM(AuthenticationAnswer(claims, m2m));
}

/* RandomBytes returns n (16 to 64) random bytes from OpenSSL's generator. */
static unsigned char *
RandomBytes(int32 n, const char *function)
{
	unsigned char *bytes;

	if (n < 16 || n > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("random values have 16 to 64 bytes"),
				 errdetail("%s was asked for %d.", function, n),
				 errhint("32 bytes (256 bits) is plenty.")));
	bytes = palloc(n);
	if (RAND_bytes(bytes, n) != 1)
		elog(ERROR, "could not generate random bytes: %s", OpenSslError());
	return bytes;
}

/*
 * mandant.random_token(bytes int) returns text: random bytes, base64url
 * encoded (refresh tokens, client secrets).
 */
Datum
mandant_random_token(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);

	PG_RETURN_TEXT_P(cstring_to_text(MandantBase64UrlEncode(RandomBytes(n, "mandant.random_token()"), n)));
}

/* mandant.random_bytes(bytes int) returns bytea (TOTP secrets). */
Datum
mandant_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	unsigned char *bytes = RandomBytes(n, "mandant.random_bytes()");	/* checks n first */
	bytea	   *result = palloc(VARHDRSZ + n);

	memcpy(VARDATA(result), bytes, n);
	SET_VARSIZE(result, VARHDRSZ + n);
	PG_RETURN_BYTEA_P(result);
}
