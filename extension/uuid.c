/*-------------------------------------------------------------------------
 *
 * uuid.c
 *		The text form of uuids, one parser and one formatter for every
 *		file of mandant.
 *
 * Messages name tenants and users by uuid, and the context settings and
 * token claims carry uuids as text.  uuid_in accepts many spellings (braces,
 * no dashes) and raises on bad input; mandant only ever writes the form of
 * uuid_out, so its parser accepts exactly that and answers false, letting
 * each caller raise its own error (a check hook must not raise; a token
 * with a bad claim is MD051).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/uuid.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "mandant.h"

/*
 * MandantParseUuid reads the 36-character form that uuid_out writes
 * (either case), and nothing else: the context settings and the claims of
 * mandant's own tokens always carry that form.  Returns false for any
 * other text.
 */
bool
MandantParseUuid(const char *text, pg_uuid_t *uuid)
{
	int			byte = 0;

	if (strlen(text) != 36)
		return false;

	for (int i = 0; i < 36;)
	{
		int			hi,
					lo;

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (text[i++] != '-')
				return false;
			continue;
		}
		hi = MandantHexDigitValue(text[i]);
		lo = MandantHexDigitValue(text[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid->data[byte++] = (unsigned char) ((hi << 4) | lo);
		i += 2;
	}
	return byte == UUID_LEN;
}

/*
 * MandantUuidText formats a uuid the way uuid_out does (palloc'd).
 */
char *
MandantUuidText(const pg_uuid_t *uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out,
											   UUIDPGetDatum((pg_uuid_t *) uuid)));
}
