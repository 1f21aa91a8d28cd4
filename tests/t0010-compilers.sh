#!/bin/bash
# test: cpu
# The tree builds warning-free (-Werror) with clang as well as gcc.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd clang meson ninja
case "${BUILD_DIR:-build}" in *asan*) skip "builds of its own, not the sanitizer build: checked in the plain suite" ;; esac
CC=clang meson setup "$TMP/build-clang" "$ROOT" >"$TMP/setup.log" 2>&1 || { cat "$TMP/setup.log"; fail "meson setup with clang failed"; }
ninja -C "$TMP/build-clang" >"$TMP/ninja.log" 2>&1 || { tail -40 "$TMP/ninja.log"; fail "clang build failed"; }
"$TMP/build-clang/anole" --version
