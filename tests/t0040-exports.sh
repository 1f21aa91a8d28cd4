#!/bin/bash
# libanole.so exports exactly the functions include/anole/anole.h
# declares: no internal symbol (a non-anole_ name, or an internal helper
# with the prefix), and no declared function missing. A program that
# includes only the public header links against the shared library
# alone and gets one clear error line back.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd nm cc
cd "$ROOT"
lib=${BUILD_DIR:-build}/libanole.so
case $lib in /*) ;; *) lib=$ROOT/$lib ;; esac
[ -f "$lib" ] || fail "no $lib"

nm -D --defined-only "$lib" | awk '{ print $3 }' | sed 's/@.*//' | sort -u >"$TMP/exported"
# Function names declared in the header: an identifier directly before
# "(" on a line that starts a declaration (not a comment, not a typedef).
grep -E '^[a-z].*\banole_[a-z0-9_]+\(' include/anole/anole.h | grep -v '^typedef' |
	grep -oE '\banole_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$TMP/declared"
[ -s "$TMP/declared" ] || fail "found no declarations in include/anole/anole.h"

bad=$(grep -v '^anole_' "$TMP/exported" || true)
[ -z "$bad" ] || fail "libanole.so exports non-anole_ symbols: $(echo "$bad" | head -20 | tr '\n' ' ')"
extra=$(comm -23 "$TMP/exported" "$TMP/declared")
[ -z "$extra" ] || fail "libanole.so exports symbols anole.h does not declare (make them local in lib/libanole.map): $(echo "$extra" | tr '\n' ' ')"
missing=$(comm -13 "$TMP/exported" "$TMP/declared")
[ -z "$missing" ] || fail "anole.h declares functions libanole.so does not export: $(echo "$missing" | tr '\n' ' ')"
echo "libanole.so: exports the $(wc -l <"$TMP/declared") functions of anole.h and nothing else"

cat >"$TMP/user.c" <<'C'
#include <anole/anole.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
	struct anole_image *img = NULL;
	struct anole_error err;
	memset(&err, 0, sizeof(err));
	(void)argc;
	int r = anole_image_open(argv[1], &img, &err);
	if (r >= 0 || img || err.code == 0 || !err.msg[0])
		return 2;
	printf("%s\n", err.msg);
	return 0;
}
C
# The sanitizer build's library leaves the sanitizer runtime to the
# program (-Db_lundef=false), so the program brings it.
san=()
case $lib in *asan*) san=("-fsanitize=address,undefined") ;; esac
cc -std=gnu11 -Wall -Werror "${san[@]}" -I include -o "$TMP/user" "$TMP/user.c" -L "$(dirname "$lib")" -lanole \
	-Wl,-rpath,"$(dirname "$lib")" 2>"$TMP/cc.err" ||
	{ cat "$TMP/cc.err"; fail "a program using only anole.h does not link against libanole.so"; }
out=$("$TMP/user" "$TMP/no-such-image") || fail "public API call through libanole.so failed to report an error"
echo "public API through libanole.so: $out"
case $out in *no-such-image*) ;; *) fail "error line does not name the path: $out" ;; esac
