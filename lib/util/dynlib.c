/* SPDX-License-Identifier: Apache-2.0 */
/* Loading libcurl and libarchive on first use (dynlib.h). */
#include "util/dynlib.h"

#include <dlfcn.h>
#include <pthread.h>

#include "util/dyn_archive.h"
#include "util/dyn_curl.h"
#include "util/util.h"

struct dynlib {
	const char *soname;
	pthread_once_t once;
	void (*load)(void); /* under once: sets code and msg on failure */
	int code;           /* errno of the failure, 0 once loaded */
	char msg[512];      /* dlerror()'s line, which names the library */
};

static void note_dlerror(struct dynlib *lib, int code)
{
	const char *e = dlerror();
	lib->code = code;
	snprintf(lib->msg, sizeof(lib->msg), "%s", e ? e : lib->soname);
}

/* RTLD_NOW: a broken install fails here, as an error, not later in the
 * middle of a fetch. Never closed. */
static void *dynlib_open(struct dynlib *lib)
{
	void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		note_dlerror(lib, ELIBACC);
	return h;
}

void *dynlib_sym(struct dynlib *lib, void *handle, const char *name)
{
	dlerror();
	void *p = dlsym(handle, name);
	if (!p)
		note_dlerror(lib, ELIBBAD);
	return p;
}

static int dynlib_load(struct dynlib *lib, struct anole_error *err)
{
	pthread_once(&lib->once, lib->load);
	if (lib->code)
		return anole_err(err, lib->code, "%s", lib->msg);
	return 0;
}

/* ---- libcurl ------------------------------------------------------------ */

struct anole_curl anole_curl;
static void load_curl(void);
static struct dynlib curl_lib = {ANOLE_CURL_SONAME, PTHREAD_ONCE_INIT, load_curl, 0, ""};

static void load_curl(void)
{
	void *h = dynlib_open(&curl_lib);
	if (!h || !anole_curl_fill_(&curl_lib, h))
		return;
	CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (cc != CURLE_OK) {
		curl_lib.code = EIO;
		snprintf(curl_lib.msg, sizeof(curl_lib.msg), "%s: curl_global_init failed: %s",
			 curl_lib.soname, curl_easy_strerror(cc));
	}
}

int anole_curl_load(struct anole_error *err)
{
	return dynlib_load(&curl_lib, err);
}

/* ---- libarchive --------------------------------------------------------- */

struct anole_archive anole_archive;
static void load_archive(void);
static struct dynlib archive_lib = {ANOLE_ARCHIVE_SONAME, PTHREAD_ONCE_INIT, load_archive, 0, ""};

static void load_archive(void)
{
	void *h = dynlib_open(&archive_lib);
	if (h)
		anole_archive_fill_(&archive_lib, h);
}

int anole_archive_load(struct anole_error *err)
{
	return dynlib_load(&archive_lib, err);
}
