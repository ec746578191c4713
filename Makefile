# Herald's entry points. `make test` is what CI runs (.ci/run) and what README gives.
CARGO ?= cargo

.PHONY: test demo deps build lint unit crds dist images install-cli bench-ipam bench-controller bench-ebpf

## test: install what is missing, build once, check formatting and lints, run every test
test: deps lint unit

## demo: as root: build, then run the network-namespace demo lab (scripts/demo.sh)
demo: deps
	$(CARGO) build --workspace --locked
	./scripts/demo.sh

deps:
	./scripts/install-deps.sh

build:
	$(CARGO) build --workspace --all-targets --locked

lint: build
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: build
	$(CARGO) test --workspace --locked

## dist: the shipped binaries: release without debug info (target/dist/), as the images build them
dist:
	$(CARGO) build --profile dist --locked -p herald-controller -p herald-speaker -p herald-cli

## images: as root: localhost/herald-controller:dev and localhost/herald-speaker:dev with podman,
## on a Debian base made locally (scripts/images.sh; TAG=... to tag otherwise)
images: deps dist
	./scripts/images.sh

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin

## install-cli: herald and the kubectl plugin kubectl-herald (a link to it) into $(BINDIR)
install-cli:
	$(CARGO) build --profile dist --locked -p herald-cli
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 target/dist/herald $(DESTDIR)$(BINDIR)/herald
	ln -sf herald $(DESTDIR)$(BINDIR)/kubectl-herald

## crds: regenerate deploy/crds from the API types
crds:
	$(CARGO) run -p herald-api --bin crdgen

## bench-ipam: the allocator benchmark (figures go to docs/benchmarks.md)
bench-ipam:
	$(CARGO) bench -p herald-ipam --bench ipam

## bench-controller: controller throughput and leader handover against the fake API server
bench-controller:
	$(CARGO) bench -p herald-controller --bench throughput

## bench-ebpf: the XDP benchmarks, as root (figures go to docs/benchmarks.md)
bench-ebpf:
	$(CARGO) bench -p herald-ebpf --bench xdp --bench pps
