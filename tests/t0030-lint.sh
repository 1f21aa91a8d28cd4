#!/bin/bash
# test: cpu
# cppcheck (warning and portability checks) finds nothing in lib/, cli/
# and tests/fuzz/. Suppressed, for reasons: memleak (it does not know
# __attribute__((cleanup)); LeakSanitizer and valgrind cover leaks),
# missingIncludeSystem (system headers are not analysed; jansson's
# iteration macros come from tests/lib/jansson.cfg instead).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd cppcheck
case "${BUILD_DIR:-build}" in *asan*) skip "static checks run once, in the plain suite" ;; esac
cd "$ROOT"
cppcheck --quiet --std=c11 --enable=warning,portability --inline-suppr --error-exitcode=1 \
	-I include -I lib -D_GNU_SOURCE --library=tests/lib/jansson.cfg \
	--suppress=missingIncludeSystem --suppress=memleak \
	--template='{file}:{line}: {severity} {id}: {message}' \
	lib cli tests/fuzz >"$TMP/cppcheck.out" 2>&1 || { cat "$TMP/cppcheck.out"; fail "cppcheck found problems"; }
echo "cppcheck: clean ($(find lib cli tests/fuzz -name '*.c' | wc -l) files)"
