/*-------------------------------------------------------------------------
 *
 * jwt.c
 *		Access tokens as compact JWS (RFC 7515): reading their claims,
 *		verifying RS256 signatures, signing, and the token settings.
 *
 * Tokens are signed with RSASSA-PKCS1-v1_5 SHA-256 through OpenSSL's
 * libcrypto, with the keys of jwtkeys.c.
 *
 * Verification trusts nothing before the signature checks out: the header
 * is decoded with PostgreSQL's JSON lexer into a handful of known fields
 * (duplicates refused), "alg" must be exactly RS256 (so "none" and HS256
 * are refused whatever the key), the key is chosen by "kid" among the
 * configured ones, and only then is the payload parsed.  Every refusal is
 * MD051 (invalid) or MD052 (expired), with the reason in the detail.
 * Revocation is what authenticate.c adds.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/jwt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/jsonapi.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "mandant.h"

/* Longest token accepted (a mandant token is well under 1 kB). */
#define JWT_MAX_BYTES		8192
/* Clock skew tolerated for exp, nbf and iat, in seconds. */
#define JWT_LEEWAY			30

PG_FUNCTION_INFO_V1(mandant_jwt_sign);
PG_FUNCTION_INFO_V1(mandant_jwt_verify);

/* Settings (superuser-only). */
static char *jwt_issuer = NULL;
static int	access_token_ttl = 900;
static int	refresh_token_ttl = 7 * 24 * 3600;

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

/*
 * MandantDefineTokenVariables defines the settings of token issuing and
 * verification.  Called from _PG_init.
 */
void
MandantDefineTokenVariables(void)
{
	MandantDefineTokenKeyVariables();
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

/* ---- reading token JSON ------------------------------------------------- */

#if PG_VERSION_NUM >= 160000
#define JSON_ACTION_RESULT JsonParseErrorType
#define JSON_ACTION_DONE return JSON_SUCCESS
#else
#define JSON_ACTION_RESULT void
#define JSON_ACTION_DONE return
#endif

/*
 * FieldObjectStart notes the top-level object and refuses an object as
 * the value of a known field.
 */
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

/* FieldObjectEnd leaves an object. */
static JSON_ACTION_RESULT
FieldObjectEnd(void *state)
{
	((JwtFieldParse *) state)->depth--;
	JSON_ACTION_DONE;
}

/*
 * FieldArrayStart refuses an array as the value of a field that is not a
 * string array, and arrays nested in one.
 */
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

/* FieldArrayEnd leaves an array. */
static JSON_ACTION_RESULT
FieldArrayEnd(void *state)
{
	((JwtFieldParse *) state)->depth--;
	JSON_ACTION_DONE;
}

/*
 * FieldStart finds the known field a top-level key names, if any, and
 * notes a field given twice.
 */
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

/*
 * FieldScalar stores the value of the current known field when its type
 * is the expected one.
 */
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

/*
 * MandantInvalidToken raises MD051 with why as the detail.  Every refusal
 * of a token's form, signature or claims goes through it.
 */
void
MandantInvalidToken(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_TOKEN_INVALID),
			 errmsg("invalid access token"),
			 errdetail("%s", why),
			 errhint("Log in again (mandant.login) or refresh (mandant.refresh) for a new token.")));
}

/*
 * MandantIsoUtc formats Unix seconds as ISO 8601 UTC, e.g.
 * 2026-11-25T16:40:22Z.
 */
char *
MandantIsoUtc(double unix_seconds)
{
	pg_time_t	t = (pg_time_t) unix_seconds;
	char		buf[32];

	pg_strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", pg_gmtime(&t));
	return pstrdup(buf);
}

/* UnixNow returns the transaction's start time in Unix seconds. */
static int64
UnixNow(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now / USECS_PER_SEC + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/*
 * VerifySignature checks an RS256 signature over the signed part (header
 * and payload, with the dot between them).
 */
static bool
VerifySignature(EVP_PKEY *pkey, const char *signed_part, size_t signed_len,
				const unsigned char *signature, size_t signature_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("OpenSSL could not allocate a digest context.")));
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, signature, signature_len,
						 (const unsigned char *) signed_part, signed_len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/*
 * FindVerificationKey returns the current verification key kid names, or
 * NULL.
 */
static MandantJwtKey *
FindVerificationKey(const char *kid)
{
	int			nkeys;
	MandantJwtKey **keys = MandantJwtVerificationKeys(&nkeys);

	for (int i = 0; i < nkeys; i++)
		if (strcmp(keys[i]->kid, kid) == 0)
			return keys[i];
	return NULL;
}

/*
 * CheckTokenHeader reads the header and returns the key that must verify
 * the signature.
 */
static MandantJwtKey *
CheckTokenHeader(const char *header, size_t len)
{
	JwtField	fields[] = {
		FIELD("alg", JWT_STRING), FIELD("kid", JWT_STRING), FIELD("typ", JWT_STRING), FIELD("crit", JWT_STRING_ARRAY)
	};
	const char *why = ReadTokenPart(header, len, fields, lengthof(fields), NULL);
	MandantJwtKey *key;

	if (why)
		MandantInvalidToken(psprintf("The header is unreadable: %s.", why));
	if (!fields[0].present || strcmp(fields[0].string, "RS256") != 0)
		MandantInvalidToken(psprintf("The algorithm is \"%s\"; only RS256 is accepted.",
									 fields[0].present ? fields[0].string : "(none)"));
	if (fields[2].present && strcmp(fields[2].string, "JWT") != 0)
		MandantInvalidToken(psprintf("The token type is \"%s\", not JWT.", fields[2].string));
	if (fields[3].present)
		MandantInvalidToken("The header has critical extensions, which are not supported.");
	if (!fields[1].present)
		MandantInvalidToken("The header names no key (kid).");

	key = FindVerificationKey(fields[1].string);
	if (key == NULL)
		MandantInvalidToken(psprintf("Key \"%s\" is not one of this server's keys.", fields[1].string));
	return key;
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
			MandantInvalidToken(psprintf("The token holds the unknown scope \"%s\".", (char *) lfirst(lc)));
		bits |= bit;
	}
	return bits;
}

/*
 * CheckNotExpired raises MD052 when a token that expires at exp has
 * expired at now (Unix seconds), allowing for JWT_LEEWAY.
 */
static void
CheckNotExpired(double exp, int64 now)
{
	if (exp + JWT_LEEWAY < now)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_TOKEN_EXPIRED),
				 errmsg("access token expired"),
				 errdetail("It expired at %s.", MandantIsoUtc(exp)),
				 errhint("Refresh it with mandant.refresh(refresh_token), or log in again.")));
}

/*
 * ReadClaims reads the payload of a token whose signature checked out and
 * checks issuer and times; raises MD051 or MD052.
 */
static MandantJwtClaims *
ReadClaims(const char *part, size_t len)
{
	enum
	{
		SUB, TID, TSLUG, ROLE, JTI, TYP, SID, ISS, EXP, IAT, NBF, VER, SCOPES
	};
	JwtField	fields[] = {
		[SUB] = FIELD("sub", JWT_STRING), [TID] = FIELD("tid", JWT_STRING),
		[TSLUG] = FIELD("tslug", JWT_STRING), [ROLE] = FIELD("role", JWT_STRING),
		[JTI] = FIELD("jti", JWT_STRING), [TYP] = FIELD("typ", JWT_STRING),
		[SID] = FIELD("sid", JWT_STRING), [ISS] = FIELD("iss", JWT_STRING),
		[EXP] = FIELD("exp", JWT_NUMBER), [IAT] = FIELD("iat", JWT_NUMBER),
		[NBF] = FIELD("nbf", JWT_NUMBER), [VER] = FIELD("ver", JWT_NUMBER),
		[SCOPES] = FIELD("scopes", JWT_STRING_ARRAY)
	};
	MandantJwtClaims *claims = palloc0(sizeof(MandantJwtClaims));
	const char *why = ReadTokenPart(part, len, fields, lengthof(fields), &claims->payload);
	int64		now = UnixNow();

	if (why)
		MandantInvalidToken(psprintf("The payload is unreadable: %s.", why));
	if (!fields[ISS].present || strcmp(fields[ISS].string, jwt_issuer) != 0)
		MandantInvalidToken(psprintf("The issuer is \"%s\", not \"%s\".",
									 fields[ISS].present ? fields[ISS].string : "(none)", jwt_issuer));
	if (!fields[SUB].present || !fields[JTI].present || !fields[EXP].present || !fields[IAT].present)
		MandantInvalidToken("The token lacks one of the claims sub, jti, exp and iat.");
	if (fields[IAT].number > now + JWT_LEEWAY)
		MandantInvalidToken("The token was issued in the future.");
	if (fields[NBF].present && fields[NBF].number > now + JWT_LEEWAY)
		MandantInvalidToken("The token is not valid yet (nbf).");
	CheckNotExpired(fields[EXP].number, now);

	claims->sub = fields[SUB].string;
	claims->tid = fields[TID].present ? fields[TID].string : NULL;
	claims->tslug = fields[TSLUG].present ? fields[TSLUG].string : NULL;
	claims->role = fields[ROLE].present ? fields[ROLE].string : NULL;
	claims->jti = fields[JTI].string;
	claims->typ = fields[TYP].present ? fields[TYP].string : "access";
	claims->sid = fields[SID].present ? fields[SID].string : NULL;
	claims->exp = fields[EXP].number;
	claims->iat = fields[IAT].number;
	claims->has_ver = fields[VER].present;
	claims->ver = (int64) fields[VER].number;
	claims->scope_names = fields[SCOPES].strings;
	claims->scopes = ScopeNamesToBits(fields[SCOPES].strings);
	return claims;
}

/*
 * MandantVerifyToken checks a token's form, signature, issuer and times
 * and returns its claims; raises MD051 or MD052.  A token this backend
 * verified already is not decoded and checked again while its key is
 * still a verification key and the issuer setting is the same: its claims
 * come from tokencache.c, and only its expiry is checked.  What the
 * database knows about revocation is checked by the callers
 * (authenticate.c, logout).
 */
MandantJwtClaims *
MandantVerifyToken(text *token_text)
{
	char	   *token = text_to_cstring(token_text);
	size_t		len = strlen(token);
	char	   *dot1;
	char	   *dot2;
	MandantJwtKey *key;
	unsigned char *signature;
	size_t		signature_len;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	MandantJwtClaims *claims;
	const char *kid;

	if (len > JWT_MAX_BYTES)
		MandantInvalidToken(psprintf("The token has %zu bytes; at most %d are accepted.", len, JWT_MAX_BYTES));

	MandantSha256(token, len, digest);
	claims = MandantCachedClaims(digest, jwt_issuer, &kid);
	if (claims != NULL && FindVerificationKey(kid) != NULL)
	{
		CheckNotExpired(claims->exp, UnixNow());
		return claims;
	}

	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		MandantInvalidToken("A token has three parts separated by dots.");
	if (dot1 == token || dot2 == dot1 + 1 || dot2[1] == '\0')
		MandantInvalidToken("A part of the token is empty.");

	key = CheckTokenHeader(token, dot1 - token);
	signature = MandantBase64UrlDecode(dot2 + 1, strlen(dot2 + 1), &signature_len);
	if (signature == NULL)
		MandantInvalidToken("The signature is not base64url.");
	if (!VerifySignature(key->pkey, token, dot2 - token, signature, signature_len))
		MandantInvalidToken("The signature does not match the token.");
	claims = ReadClaims(dot1 + 1, dot2 - dot1 - 1);
	MandantRememberClaims(digest, key->kid, jwt_issuer, claims);
	return claims;
}

/* ---- signing and SQL functions ------------------------------------------ */

/*
 * SignRs256 signs len bytes with key (RSASSA-PKCS1-v1_5 SHA-256) and
 * returns the signature, its length in *siglen.
 */
static unsigned char *
SignRs256(MandantJwtKey *key, const char *data, size_t len, size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *signature = NULL;
	bool		ok;

	*siglen = 0;
	ok = ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
		EVP_DigestSign(ctx, NULL, siglen, (const unsigned char *) data, len) == 1;
	if (ok)
	{
		signature = palloc(*siglen);
		ok = EVP_DigestSign(ctx, signature, siglen, (const unsigned char *) data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not sign a token"),
				 errdetail("OpenSSL reported: %s.", MandantOpenSslError())));
	return signature;
}

/*
 * mandant.jwt_sign(claims jsonb) returns text: the claims signed with the
 * signing key.  Internal (no EXECUTE for PUBLIC): login, refresh and
 * service_token build the claims.
 */
Datum
mandant_jwt_sign(PG_FUNCTION_ARGS)
{
	Jsonb	   *claims = PG_GETARG_JSONB_P(0);
	MandantJwtKey *key = MandantJwtSigningKey();
	char	   *header;
	char	   *payload;
	StringInfoData token;
	size_t		siglen;
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

	signature = SignRs256(key, token.data, token.len, &siglen);
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
	MandantJwtClaims *claims = MandantVerifyToken(PG_GETARG_TEXT_PP(0));

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims->payload)));
}
