# edgerelay — make targets. Everything a target needs (Go modules, policy
# .wasm files, dev credentials) is built or fetched by the target itself.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 60s
BENCHTIME ?= 1x

.PHONY: all build dist run demo test test-short bench fuzz vet fmt check clean policies

all: build policies

# build: static binaries (no cgo), as dist and the Dockerfile ship them.
# Linked against libc, relayd also mapped libc and the dynamic loader:
# about 3 MiB more resident memory under load (docs/benchmarks.md).
build: bin/relayd bin/relayctl

bin/relayd: $(shell find cmd/relayd relay plugins/abi -name '*.go' -not -name '*_test.go') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/relayd

bin/relayctl: $(shell find cmd/relayctl relay plugins -name '*.go' -not -name '*_test.go') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/relayctl

-include mk/policies.mk

# dist: release archives build/dist/edgerelay-VERSION-OS-ARCH.tar.gz (static
# binaries stamped with VERSION, sample config, systemd unit, policies, docs)
# and build/dist/SHA256SUMS. See docs/operations.md.
PLATFORMS ?= linux/amd64 linux/arm64
dist: policies
	VERSION="$(VERSION)" PLATFORMS="$(PLATFORMS)" OUT=build/dist GO="$(GO)" sh mk/dist.sh

# run: build, write dev credentials, start the APNs/FCM fakes and relayd with
# config.hcl, register two demo phones and send one event of each type.
# Keeps running (Ctrl-C stops); try `bin/relayctl send` meanwhile.
run: build policies
	bin/relayctl dev init -dir dev
	bin/relayd -config config.hcl -check
	bin/relayctl -config config.hcl demo -relayd bin/relayd

# cluster-demo: three relays on this machine, each with an embedded NATS
# server (replicas = 3); an alert survives the death of the relay that
# accepted it (docs/cluster.md).
cluster-demo: build policies
	bin/relayctl dev init -dir dev
	bin/relayctl -config config.hcl cluster-demo -relayd bin/relayd

# demo: the same, but exits once the demo alerts arrived.
demo: build policies
	bin/relayctl dev init -dir dev
	bin/relayctl -config config.hcl demo -relayd bin/relayd -exit

# test: the race-enabled suite. The longest end-to-end tests run smaller
# than their full size to fit CI (20 minutes on 2 cores); unset these to
# run them full size (e.g. `make test TEST_SIZES=`).
# (The hot-reload test keeps its full 10,000 events: fewer are all judged
# before the first swap is compiled under -race.)
TEST_SIZES ?= EDGERELAY_CORRUPTIONS=60 EDGERELAY_PRIORITY_EVENTS=5000 EDGERELAY_FAULT_EVENTS=4000 \
	EDGERELAY_CRASH_EVENTS=8000
test: policies example-as
	$(GO) vet ./...
	EDGERELAY_REQUIRE_EXAMPLES=1 $(TEST_SIZES) $(GO) test -race -shuffle=on -timeout 18m ./...

test-short:
	$(GO) test -short ./...

# bench: end-to-end load through the socket to the fakes, plus package
# benchmarks. See docs/benchmarks.md.
bench: build
	$(GO) test -run '^$$' -bench 'BenchmarkEndToEnd' -benchtime $(BENCHTIME) -timeout 30m ./relay/daemon/
	$(GO) test -run '^$$' -bench 'BenchmarkRestartBigStore' -benchtime 1x -timeout 10m ./relay/daemon/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./relay/config/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./relay/ingest/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) ./relay/ingest/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInput$$' -fuzztime $(FUZZTIME) ./plugins/abi/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeOutput$$' -fuzztime $(FUZZTIME) ./plugins/abi/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCompactInput$$' -fuzztime $(FUZZTIME) ./plugins/abi/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCompactOutput$$' -fuzztime $(FUZZTIME) ./plugins/abi/
	$(GO) test -run '^$$' -fuzz '^FuzzUvarintAt$$' -fuzztime $(FUZZTIME) ./plugins/abi/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./relay/policy/
	$(GO) test -run '^$$' -fuzz '^FuzzInstrument$$' -fuzztime $(FUZZTIME) ./relay/policy/guard/

vet:
	$(GO) vet ./...

fmt:
	gofmt -w cmd relay plugins policies

check: fmt vet
	$(GO) mod tidy
	git diff --exit-code

clean:
	rm -rf bin build data run
