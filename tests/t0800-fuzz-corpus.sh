#!/bin/bash
# Every fuzz target replays its seed corpus and every past crash
# (tests/fuzz/regress/TARGET/) without libFuzzer, in this build (under
# ASan+UBSan in CI's second run): a fixed crash stays fixed. `make fuzz`
# does the fuzzing itself.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
bin=$ROOT/${BUILD_DIR:-build}/tests/fuzz
F=$ROOT/tests/fuzz
for t in image tar blobmeta oci prefetch control hints tarhdr snapreq smcexec; do
	exe=$bin/fuzz_${t}_replay
	# the snapshotter's is built only where gRPC and protobuf-c are
	[ -x "$exe" ] || [ $t != snapreq ] || [ -x "$(dirname "$ANOLE")/anole-snapshotter" ] || continue
	[ -x "$exe" ] || fail "$exe not built"
	files=()
	for f in "$F/corpus/$t"/* "$F/regress/$t"/*; do [ -f "$f" ] && files+=("$f"); done
	[ ${#files[@]} -gt 0 ] || fail "no corpus for $t"
	(cd "$TMP" && timeout 300 "$exe" "${files[@]}") >"$TMP/$t.log" 2>&1 ||
		fail "fuzz_$t on its corpus: exit $? ($(tail -n 5 "$TMP/$t.log"))"
	echo "fuzz_$t: ${#files[@]} inputs replayed"
done
