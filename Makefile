# Thin wrapper around Meson; the real build description is meson.build.
BUILD ?= build
MESON_OPTS ?=
# Tests at once in check and asan (tests/run; empty = nproc, 1 = serial).
TEST_JOBS ?=
export TEST_JOBS

.PHONY: all deps check demo bench clean asan fuzz tidy

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

deps:
	scripts/install-deps

check: deps all
	tests/run

demo: deps all
	scripts/demo

bench: deps all
	bench/run
	bench/oci
	bench/dedup
	bench/lazy
	bench/startup
	bench/erofs-utils
	bench/extract
	bench/smc
	bench/sandbox

# The whole suite under AddressSanitizer and UBSan, in its own build dir.
asan: deps
	$(MAKE) BUILD=build-asan MESON_OPTS="-Db_sanitize=address,undefined -Db_lundef=false" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ANOLE_TEST_TIMEOUT=3000 \
		BUILD_DIR=build-asan ANOLE=$(CURDIR)/build-asan/anole tests/run

# libFuzzer targets (clang, ASan+UBSan), each run FUZZ_SECONDS from its seeds.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang $(MAKE) BUILD=build-fuzz MESON_OPTS="-Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link" all
	tests/fuzz/run $(FUZZ_SECONDS)

# clang-tidy alone, with the checks in .clang-tidy (also part of check).
tidy: deps all
	tests/run t0035

clean:
	rm -rf $(BUILD) build-asan build-fuzz
