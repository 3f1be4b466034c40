/*-------------------------------------------------------------------------
 *
 * scope.c
 *		The five scopes (read, write, delete, admin, internal): their names,
 *		bits and text forms.
 *
 * Scopes travel as bits inside the C code, as a comma list in
 * app.current_scopes, as text[] in SQL (roles, service accounts,
 * current_scopes()) and as a JSON array in tokens.  Every conversion lives
 * here, so that the canonical order (the order of scope_names) and the
 * refusal of an unknown name are the same everywhere.
 *
 * MandantParseScopeList runs inside a check hook: it must not allocate or
 * raise, so it reports the offending element instead.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/scope.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "mandant.h"

/* The scopes in canonical order; bit i is 1 << i. */
static const char *const scope_names[MANDANT_SCOPE_COUNT] = {
	"read", "write", "delete", "admin", "internal"
};

/*
 * MandantScopeName returns the name of a single scope bit, or NULL.
 */
const char *
MandantScopeName(int scope_bit)
{
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (scope_bit == (1 << i))
			return scope_names[i];
	}
	return NULL;
}

/*
 * ScopeBitOf returns the bit of the scope named by the first len bytes of
 * name, or 0 if there is no such scope.
 */
static int
ScopeBitOf(const char *name, size_t len)
{
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (strncmp(name, scope_names[i], len) == 0 && scope_names[i][len] == '\0')
			return 1 << i;
	}
	return 0;
}

/*
 * MandantScopeBit returns the bit of a scope name, or 0 if unknown.
 */
int
MandantScopeBit(const char *name)
{
	return ScopeBitOf(name, strlen(name));
}

/*
 * MandantRaiseUnknownScope refuses a name that is not a scope; detail says
 * where it was found.
 */
void
MandantRaiseUnknownScope(const char *name, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown scope \"%s\"", name),
			 errdetail("%s", detail),
			 errhint("Valid scopes are read, write, delete, admin and internal.")));
}

/*
 * MandantParseScopeList turns "read,write" into scope bits without
 * allocating (it runs in check hooks).  On an unknown name it returns false
 * and points *bad and *badlen at the offending element.
 */
bool
MandantParseScopeList(const char *list, int *scopes, const char **bad, int *badlen)
{
	const char *start = list;

	*scopes = 0;
	while (*start != '\0')
	{
		const char *end = start;
		int			bit;

		while (*end != '\0' && *end != ',')
			end++;
		bit = ScopeBitOf(start, (size_t) (end - start));
		if (bit == 0)
		{
			*bad = start;
			*badlen = (int) (end - start);
			return false;
		}
		*scopes |= bit;
		start = (*end == ',') ? end + 1 : end;
	}
	return true;
}

/*
 * MandantScopeList formats scope bits as the canonical comma list, e.g.
 * "read,write" (palloc'd; empty for none).
 */
char *
MandantScopeList(int scopes)
{
	StringInfoData list;

	initStringInfo(&list);
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (scopes & (1 << i))
			appendStringInfo(&list, "%s%s", list.len > 0 ? "," : "", scope_names[i]);
	}
	return list.data;
}

/*
 * MandantScopeArray returns scope bits as text[] in canonical order.
 */
ArrayType *
MandantScopeArray(int scopes)
{
	Datum		elems[MANDANT_SCOPE_COUNT];
	int			nelems = 0;

	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (scopes & (1 << i))
			elems[nelems++] = CStringGetTextDatum(scope_names[i]);
	}
	return construct_array(elems, nelems, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * MandantScopeArrayBits returns the bits of a text[] of scope names.
 * strict: a NULL element or an unknown name is an error (input from a
 * caller); otherwise they are skipped (a stored role written by an older
 * release).
 */
int
MandantScopeArrayBits(ArrayType *array, bool strict)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			scopes = 0;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	for (int i = 0; i < nelems; i++)
	{
		char	   *name;
		int			bit;

		if (nulls[i])
		{
			if (!strict)
				continue;
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("scope must not be null"),
					 errdetail("Element %d of the scope array is NULL.", i + 1),
					 errhint("Valid scopes are read, write, delete, admin and internal.")));
		}
		name = TextDatumGetCString(elems[i]);
		bit = MandantScopeBit(name);
		if (bit == 0 && strict)
			MandantRaiseUnknownScope(name, psprintf("Element %d of the scope array is \"%s\".",
													i + 1, name));
		scopes |= bit;
	}
	return scopes;
}
