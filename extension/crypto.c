/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		The cryptographic primitives the other files share: SHA-256,
 *		HMAC-SHA1, HMAC-SHA256, a constant-time comparison and strong
 *		random bytes, plus mandant.random_token() and
 *		mandant.random_bytes().
 *
 * Hashes, MACs and random bytes go through PostgreSQL's own interfaces
 * (common/cryptohash.h, common/hmac.h, pg_strong_random), the ones the
 * server uses for SCRAM and pgcrypto for gen_random_bytes(), so there is
 * one way to compute each of them and one way to report a failure:
 * ERRCODE_INTERNAL_ERROR with the library's own reason.  OpenSSL is used
 * directly only where PostgreSQL offers nothing: RSA for access tokens
 * (jwtkeys.c, jwt.c) and AES-256-GCM for TOTP secrets (totp.c); the text
 * of its last error is MandantOpenSslError.
 *
 * The cryptohash and HMAC contexts are owned by the current resource
 * owner, which releases them if anything raises in between; they are
 * freed before any error is reported here.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/crypto.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha1.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_random_token);
PG_FUNCTION_INFO_V1(mandant_random_bytes);

static void CryptoFailed(const char *what, const char *library,
						 const char *reason) pg_attribute_noreturn();

/*
 * CryptoFailed reports a failure of PostgreSQL's cryptohash or HMAC code
 * with the reason the library gave.
 */
static void
CryptoFailed(const char *what, const char *library, const char *reason)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not compute %s", what),
			 errdetail("The %s library reported: %s.", library, reason)));
}

/*
 * MandantSha256 computes the SHA-256 of len bytes into digest
 * (PG_SHA256_DIGEST_LENGTH bytes).
 */
void
MandantSha256(const void *data, size_t len, uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	const char *reason;

	if (pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, data, len) == 0 &&
		pg_cryptohash_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) == 0)
	{
		pg_cryptohash_free(ctx);
		return;
	}
	reason = pg_cryptohash_error(ctx);
	pg_cryptohash_free(ctx);
	CryptoFailed("a SHA-256 hash", "cryptohash", reason);
}

/*
 * HmacDigest computes the HMAC of len bytes under key with the hash type
 * into digest (digest_len bytes); name names the MAC for the message.
 */
static void
HmacDigest(pg_cryptohash_type type, const char *name, size_t digest_len,
		   const uint8 *key, size_t key_len, const uint8 *data, size_t len,
		   uint8 *digest)
{
	pg_hmac_ctx *ctx = pg_hmac_create(type);
	bool		ok;
	const char *reason;

	ok = pg_hmac_init(ctx, key, key_len) == 0 &&
		pg_hmac_update(ctx, data, len) == 0 &&
		pg_hmac_final(ctx, digest, digest_len) == 0;
	reason = ok ? NULL : pg_hmac_error(ctx);
	pg_hmac_free(ctx);
	if (!ok)
		CryptoFailed(name, "HMAC", reason);
}

/*
 * MandantHmacSha1 computes the HMAC-SHA1 of len bytes under key into
 * digest (SHA1_DIGEST_LENGTH bytes).
 */
void
MandantHmacSha1(const uint8 *key, size_t key_len, const uint8 *data, size_t len,
				uint8 *digest)
{
	HmacDigest(PG_SHA1, "an HMAC-SHA1", SHA1_DIGEST_LENGTH, key, key_len, data, len, digest);
}

/*
 * MandantHmacSha256 computes the HMAC-SHA256 of len bytes under key into
 * digest (PG_SHA256_DIGEST_LENGTH bytes).
 */
void
MandantHmacSha256(const uint8 *key, size_t key_len, const uint8 *data, size_t len,
				  uint8 *digest)
{
	HmacDigest(PG_SHA256, "an HMAC-SHA256", PG_SHA256_DIGEST_LENGTH, key, key_len, data, len, digest);
}

/*
 * MandantEqualConstantTime compares len bytes in a time that depends on
 * len only, for MACs.
 */
bool
MandantEqualConstantTime(const uint8 *a, const uint8 *b, size_t len)
{
	uint8		diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/*
 * MandantStrongRandom fills len bytes from the server's strong random
 * source (the one behind gen_random_uuid() and pgcrypto's
 * gen_random_bytes()).
 */
void
MandantStrongRandom(void *buf, size_t len)
{
	if (!pg_strong_random(buf, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes"),
				 errdetail("pg_strong_random() failed to produce %zu bytes.", len)));
}

/*
 * MandantOpenSslError returns the text of OpenSSL's oldest queued error
 * and clears the queue, for the details of RSA and AES failures.
 */
char *
MandantOpenSslError(void)
{
	unsigned long code = ERR_get_error();
	char		buf[256];

	ERR_clear_error();
	if (code == 0)
		return pstrdup("no further detail");
	ERR_error_string_n(code, buf, sizeof(buf));
	return pstrdup(buf);
}

/*
 * RandomValue returns n (16 to 64) random bytes; function names the SQL
 * function asked, for the message.
 */
static unsigned char *
RandomValue(int32 n, const char *function)
{
	unsigned char *bytes;

	if (n < 16 || n > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("random values have 16 to 64 bytes"),
				 errdetail("%s was asked for %d.", function, n),
				 errhint("32 bytes (256 bits) is plenty.")));
	bytes = palloc(n);
	MandantStrongRandom(bytes, n);
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

	PG_RETURN_TEXT_P(cstring_to_text(MandantBase64UrlEncode(RandomValue(n, "mandant.random_token()"), n)));
}

/* mandant.random_bytes(bytes int) returns bytea (TOTP secrets). */
Datum
mandant_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	unsigned char *bytes = RandomValue(n, "mandant.random_bytes()");	/* checks n first */
	bytea	   *result = palloc(VARHDRSZ + n);

	memcpy(VARDATA(result), bytes, n);
	SET_VARSIZE(result, VARHDRSZ + n);
	PG_RETURN_BYTEA_P(result);
}
