# Kiln: one GNU Makefile (STYLE.md 3.7).
#   make                 release build of build/release/kiln (and ./kiln, a link to it)
#   make test            unit + integration tests (TAP; ends with "N passed, N failed, N skipped")
#   make BUILD=asan test the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz            libFuzzer targets (clang) in build/fuzz/
#   make bench           kernel and model benchmarks
#   make fmt | lint
#   make deploy-check    the container image's runtime packages run kiln (debootstrap, root)
BUILD ?= release
# O=DIR: a private build tree (several people building at once). The comment is on its own
# line: make keeps the spaces before a trailing comment in the value.
O     ?= build/$(BUILD)
CC    ?= cc
ifeq ($(BUILD),fuzz)
  CC := clang
endif

PKGS     := libevent libevent_pthreads jansson libpcre2-8 libxxhash libutf8proc libcurl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 \
        -Wdouble-promotion -Wundef -Wnull-dereference -Werror=implicit-function-declaration \
        -Werror=incompatible-pointer-types
ifneq ($(WERROR),0)
  WARN += -Werror
endif
CFLAGS  := -std=c11 -D_GNU_SOURCE -g -Isrc $(WARN) $(PKG_CFLAGS) -MMD -MP -pthread
LDFLAGS := -pthread
LDLIBS  := $(PKG_LIBS) -lm

ifeq ($(BUILD),release)
  CFLAGS  += -O2 -flto=auto
  LDFLAGS += -O2 -flto=auto
else ifeq ($(BUILD),debug)
  CFLAGS  += -O0
else ifeq ($(BUILD),asan)
  CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(BUILD),tsan)
  CFLAGS  += -O1 -fsanitize=thread
  LDFLAGS += -fsanitize=thread
else ifeq ($(BUILD),fuzz)
  CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
             -Wno-unused-command-line-argument
  LDFLAGS += -fsanitize=fuzzer,address,undefined
else
  $(error BUILD must be release, debug, asan, tsan or fuzz)
endif

# Per-file ISA flags: SIMD kernels are compiled for their ISA only and picked at run time
# (kernels/dispatch.c), so one binary runs on any x86-64.
$(O)/src/kernels/x86/avx2_%.o:   CFLAGS += -mavx2 -mfma -mf16c
$(O)/src/kernels/x86/avx512_%.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512dq \
                                           -mavx512vnni -mavx512bf16 -mfma -mf16c -mbmi2
# AVX-512 with VBMI, GFNI and BITALG (Ice Lake, Zen 4 and later): a table of its own over AVX-512's
$(O)/src/kernels/x86/avx512vbmi_%.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512dq \
                                               -mavx512vnni -mavx512bf16 -mfma -mf16c -mbmi2 \
                                               -mavx512vbmi -mgfni -mavx512bitalg

MAIN_SRC := src/cli/main.c
LIB_SRC  := $(filter-out $(MAIN_SRC),$(shell find src -name '*.c' | sort))
LIB_OBJ  := $(LIB_SRC:%.c=$(O)/%.o)
TEST_SRC := tests/runner.c $(sort $(wildcard tests/unit/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(O)/%.o)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

KILN  := $(O)/kiln
TESTS := $(O)/kiln-tests

.PHONY: all test unit e2e fuzz bench fmt lint clean deploy-check
all: $(KILN)
ifeq ($(BUILD),release)
	@if [ "$(O)" = build/release ]; then ln -sfn $(KILN) kiln; fi  # ./kiln: the default build only
endif

# the status page is assembled into its object (.incbin), which -MMD does not see
$(O)/src/net/status_page.o: src/net/status.html

$(O)/libkiln.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(KILN): $(O)/$(MAIN_SRC:.c=.o) $(O)/libkiln.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Whole archive, so constructor-registered pieces in the library are never dropped.
$(TESTS): $(TEST_OBJ) $(O)/libkiln.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) -Wl,--whole-archive $(O)/libkiln.a -Wl,--no-whole-archive $(LDLIBS)

$(O)/tests/%.o: CFLAGS += -Itests
$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

test: unit e2e

unit: $(KILN) $(TESTS)
	KILN_BIN=$(abspath $(KILN)) $(TESTS) $(T)

# End-to-end tests in node with the official openai package (tests/e2e); skipped with a
# message when node or its packages are missing, a failure when CI is set (.ci/run).
# Sanitizer reports of every kiln process the tests start go to files under $(O)/e2e-reports
# (a child's stderr is the test's to read): any file there fails the run. A run that is not
# over in E2E_TIMEOUT seconds is killed and fails (2 min here, 4 under ASan): a test that
# hangs must fail CI with its name in the log, not run into CI's own limit with no report.
E2E_REPORTS := $(abspath $(O))/e2e-reports
E2E_TIMEOUT ?= 900
e2e: $(KILN)
	@if command -v node >/dev/null && [ -d tests/e2e/node_modules ] && \
	    [ -n "$$(ls tests/e2e/*.test.mjs 2>/dev/null)" ]; then \
	  rm -rf $(E2E_REPORTS) && mkdir -p $(E2E_REPORTS) && \
	  ASAN_OPTIONS=log_path=$(E2E_REPORTS)/asan UBSAN_OPTIONS=log_path=$(E2E_REPORTS)/ubsan:print_stacktrace=1 \
	  TSAN_OPTIONS=log_path=$(E2E_REPORTS)/tsan KILN_BIN=$(abspath $(KILN)) \
	  timeout -k 10 $(E2E_TIMEOUT) node --test --test-concurrency=1 tests/e2e/ || \
	    { rc=$$?; [ $$rc = 124 ] && echo "e2e: killed after $(E2E_TIMEOUT) s"; exit $$rc; } && \
	  if [ -n "$$(ls $(E2E_REPORTS))" ]; then head -n 60 $(E2E_REPORTS)/*; \
	    echo "e2e: sanitizer reports in $(E2E_REPORTS)"; exit 1; fi; \
	elif [ -n "$$CI" ]; then echo "e2e: node or tests/e2e/node_modules missing, and CI is set:" \
	  "a failure, not a skip (tools/install-deps.sh installs them)"; exit 1; \
	else echo "# e2e: skipped (run 'npm ci' in tests/e2e first)"; fi

FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
fuzz:
	$(MAKE) BUILD=fuzz $(FUZZ_BIN)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libkiln.a
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< build/fuzz/libkiln.a $(LDLIBS)

# The kernel benchmark (tests/bench/bench_kernels.c): matmul GB/s and GFLOP/s per dtype and ISA
# (t_blocks.o: random blocks for the types Kiln has no quantizer for).
BENCH_KERNELS := $(O)/bench-kernels
$(BENCH_KERNELS): $(O)/tests/bench/bench_kernels.o $(O)/tests/bench/bench_limits.o \
                  $(O)/tests/unit/t_blocks.o $(O)/libkiln.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench: $(KILN) $(BENCH_KERNELS)
	@if [ -x tools/bench.sh ]; then KILN_BIN=$(abspath $(KILN)) \
	  KILN_BENCH_KERNELS=$(abspath $(BENCH_KERNELS)) tools/bench.sh; fi

# The image's runtime packages (deploy/runtime-packages.txt) are complete: kiln serve, gateway
# and pull run in a debootstrap'ed root filesystem of exactly those (root, a Debian mirror,
# ~3 min the first time; not part of `make test`).
deploy-check: $(KILN)
	KILN_BIN=$(abspath $(KILN)) tools/deploy_check.sh

# Every C file under src/ and tests/ is formatted by .clang-format; `make lint` fails on any
# file that is not, on an include that points up the layer order, and on cppcheck warnings.
FMT_SRC = $$(find src tests -name '*.[ch]' -not -path '*/node_modules/*')
fmt:
	clang-format -i $(FMT_SRC)
lint:
	clang-format --dry-run --Werror $(FMT_SRC)
	tools/check_layers.sh
	cppcheck --quiet --error-exitcode=1 --enable=warning --inline-suppr -Isrc src

clean:
	rm -rf build kiln

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(O)/src/cli/main.d $(O)/tests/bench/bench_kernels.d \
         $(O)/tests/bench/bench_limits.d
