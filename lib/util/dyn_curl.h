/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl through dlopen (see dynlib.h). Include this instead of
 * <curl/curl.h>; call anole_curl_load() before the first curl_* call.
 * Loading also runs curl_global_init().
 */
#ifndef ANOLE_DYN_CURL_H
#define ANOLE_DYN_CURL_H

#include <curl/curl.h>

#include "util/dynlib.h"

#define ANOLE_CURL_SONAME "libcurl.so.4"

/* Every curl function anole calls: listed here and again as a macro
 * below. A name missing below links to the real symbol and fails the
 * link (libcurl is not linked); one missing here fails to compile. */
#define ANOLE_CURL_FUNCS(X)                                                                        \
	X(curl_global_init)                                                                        \
	X(curl_easy_init)                                                                          \
	X(curl_easy_cleanup)                                                                       \
	X(curl_easy_reset)                                                                         \
	X(curl_easy_setopt)                                                                        \
	X(curl_easy_getinfo)                                                                       \
	X(curl_easy_perform)                                                                       \
	X(curl_easy_strerror)                                                                      \
	X(curl_easy_escape)                                                                        \
	X(curl_free)                                                                               \
	X(curl_slist_append)                                                                       \
	X(curl_slist_free_all)

DYNLIB_DECLARE(anole_curl, ANOLE_CURL_FUNCS)

/* gcc's type-checking wrappers call the real symbols: gone with them. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init anole_curl.curl_global_init
#define curl_easy_init anole_curl.curl_easy_init
#define curl_easy_cleanup anole_curl.curl_easy_cleanup
#define curl_easy_reset anole_curl.curl_easy_reset
#define curl_easy_setopt anole_curl.curl_easy_setopt
#define curl_easy_getinfo anole_curl.curl_easy_getinfo
#define curl_easy_perform anole_curl.curl_easy_perform
#define curl_easy_strerror anole_curl.curl_easy_strerror
#define curl_easy_escape anole_curl.curl_easy_escape
#define curl_free anole_curl.curl_free
#define curl_slist_append anole_curl.curl_slist_append
#define curl_slist_free_all anole_curl.curl_slist_free_all

#endif
