/* SPDX-License-Identifier: Apache-2.0 */
/*
 * regtool: drives lib/registry from shell tests (not installed).
 *
 *   regtool push HOST REPO FILE [FROM-REPO [CHUNK]]   prints "how digest"
 *   regtool exists HOST REPO DIGEST                   prints "1 SIZE" or "0"
 *   regtool range HOST REPO DIGEST OFF LEN            the bytes, on stdout
 *   regtool put-manifest HOST REPO REF TYPE FILE
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry/registry.h"
#include "util/digest.h"

static int file_digest(int fd, uint64_t size, char out[DIGEST_STR_LEN + 1])
{
	struct sha256_stream *s = sha256_stream_new();
	char buf[65536];
	for (uint64_t off = 0; off < size;) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);
		if (n <= 0)
			return -1;
		sha256_stream_update(s, buf, (size_t)n);
		off += (uint64_t)n;
	}
	struct digest d;
	sha256_stream_final(s, &d);
	sha256_stream_free(s);
	digest_format(&d, out);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: regtool push|exists|range|put-manifest HOST REPO ...\n");
		return 2;
	}
	struct anole_error err = {0};
	struct registry *r;
	if (registry_new(argv[2], 0, NULL, &err, &r) < 0) {
		fprintf(stderr, "regtool: %s\n", err.msg);
		return 1;
	}
	int rc = 0;
	const char *cmd = argv[1], *repo = argv[3];
	if (!strcmp(cmd, "push")) {
		int fd = open(argv[4], O_RDONLY);
		struct stat st;
		char dg[DIGEST_STR_LEN + 1];
		const char *how = "?";
		if (fd < 0 || fstat(fd, &st) < 0 || file_digest(fd, (uint64_t)st.st_size, dg) < 0) {
			perror(argv[4]);
			return 1;
		}
		rc = registry_blob_push(r, repo, dg, fd, 0, (uint64_t)st.st_size,
					argc > 5 && *argv[5] ? argv[5] : NULL,
					argc > 6 ? strtoull(argv[6], NULL, 0) : 0, &how, &err);
		if (rc >= 0)
			printf("%s %s\n", how, dg);
		close(fd);
	} else if (!strcmp(cmd, "exists")) {
		uint64_t size = 0;
		rc = registry_blob_exists(r, repo, argv[4], &size, &err);
		if (rc >= 0)
			printf(rc ? "1 %llu\n" : "0\n", (unsigned long long)size);
	} else if (!strcmp(cmd, "range") && argc == 7) {
		uint64_t off = strtoull(argv[5], NULL, 0), len = strtoull(argv[6], NULL, 0);
		char *buf = malloc(len ? len : 1);
		rc = buf ? registry_blob_range(r, repo, argv[4], off, len, buf, false, &err) : -1;
		if (rc >= 0 && fwrite(buf, 1, len, stdout) != len)
			rc = -1;
		free(buf);
	} else if (!strcmp(cmd, "put-manifest") && argc == 7) {
		FILE *f = fopen(argv[6], "rb");
		char body[1 << 20];
		size_t n = f ? fread(body, 1, sizeof(body), f) : 0;
		if (f)
			fclose(f);
		rc = registry_put_manifest(r, repo, argv[4], argv[5], body, n, &err);
	} else {
		fprintf(stderr, "regtool: bad command\n");
		rc = -1;
	}
	if (rc < 0 && err.msg[0])
		fprintf(stderr, "regtool: %s\n", err.msg);
	registry_free(r);
	return rc < 0 ? 1 : 0;
}
