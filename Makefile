# rackboot — the two commands: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
DATA_DIR ?= $(CURDIR)/var/data
ASSETS_DIR ?= $(CURDIR)/var/assets
ADMIN_LISTEN ?= 127.0.0.1:8080
BOOT_HTTP_LISTEN ?= 127.0.0.1:50042
TFTP_LISTEN ?= 127.0.0.1:6969
# Debian packages: what `make run` needs, and what the interop/e2e tests drive.
RUN_PKGS := ca-certificates curl busybox-static cpio kmod
# Appliance image (image/build.sh); the e2e test (tests/tests/image.rs) also needs these.
IMAGE_PKGS := systemd-boot-efi binutils mtools fdisk e2fsprogs qemu-utils kmod cpio busybox-static python3
IMAGE_DIR ?= $(CURDIR)/target/image
IMAGE_OVERLAY ?= lab
TEST_PKGS := $(RUN_PKGS) ethtool gnupg chromium chromium-driver iproute2 openipmi ipmitool kea-admin dnsmasq-base tftp-hpa atftp tftpd-hpa tcpdump nftables qemu-system-x86 ipxe ipxe-qemu ovmf busybox-static cpio python3 $(IMAGE_PKGS)
# Sans-IO crates: must never depend on tokio (checked by `make check`).
SANS_IO_CRATES := rackboot-tftp rackboot-dhcp rackboot-ipxe rackboot-config rackboot-store rackboot-lifecycle rackboot-ipmi rackboot-tunnel

.PHONY: help deps deps-test build release run serve check test test-assets bench hot-functions assets image clean

help:
	@echo "make run    (root) a virtual rack: segment, site DHCP, rackboot, SERVERS=$(SERVERS) VMs with BMCs;"
	@echo "            admin page on http://$(ADMIN_LISTEN), a demo scenario moves the machines; Ctrl-C stops"
	@echo "make serve  build and serve standalone on loopback (data in var/), no segment"
	@echo "make test   install test peers, run the gate (fmt, clippy, no-tokio) and every test"
	@echo "make check  the gate alone; make deps / deps-test install packages; make clean"
	@echo "make fuzz   every fuzz target FUZZ_SECONDS each (default $(FUZZ_SECONDS)); make fuzz-smoke: $(FUZZ_SMOKE_SECONDS) s each"
	@echo "make assets iPXE binaries into var/assets; make bench  benchmarks vs real peers"
	@echo "make image  appliance disk image in $(IMAGE_DIR) (IMAGE_OVERLAY=lab|prod): rackboot.img, .qcow2, .efi"

# Idempotent: apt only runs when a package is missing.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing — run as root or: sudo apt-get install$$missing"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(RUN_PKGS))
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

# Python peers (sushy-emulator for Redfish, pyghmi for an RMCP+ cipher-17 BMC) in var/venv.
VENV := $(CURDIR)/var/venv
PY_PEERS := sushy-tools==2.2.0 pyghmi==1.6.19

deps-test: deps
	$(call apt_install,$(TEST_PKGS))
	@# Again: installing Debian's qemu-system-x86 removes a newer qemu-utils (a backport) that
	@# the first check found, and with it qemu-img; this puts the matching one back.
	$(call apt_install,$(TEST_PKGS))
	@[ -x $(VENV)/bin/sushy-emulator ] && [ -x $(VENV)/bin/fakebmc ] || { \
	  echo "creating $(VENV) with $(PY_PEERS)"; python3 -m venv $(VENV) && $(VENV)/bin/pip install -q $(PY_PEERS); }

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --release -p rackboot

# The virtual rack (tests/src/bin/virtual-rack.rs): network namespaces, dnsmasq as the site DHCP
# server, rackboot in proxy mode, QEMU servers behind ipmi_sim / sushy-emulator BMCs.
SERVERS ?= 3
SCENARIO ?= demo
run:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make run builds a virtual rack (network namespaces, QEMU VMs, BMC simulators) and needs root:"; \
	  echo "    sudo make run [SERVERS=5]"; \
	  echo "to serve a real provisioning segment instead: make serve, or"; \
	  echo "    rackboot serve --interface <provisioning NIC>"; exit 1; fi
	@$(MAKE) --no-print-directory test-assets
	$(CARGO) build -p rackboot -p rackboot-e2e --bin rackboot --bin virtual-rack
	./target/debug/virtual-rack --servers $(SERVERS) --scenario $(SCENARIO) \
	  --admin-listen $(ADMIN_LISTEN) --dir $(CURDIR)/var/virtual-rack

serve: release assets
	@mkdir -p $(DATA_DIR) $(ASSETS_DIR)/tftp
	@echo "rackboot: admin http://$(ADMIN_LISTEN)  boot http://$(BOOT_HTTP_LISTEN)  tftp $(TFTP_LISTEN)  data $(DATA_DIR)"
	@echo "admin token: $(DATA_DIR)/admin-token   (Ctrl-C stops)"
	RACKBOOT_DATA_DIR=$(DATA_DIR) ./target/release/rackboot serve \
	  --data-dir $(DATA_DIR) --assets-dir $(ASSETS_DIR) \
	  --admin-listen $(ADMIN_LISTEN) --boot-http-listen $(BOOT_HTTP_LISTEN) \
	  --tftp-listen $(TFTP_LISTEN) --dhcp-mode off

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@for c in $(SANS_IO_CRATES); do \
	  if $(CARGO) tree -p $$c -e normal,build --prefix none | grep -qE '^(tokio|mio) '; then \
	    echo "check: $$c depends on tokio/mio — sans-IO crates must not"; exit 1; fi; \
	done; echo "check: sans-IO crates are free of tokio ($(SANS_IO_CRATES))"

# Kernel, marker initramfs and iPXE binaries for the QEMU tests (cached in target/e2e-assets).
test-assets: deps-test
	$(CARGO) build -p rackboot-agent
	tests/assets/prepare.sh

test: deps-test check test-assets fuzz-smoke
	$(CARGO) build --workspace
	$(CARGO) test --workspace

# Fuzzing (fuzz/: its own cargo workspace, cargo-fuzz + libFuzzer). Stable Rust suffices with
# `-s none` (coverage instrumentation only; the sanitizers would need nightly). Seeds come from
# the captured packets in src/*/testdata (fuzz/seed.py); found inputs stay in fuzz/corpus.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15
fuzz-deps: deps
	$(call apt_install,python3 g++)
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz-smoke: fuzz-deps
	fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-deps
	fuzz/run.sh $(FUZZ_SECONDS)

# iPXE binaries (pinned, sha256-checked) into $(ASSETS_DIR)/tftp, and the agent image into
# $(ASSETS_DIR)/agent (Debian kernel + busybox + modules + rackboot-agent).
assets: deps
	boot-assets/fetch-ipxe.sh $(ASSETS_DIR)
	$(CARGO) build --release -p rackboot-agent
	boot-assets/build-agent-image.sh $(ASSETS_DIR) target/release/rackboot-agent

BENCH_PKGS := $(TEST_PKGS) hyperfine wrk nginx-light xxd gnuplot-nox nghttp2-client iputils-ping

# Benchmarks against real peers (dnsmasq, tftpd-hpa, atftpd, nginx) in one run, as ratios;
# writes bench/results/<date>.md. Needs root (network namespaces).
# rackboot is built alone, as `make release` builds it: built with another package, shared
# crates may get other features, hence other symbol names than src/cli/link/hot-functions.txt.
bench: deps-test
	$(call apt_install,$(BENCH_PKGS))
	$(CARGO) build --release -p rackboot
	$(CARGO) build --release -p rackboot-fleet
	bench/run.sh

# The functions start-up and a boot storm run (callgrind), which the release link places
# together (src/cli/build.rs): writes src/cli/link/hot-functions.txt. Needs root.
hot-functions: deps-test
	$(call apt_install,$(BENCH_PKGS) valgrind)
	$(CARGO) build --release -p rackboot
	$(CARGO) build --release -p rackboot-fleet
	bench/hot-functions.sh

# Appliance disk image (image/build.sh): rackboot.img, .qcow2, .efi in $(IMAGE_DIR).
image: deps release
	$(call apt_install,$(IMAGE_PKGS))
	image/build.sh $(IMAGE_DIR) --overlay $(IMAGE_OVERLAY)

clean:
	$(CARGO) clean
	rm -rf var
