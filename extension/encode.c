/*-------------------------------------------------------------------------
 *
 * encode.c
 *		Text forms of bytes: base64url for tokens and base32 for
 *		authenticator apps (mandant.base32_encode()).
 *
 * base64url (RFC 4648 section 5) is written without padding, as JWS
 * (RFC 7515) wants it, and read strictly: no padding, no other
 * characters, no stray bits, so that one token has exactly one spelling
 * and a signature cannot be "varied" by re-encoding it.  base32 (RFC 4648
 * section 6) is only written: it is the form authenticator apps take TOTP
 * secrets in.  Hex is PostgreSQL's own hex_encode() (utils/builtins.h).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/encode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_base32_encode);

static const char b64url_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/*
 * MandantHexDigitValue returns the value of one hexadecimal digit, or -1.
 */
int
MandantHexDigitValue(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

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

/* Base64UrlValue returns the value of one base64url character, or -1. */
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

/*
 * mandant.base32_encode(bytea) returns text: RFC 4648 base32 without
 * padding, the form authenticator apps take secrets in.
 */
Datum
mandant_base32_encode(PG_FUNCTION_ARGS)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	bytea	   *data;
	unsigned char *in;
	size_t		len;
	size_t		outlen;
	char	   *out;
	size_t		n = 0;
	uint32		acc = 0;
	int			bits = 0;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	data = PG_GETARG_BYTEA_PP(0);
	in = (unsigned char *) VARDATA_ANY(data);
	len = VARSIZE_ANY_EXHDR(data);
	/* 8 characters per 5 bytes, rounded up; computed without overflow */
	outlen = (len / 5) * 8 + ((len % 5) * 8 + 4) / 5 + 1;
	if (outlen > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("input of mandant.base32_encode() is too long"),
				 errdetail("It has %zu bytes; its base32 form would not fit a text value.", len),
				 errhint("Encode secrets of a few dozen bytes.")));
	out = palloc(outlen);

	for (size_t i = 0; i < len; i++)
	{
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5)
		{
			bits -= 5;
			out[n++] = alphabet[(acc >> bits) & 31];
		}
	}
	if (bits > 0)
		out[n++] = alphabet[(acc << (5 - bits)) & 31];
	out[n] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
