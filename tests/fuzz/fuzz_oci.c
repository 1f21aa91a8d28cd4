/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: OCI JSON as a layout or registry would serve it. The input is
 * up to four parts separated by "\n--\n": index.json, a manifest, a config
 * and a layer. In the first three, "@N" becomes part N's digest and "#N"
 * its size (N = 1..3), so that mutations of one part still reach the
 * parsers of the next. The layout is then read as a container image
 * (anole build oci:...) and as a lazy image (anole_lazy_open).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "anole/anole.h"
#include "util/digest.h"
#include "util/util.h"

#define PARTS 4

static void substitute(struct strbuf *out, const char *in, size_t len, char dg[PARTS][72],
		       uint64_t sizes[PARTS], int upto)
{
	for (size_t i = 0; i < len; i++) {
		int n = i + 1 < len ? in[i + 1] - '0' : -1;
		if ((in[i] == '@' || in[i] == '#') && n > upto && n < PARTS) {
			char num[24];
			const char *s = dg[n];
			if (in[i] == '#') {
				snprintf(num, sizeof(num), "%llu", (unsigned long long)sizes[n]);
				s = num;
			}
			strbuf_add(out, s, strlen(s));
			i++;
		} else {
			strbuf_add(out, &in[i], 1);
		}
	}
}

/* empty @dir of files (the layout holds files only) */
static void clear(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_type == DT_REG)
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
}

static void put(const char *dir, const char *name, const struct strbuf *b)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	outfile_write(path, b->buf ? b->buf : "", b->len);
}

static char dir[64], blobs[96], out[96];

static void remove_layout(void)
{
	char sub[96];
	snprintf(sub, sizeof(sub), "%s/blobs", dir);
	clear(blobs);
	rmdir(blobs);
	rmdir(sub);
	clear(dir);
	rmdir(dir);
	unlink(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/anole-fuzz-oci-%d", (int)getpid());
		snprintf(blobs, sizeof(blobs), "%s/blobs/sha256", dir);
		snprintf(out, sizeof(out), "%s.img", dir);
		atexit(remove_layout);
	}
	/* split */
	const char *part[PARTS] = {0};
	size_t plen[PARTS] = {0};
	const char *p = (const char *)data, *end = p + size;
	int n = 0;
	while (n < PARTS) {
		const char *sep = n < PARTS - 1 ? memmem(p, (size_t)(end - p), "\n--\n", 4) : NULL;
		part[n] = p;
		plen[n] = sep ? (size_t)(sep - p) : (size_t)(end - p);
		n++;
		if (!sep)
			break;
		p = sep + 4;
	}
	/* blobs from the last part up, each with the digests of those after it */
	char dg[PARTS][72] = {{0}};
	uint64_t sizes[PARTS] = {0};
	struct strbuf body[PARTS] = {{0}};
	char sub[96];
	snprintf(sub, sizeof(sub), "%s/blobs", dir);
	mkdir(dir, 0700);
	mkdir(sub, 0700);
	mkdir(blobs, 0700);
	clear(blobs);
	clear(dir);
	for (int i = n - 1; i >= 0; i--) {
		substitute(&body[i], part[i] ? part[i] : "", plen[i], dg, sizes, i);
		if (i == 0)
			break;
		struct digest d;
		sha256(body[i].buf ? body[i].buf : "", body[i].len, &d);
		digest_format(&d, dg[i]);
		sizes[i] = body[i].len;
		put(blobs, dg[i] + 7, &body[i]);
	}
	put(dir, "index.json", &body[0]);
	struct strbuf layout = {0};
	strbuf_add(&layout, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
	put(dir, "oci-layout", &layout);

	char ref[128];
	snprintf(ref, sizeof(ref), "oci:%s:t", dir);
	struct anole_build_options o = {0};
	struct anole_build_stats st;
	struct anole_error err = {0};
	bool verbose = getenv("ANOLE_FUZZ_VERBOSE");
	if (anole_build(ref, out, &o, &st, &err) >= 0)
		unlink(out);
	else if (verbose)
		fprintf(stderr, "build: %s\n", err.msg);
	struct anole_lazy_info *li = NULL;
	if (anole_lazy_open(ref, 0, &li, &err) >= 0)
		anole_lazy_free(li);
	else if (verbose)
		fprintf(stderr, "lazy: %s\n", err.msg);
	for (int i = 0; i < PARTS; i++)
		strbuf_release(&body[i]);
	strbuf_release(&layout);
	return 0;
}
