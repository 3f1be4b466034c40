/*-------------------------------------------------------------------------
 *
 * totp.c
 *		One-time passwords (RFC 6238 TOTP over RFC 4226 HOTP) and the
 *		sealing of the secrets they need.
 *
 * Codes are HMAC-SHA1 over the 30-second step number, dynamically
 * truncated, 6 digits; a code is accepted for the current step and one
 * step either side, and only for a step later than the last one used, so
 * a code cannot be replayed.
 *
 * A TOTP secret must be kept to check codes, so it cannot be hashed like a
 * password.  It is sealed instead: AES-256-GCM under a key derived
 * (SHA-256 of its first 4096 bytes) from the file named by
 * mandant.secret_key_file (superuser-only, not readable by others, see
 * keyfile.c), with a fresh 12-byte nonce per seal and the user id as
 * associated data, so a sealed secret copied to another user's row does
 * not open.  The table holds only nonce, ciphertext and tag.  The file is
 * read at every seal and open, nothing is cached, and key bytes are zeroed
 * after use.
 *
 * HMAC-SHA1, SHA-256 and the nonces come from crypto.c (PostgreSQL's own
 * implementations); OpenSSL is used here for AES-256-GCM only.  The base32
 * form authenticator apps take secrets in is encode.c's.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/totp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include <openssl/evp.h>

#include "common/sha1.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "mandant.h"

#define TOTP_PERIOD			30
#define TOTP_DIGITS			6
#define SEAL_NONCE_LEN		12
#define SEAL_TAG_LEN		16
#define SEAL_VERSION		1
#define SEAL_KEY_LEN		32	/* AES-256, the SHA-256 of the key file */
/* Bytes of the key file that make the key. */
#define SEAL_KEY_FILE_MAX	4096

PG_FUNCTION_INFO_V1(mandant_totp_code);
PG_FUNCTION_INFO_V1(mandant_totp_match);
PG_FUNCTION_INFO_V1(mandant_secret_seal);
PG_FUNCTION_INFO_V1(mandant_secret_open);

static char *secret_key_file = NULL;

/*
 * MandantDefineSecretVariables defines mandant.secret_key_file.  Called
 * from _PG_init.
 */
void
MandantDefineSecretVariables(void)
{
	DefineCustomStringVariable("mandant.secret_key_file",
							   gettext_noop("File whose SHA-256 is the key that seals TOTP secrets (AES-256-GCM)."),
							   gettext_noop("Relative paths are relative to the data directory. The file must not be readable by others."),
							   &secret_key_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

/* ---- codes ------------------------------------------------------------ */

/* HotpCode computes the RFC 4226 code of a counter. */
static uint32
HotpCode(const unsigned char *secret, size_t secret_len, uint64 counter, int digits)
{
	unsigned char message[8];
	uint8		digest[SHA1_DIGEST_LENGTH];
	int			offset;
	uint32		binary;
	uint32		modulus = 1;

	for (int i = 7; i >= 0; i--)
	{
		message[i] = counter & 0xFF;
		counter >>= 8;
	}
	MandantHmacSha1(secret, secret_len, message, sizeof(message), digest);
	offset = digest[sizeof(digest) - 1] & 0x0F;
	binary = ((uint32) (digest[offset] & 0x7F) << 24) |
		((uint32) digest[offset + 1] << 16) |
		((uint32) digest[offset + 2] << 8) |
		(uint32) digest[offset + 3];
	for (int i = 0; i < digits; i++)
		modulus *= 10;
	return binary % modulus;
}

/* StepAt returns the 30-second step of a time, or -1 before 1970. */
static int64
StepAt(TimestampTz at)
{
	int64		unix_seconds = at / USECS_PER_SEC +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;

	return unix_seconds >= 0 ? unix_seconds / TOTP_PERIOD : -1;
}

/*
 * mandant.totp_code(secret bytea, at timestamptz, digits int) returns text:
 * the code of a secret at a time (for tests and tools; RFC 6238 test
 * vectors use 8 digits).
 */
Datum
mandant_totp_code(PG_FUNCTION_ARGS)
{
	bytea	   *secret = PG_GETARG_BYTEA_PP(0);
	int64		step = StepAt(PG_GETARG_TIMESTAMPTZ(1));
	int32		digits = PG_GETARG_INT32(2);

	if (digits < 6 || digits > 9)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a one-time code has 6 to 9 digits"),
				 errdetail("mandant.totp_code() was asked for %d digits.", digits),
				 errhint("mandant uses 6.")));
	if (step < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time is before 1970"),
				 errdetail("TOTP counts 30-second steps from the Unix epoch."),
				 errhint("Pass a later time.")));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%0*u", digits,
											  HotpCode((unsigned char *) VARDATA_ANY(secret),
													   VARSIZE_ANY_EXHDR(secret), step, digits))));
}

/* ---- sealing ------------------------------------------------------------ */

/*
 * SealingKey reads mandant.secret_key_file and derives the AES key from
 * it.  The file must hold at least 32 bytes and not be readable by others.
 */
static void
SealingKey(uint8 *key)
{
	struct stat st;
	char	   *content;
	size_t		len;

	if (secret_key_file == NULL || secret_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no secret key is configured"),
				 errdetail("mandant.secret_key_file is not set; it seals TOTP secrets."),
				 errhint("Create one with: openssl rand -hex 32 > secret.key; chmod 600 secret.key; then set mandant.secret_key_file (superuser) and reload.")));
	MandantStatKeyFile(secret_key_file, "mandant.secret_key_file", "secret key file", &st);
	MandantCheckKeyFileMode(secret_key_file, &st, "secret key file");
	content = MandantReadKeyFile(secret_key_file, "mandant.secret_key_file", "secret key file",
								 &st, SEAL_KEY_FILE_MAX, &len);
	if (len < 32)
	{
		explicit_bzero(content, len);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secret key file \"%s\" is too short", secret_key_file),
				 errdetail("It has %zu bytes; at least 32 are needed.", len),
				 errhint("Create it with: openssl rand -hex 32")));
	}
	MandantSha256(content, len, key);
	explicit_bzero(content, len);
	pfree(content);
}

/*
 * mandant.secret_seal(secret bytea, owner uuid) returns bytea: version,
 * nonce, ciphertext and tag.  Internal.
 */
Datum
mandant_secret_seal(PG_FUNCTION_ARGS)
{
	bytea	   *secret = PG_GETARG_BYTEA_PP(0);
	pg_uuid_t  *owner = PG_GETARG_UUID_P(1);
	int			len = VARSIZE_ANY_EXHDR(secret);
	uint8		key[SEAL_KEY_LEN];
	bytea	   *sealed = palloc(VARHDRSZ + 1 + SEAL_NONCE_LEN + len + SEAL_TAG_LEN);
	unsigned char *out = (unsigned char *) VARDATA(sealed);
	EVP_CIPHER_CTX *ctx;
	int			n = 0;
	int			final = 0;
	bool		ok;

	SealingKey(key);
	out[0] = SEAL_VERSION;
	MandantStrongRandom(out + 1, SEAL_NONCE_LEN);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out + 1) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &n, owner->data, UUID_LEN) == 1 &&
		EVP_EncryptUpdate(ctx, out + 1 + SEAL_NONCE_LEN, &n,
						  (unsigned char *) VARDATA_ANY(secret), len) == 1 &&
		EVP_EncryptFinal_ex(ctx, out + 1 + SEAL_NONCE_LEN + n, &final) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
							out + 1 + SEAL_NONCE_LEN + len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not seal a secret"),
				 errdetail("AES-256-GCM failed: %s.", MandantOpenSslError())));
	SET_VARSIZE(sealed, VARHDRSZ + 1 + SEAL_NONCE_LEN + len + SEAL_TAG_LEN);
	PG_RETURN_BYTEA_P(sealed);
}

/*
 * OpenSealed opens a sealed secret of owner; raises when it does not open
 * (wrong key, wrong owner, altered bytes).
 */
static bytea *
OpenSealed(bytea *sealed, pg_uuid_t *owner)
{
	int			total = VARSIZE_ANY_EXHDR(sealed);
	unsigned char *in = (unsigned char *) VARDATA_ANY(sealed);
	int			len = total - 1 - SEAL_NONCE_LEN - SEAL_TAG_LEN;
	uint8		key[SEAL_KEY_LEN];
	bytea	   *secret;
	EVP_CIPHER_CTX *ctx;
	int			n = 0;
	int			final = 0;
	bool		ok;

	if (len < 0 || in[0] != SEAL_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("sealed secret is malformed"),
				 errdetail("It has %d bytes or an unknown version.", total),
				 errhint("Enroll again.")));
	SealingKey(key);
	secret = palloc(VARHDRSZ + len);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in + 1) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &n, owner->data, UUID_LEN) == 1 &&
		EVP_DecryptUpdate(ctx, (unsigned char *) VARDATA(secret), &n,
						  in + 1 + SEAL_NONCE_LEN, len) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
							in + 1 + SEAL_NONCE_LEN + len) == 1 &&
		EVP_DecryptFinal_ex(ctx, (unsigned char *) VARDATA(secret) + n, &final) == 1;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("sealed secret does not open"),
				 errdetail("The secret key changed, or the sealed bytes were altered or belong to another user."),
				 errhint("Restore the previous mandant.secret_key_file, or have the user enroll again.")));
	SET_VARSIZE(secret, VARHDRSZ + len);
	return secret;
}

/* mandant.secret_open(sealed bytea, owner uuid) returns bytea.  Internal. */
Datum
mandant_secret_open(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(OpenSealed(PG_GETARG_BYTEA_PP(0), PG_GETARG_UUID_P(1)));
}

/*
 * mandant.totp_match(sealed bytea, owner uuid, code text, after_step
 * bigint) returns bigint: the step (now, or one either side) whose code
 * equals code and that is later than after_step, else NULL.  Internal.
 */
Datum
mandant_totp_match(PG_FUNCTION_ARGS)
{
	bytea	   *secret;
	char	   *code;
	int64		after = PG_ARGISNULL(3) ? -1 : PG_GETARG_INT64(3);
	int64		now = StepAt(GetCurrentTimestamp());
	int64		matched = -1;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	secret = OpenSealed(PG_GETARG_BYTEA_PP(0), PG_GETARG_UUID_P(1));
	code = text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (strlen(code) != TOTP_DIGITS || strspn(code, "0123456789") != TOTP_DIGITS)
		PG_RETURN_NULL();
	for (int64 step = now - 1; step <= now + 1; step++)
	{
		char		expected[TOTP_DIGITS + 1];

		snprintf(expected, sizeof(expected), "%0*u", TOTP_DIGITS,
				 HotpCode((unsigned char *) VARDATA(secret), VARSIZE(secret) - VARHDRSZ,
						  step, TOTP_DIGITS));
		/* compare every candidate in constant time; keep the first match */
		if (timingsafe_bcmp(expected, code, TOTP_DIGITS) == 0 && step > after && matched < 0)
			matched = step;
	}
	explicit_bzero(VARDATA(secret), VARSIZE(secret) - VARHDRSZ);
	if (matched < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(matched);
}
