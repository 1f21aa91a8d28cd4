#!/bin/bash
# test: cpu
# clang-tidy finds nothing in lib/, cli/ and tests/fuzz/ with the checks
# .clang-tidy chooses (clang-analyzer-*, bugprone-*, less those it names
# with reasons), using $BUILD_DIR/compile_commands.json. About 100 s of
# CPU (under 2 min with one process); `make tidy` runs only this.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd clang-tidy
case "${BUILD_DIR:-build}" in *asan*) skip "static checks run once, in the plain suite" ;; esac
cd "$ROOT"
db=${BUILD_DIR:-build}
[ -f "$db/compile_commands.json" ] || fail "$db/compile_commands.json missing: build first"
find lib cli tests/fuzz -name '*.c' | sort >"$TMP/files"
# one file per process, as many as there are CPUs; all findings, then
# fail (clang-tidy exits non-zero on any, as WarningsAsErrors is '*')
rc=0
xargs -P "$(nproc)" -n 1 clang-tidy -p "$db" --quiet <"$TMP/files" >"$TMP/tidy.out" 2>&1 || rc=$?
grep -E ': (warning|error): ' "$TMP/tidy.out" | sort -u >"$TMP/findings" || true
if [ -s "$TMP/findings" ]; then
	cat "$TMP/findings"
	fail "clang-tidy: $(wc -l <"$TMP/findings") findings"
fi
if [ "$rc" != 0 ] || grep -qiE 'error while processing|compilation database|no such file' "$TMP/tidy.out"; then
	cat "$TMP/tidy.out"
	fail "clang-tidy could not process every file (xargs exit status $rc)"
fi
echo "clang-tidy: clean ($(wc -l <"$TMP/files") files)"
