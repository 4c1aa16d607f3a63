# asya-state-nats: the nats-kv-buffered-cas connector as an LD_PRELOAD shim and a sidecar.
#
#   make            the preloaded shim, its NATS backend and the asya-state command
#   make test       unit tests (Criterion) and integration tests (real nats-server)
#   make demo       the demo programs against a local nats-server
#   make install    PREFIX=/usr/local DESTDIR=
#   make image      the connector image $(IMAGE):$(VERSION) (scripts/base-image.sh first: a Docker
#                   engine and the debian:12 base image, made without a registry when missing)

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -fPIC -fvisibility=hidden -D_GNU_SOURCE -I.
LDFLAGS ?=
# The one version: VERSION, read here for the CLI (--version), the image's tag and label.
VERSION := $(shell cat VERSION)
IMAGE   ?= asya-state-proxy-nats-kv-buffered-cas
CFLAGS  += -DASYA_STATE_VERSION='"$(VERSION)"'

SHIM_LIB    := $(BUILD)/libasya-state-nats-kv.so
KV_LIB      := $(BUILD)/libasya-state-kv.so
CLI         := $(BUILD)/asya-state
UNIT        := $(BUILD)/unit-tests

COMMON_SRC  := $(wildcard common/*.c)
SHIM_SRC    := $(wildcard shim/*.c) $(COMMON_SRC)
KV_SRC      := $(wildcard kv/*.c) $(COMMON_SRC)
CLI_SRC     := $(wildcard cli/*.c) $(wildcard kv/*.c) $(COMMON_SRC) shim/mounts.c shim/path.c
# Pure logic the unit tests exercise without a server.
PURE_SRC    := kv/keycodec.c kv/mindex.c kv/revmem.c shim/mounts.c shim/path.c shim/fdtable.c $(COMMON_SRC)
UNIT_SRC    := $(wildcard tests/unit/*.c)
# The kv/ rules through kv.h on a real nats-server the test binary starts itself.
UNIT_SERVER := $(BUILD)/unit-server-tests
UNIT_SERVER_SRC := $(wildcard tests/unit/server/*.c) $(wildcard kv/*.c) $(COMMON_SRC)
TOOLS_SRC   := $(wildcard tests/tools/*.c)
TOOLS       := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOLS_SRC))

obj = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(2))
SHIM_OBJ    := $(call obj,shim,$(SHIM_SRC))
KV_OBJ      := $(call obj,kv,$(KV_SRC))
CLI_OBJ     := $(call obj,cli,$(CLI_SRC))
UNIT_OBJ    := $(call obj,unit,$(PURE_SRC) $(UNIT_SRC))
UNIT_SERVER_OBJ := $(call obj,unit,$(UNIT_SERVER_SRC))

HEADERS     := $(wildcard */*.h */*.def) VERSION

.PHONY: all test unit integration demo install install-bundle clean image
all: $(SHIM_LIB) $(KV_LIB) $(CLI) $(TOOLS)

# One pattern rule per object tree: a single rule with several pattern targets would be a
# grouped rule (one run "makes" all four), leaving e.g. build/cli/kv/keycodec.o unbuilt.
define compile_rule
$(BUILD)/$(1)/%.o: %.c $$(HEADERS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -c -o $$@ $$<
endef
$(foreach t,shim kv cli unit,$(eval $(call compile_rule,$(t))))

# The preloaded library: no libnats, exports exactly the hooks listed in shim/hooks.def.
$(BUILD)/shim.map: shim/hooks.def
	@mkdir -p $(dir $@)
	{ echo '{ global:'; $(CC) -E -P -x c -D'HOOK(r,n,p)=n;' $< ; echo 'local: *; };'; } > $@

$(SHIM_LIB): $(SHIM_OBJ) $(BUILD)/shim.map
	$(CC) -shared -o $@ $(SHIM_OBJ) -Wl,--version-script=$(BUILD)/shim.map $(LDFLAGS) -ldl -lpthread

# The NATS backend, dlopen()ed by the shim on first use: exports kv_backend only.
# Its run path is $ORIGIN (DT_RPATH, which also applies to libnats's own dependencies): a
# libnats.so.3.4 and libprotobuf-c.so.1 beside it (make install-bundle) are found first, so
# the preload works in actor images without them; without them, the system's as before.
$(KV_LIB): $(KV_OBJ) kv/exports.map
	$(CC) -shared -o $@ $(KV_OBJ) -Wl,--version-script=kv/exports.map \
	    -Wl,--disable-new-dtags,-rpath,'$$ORIGIN' $(LDFLAGS) -lnats -lpthread

$(CLI): $(CLI_OBJ)
	$(CC) -o $@ $(CLI_OBJ) $(LDFLAGS) -lnats -lmicrohttpd -ljansson -lpthread

$(BUILD)/tools/%: tests/tools/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=default -o $@ $< -lnats -lpthread

$(UNIT): $(UNIT_OBJ)
	$(CC) -o $@ $(UNIT_OBJ) $(LDFLAGS) -lcriterion -ldl -lpthread

$(UNIT_SERVER): $(UNIT_SERVER_OBJ)
	$(CC) -o $@ $(UNIT_SERVER_OBJ) $(LDFLAGS) -lcriterion -lnats -lpthread

unit: $(UNIT) $(UNIT_SERVER)
	$(UNIT) --jobs 2
	$(UNIT_SERVER) --jobs 2

integration: all
	tests/integration/run

test: unit integration

demo: all
	demo/run

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/asya $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0644 $(SHIM_LIB) $(KV_LIB) $(DESTDIR)$(PREFIX)/lib/asya/
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/asya-state
	install -m 0644 docs/asya-state.1 $(DESTDIR)$(PREFIX)/share/man/man1/asya-state.1
	install -m 0644 docs/asya-state.bash \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/asya-state

# install, plus the backend's own libraries (the ones it was linked against) beside it in
# lib/asya/: what the image ships for the preload's init container.
install-bundle: install
	for l in $$(ldd $(KV_LIB) | awk '$$1 ~ /^lib(nats|protobuf-c)\.so/ { print $$3 }'); do \
	    install -m 0644 "$$l" $(DESTDIR)$(PREFIX)/lib/asya/ || exit 1; done
	ls $(DESTDIR)$(PREFIX)/lib/asya/libnats.so.* $(DESTDIR)$(PREFIX)/lib/asya/libprotobuf-c.so.* >/dev/null

clean:
	rm -rf $(BUILD)

# The classic builder (no BuildKit plugin needed); --network host: apt inside the build reaches
# Debian's mirror with no bridge network on the engine.
image:
	scripts/base-image.sh
	DOCKER_BUILDKIT=0 docker build --network host --target runtime --build-arg VERSION=$(VERSION) \
	    -t $(IMAGE):$(VERSION) .

# ---- fuzz: libFuzzer targets for the pure logic (key codec, mounts parser, paths) ----
#   make fuzz-build        build/fuzz/fuzz_{keycodec,mounts,path}
#   make fuzz              run each for FUZZ_SECONDS on a temporary copy of its corpus
# Seed corpora live in tests/fuzz/corpus/<target>/ and are never written by a run; crash
# inputs go to build/fuzz/artifacts/. stderr of the target is closed (-close_fd_mask=2):
# the mounts parser reports every problem there.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -I. \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS := keycodec mounts path
FUZZ_SRC     := kv/keycodec.c shim/mounts.c shim/path.c common/log.c
FUZZ_BINS    := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))

.PHONY: fuzz-build fuzz
fuzz-build: $(FUZZ_BINS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC)

fuzz: fuzz-build
	@mkdir -p $(BUILD)/fuzz/artifacts
	@for t in $(FUZZ_TARGETS); do \
	    dir=$$(mktemp -d) || exit 1; \
	    cp tests/fuzz/corpus/$$t/* $$dir/; \
	    log=$(BUILD)/fuzz/fuzz_$$t.log; \
	    $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -close_fd_mask=2 \
	        -artifact_prefix=$(BUILD)/fuzz/artifacts/fuzz_$$t- $$dir \
	        >$$log 2>&1; \
	    rc=$$?; rm -rf $$dir; \
	    if [ $$rc -ne 0 ]; then tail -40 $$log; echo "fuzz_$$t FAILED (rc $$rc, $$log)"; \
	        exit $$rc; fi; \
	    echo "fuzz_$$t: $$(grep -E '^Done' $$log)"; \
	done

# ---- bench: the figures of issue 5 (printed, not a test; not part of `make test`) ----------
#   make bench             builds what it needs, runs bench/run against a private nats-server
#   make bench-scale       only its scale section (issue 12: 100, 10,000, 100,000 keys);
#                          BENCH_SCALE_QUICK=1 for 100 and 10,000 keys (about 15 s)
#   bench/readme_table.py OUTPUT   writes docs/performance.md's table from that output (the
#                          rows of sections a BENCH_ONLY run did not measure are kept)
BENCH_PROGS := $(BUILD)/bench/shimprog $(BUILD)/bench/directprog

.PHONY: bench bench-scale
$(BUILD)/bench/shimprog: bench/shimprog.c bench/common.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=default -o $@ $<

$(BUILD)/bench/directprog: bench/directprog.c bench/common.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fvisibility=default -o $@ $< -lnats -lpthread

# The peer (@nats-io/kv, official JS client): installed beside its script when npm is there;
# without it the bench prints that the peer is skipped.
$(BUILD)/bench/peer/peer.mjs: bench/peer.mjs
	@mkdir -p $(dir $@)
	cp $< $@
	-@cd $(dir $@) && [ -d node_modules/@nats-io/kv ] || { command -v npm >/dev/null && \
	    npm install --no-audit --no-fund --silent @nats-io/kv @nats-io/transport-node \
	    >/dev/null 2>&1; } || echo "bench: npm install failed: the peer will be skipped"

bench: all $(BENCH_PROGS) $(BUILD)/bench/peer/peer.mjs
	BUILD=$(BUILD) bench/run

bench-scale: all $(BENCH_PROGS)
	BUILD=$(BUILD) BENCH_ONLY=scale bench/run

# ---- asan, memcheck, lint: the tools of issue 4 ("Tooling in CI"); each prints a summary ----
#   make asan      shim, backend, cli, tools and unit tests built with ASan+UBSan into
#                  $(BUILD)/asan; the unit tests, then programs under the ASan shim
#                  (tests/integration/progs/hygiene_tools.py asan, a private nats-server)
#   make memcheck  valgrind memcheck of a C program under the shim and of `asya-state serve`
#                  answering requests; suppressions (third-party only) in
#                  tests/integration/progs/hygiene_valgrind.supp
#   make lint      cppcheck and clang-tidy (.clang-tidy) on shim/ kv/ cli/ common/
ASAN_CC     ?= gcc
ASAN_FLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
LINT_SRC     = $(wildcard shim/*.c kv/*.c cli/*.c common/*.c)

.PHONY: asan memcheck lint
asan:
	@CC=$(ASAN_CC) CFLAGS='$(ASAN_FLAGS)' LDFLAGS='-fsanitize=address,undefined' \
	    $(MAKE) --no-print-directory BUILD=$(BUILD)/asan all $(BUILD)/asan/unit-tests >$(BUILD)/asan.log 2>&1 \
	    || { tail -30 $(BUILD)/asan.log; echo "asan: build FAILED ($(BUILD)/asan.log)"; exit 1; }
	@ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(BUILD)/asan/unit-tests --jobs 2 >$(BUILD)/asan-unit.log 2>&1; rc=$$?; \
	    grep -E 'runtime error|Sanitizer' $(BUILD)/asan-unit.log | head -20; \
	    echo "asan: unit tests: $$(sed 's/\x1b\[[0-9;]*m//g' $(BUILD)/asan-unit.log | grep -E 'Synthesis' | tail -1)"; \
	    if [ $$rc -ne 0 ] || grep -qE 'runtime error|ERROR: .*Sanitizer' $(BUILD)/asan-unit.log; then \
	        tail -30 $(BUILD)/asan-unit.log; echo "asan: unit tests FAILED"; exit 1; fi
	@python3 tests/integration/progs/hygiene_tools.py asan $(BUILD)/asan

memcheck: all
	@python3 tests/integration/progs/hygiene_tools.py memcheck $(BUILD)

lint:
	@mkdir -p $(BUILD)
	@cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr \
	    --std=c11 -D_GNU_SOURCE -I. -q $(LINT_SRC) >$(BUILD)/cppcheck.log 2>&1; rc=$$?; \
	    cat $(BUILD)/cppcheck.log; \
	    echo "lint: cppcheck: $(words $(LINT_SRC)) files, $$(grep -cE ': (error|warning|performance|portability):' $(BUILD)/cppcheck.log) findings"; \
	    exit $$rc
	@printf '%s\n' $(LINT_SRC) | xargs -P2 -I{} clang-tidy --quiet {} -- -std=gnu11 -D_GNU_SOURCE -I. \
	    >$(BUILD)/clang-tidy.log 2>/dev/null; rc=$$?; \
	    n=$$(grep -cE ': (error|warning): ' $(BUILD)/clang-tidy.log); \
	    grep -E ': (error|warning): ' $(BUILD)/clang-tidy.log; \
	    echo "lint: clang-tidy: $(words $(LINT_SRC)) files, $$n findings"; \
	    [ $$rc -eq 0 ] && [ $$n -eq 0 ]
