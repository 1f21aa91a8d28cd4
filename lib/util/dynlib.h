/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Libraries loaded on first use. libcurl and libarchive (and what they
 * pull in: GnuTLS, Kerberos, LDAP, libxml2, ICU, libstdc++) made every
 * exec of anole map ~40 libraries, most of its cold start; only registry
 * fetches and build/convert/export use them.
 *
 * dyn_curl.h and dyn_archive.h each list their library's functions; the
 * code includes them instead of the library's headers and calls the
 * functions by their usual names, which go through a table that dlsym
 * fills (dynlib.c).
 */
#ifndef ANOLE_DYNLIB_H
#define ANOLE_DYNLIB_H

#include <stdbool.h>

struct anole_error;
struct dynlib;

/* dlsym, or NULL with the reason noted in @lib for its users. */
void *dynlib_sym(struct dynlib *lib, void *handle, const char *name);

/*
 * For a library whose functions FUNCS(X) lists, one X(name) each:
 *   struct API, a pointer per function, named after it and typed by the
 *   library's own declaration, and the one table, API;
 *   int API_load(struct anole_error *err): 0 once loaded, or -errno with
 *   @err naming the library and why not. Thread-safe: the first caller
 *   loads, the others wait for it (dynlib.c defines it);
 *   API_fill_(lib, handle), for dynlib.c: dlsym every function, false at
 *   the first one missing.
 */
#define DYNLIB_DECLARE(API, FUNCS)                                                                 \
	struct API {                                                                               \
		FUNCS(DYNLIB_MEMBER_)                                                              \
	};                                                                                         \
	extern struct API API;                                                                     \
	int API##_load(struct anole_error *err);                                                   \
	static inline bool API##_fill_(struct dynlib *lib, void *handle)                           \
	{                                                                                          \
		struct API *table = &(API);                                                        \
		FUNCS(DYNLIB_FILL_)                                                                \
		return true;                                                                       \
	}
#define DYNLIB_MEMBER_(f) __typeof__(f) *f; // NOLINT(bugprone-macro-parentheses): a member name
#define DYNLIB_FILL_(f)                                                                            \
	if (!(table->f = (__typeof__(table->f))dynlib_sym(lib, handle, #f)))                       \
		return false;

#endif
