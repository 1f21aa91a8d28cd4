#!/bin/bash
# test: cpu
# The unit tests are clean under valgrind: no leaks, no invalid accesses.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd valgrind
case "${BUILD_DIR:-build}" in *asan*) skip "sanitizer build: valgrind runs on the plain build" ;; esac
found=0
for t in "$ROOT/${BUILD_DIR:-build}"/tests/unit/test_*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	found=1
	valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
		--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 "$t" \
		>"$TMP/vg.log" 2>&1 || { cat "$TMP/vg.log"; fail "valgrind: $(basename "$t")"; }
	echo "valgrind clean: $(basename "$t")"
done
[ "$found" = 1 ] || fail "no unit test binaries found"
