# mk/policies.mk — the shipped policies and the second-language example.
# Included by the top-level Makefile (which defines GO).
#
#   make policies     policies/all/wasm (the bundle of every shipped policy)
#                     -> build/policies/NAME.wasm for each policies/NAME (+ NAME.hcl)
#
# Every NAME.wasm holds the same bytes: the relay compiles them once and the
# five plugins share one copy of the machine code (a standard-Go module's
# code is megabytes; calls alternating between separately compiled modules
# run with cold CPU caches, about 4x slower). Each manifest's config.policy
# picks its policy in the bundle. policies/NAME/wasm still builds each
# policy alone (the tests run both).
#   make example-as   plugins/examples/assemblyscript -> build/examples/as_example.wasm
#
# Outputs are written to a temporary name and renamed into place, so a relay
# watching build/policies never loads a half-written module; the manifest is
# installed before its module.

GO ?= go

POLICY_NAMES := $(filter-out all,$(patsubst policies/%/wasm/main.go,%,$(wildcard policies/*/wasm/main.go)))
POLICY_SRC   := $(filter-out %_test.go,$(wildcard policies/*/*.go policies/*/wasm/*.go))
POLICY_BUNDLE := build/.policies-all.wasm
POLICY_OUT   := build/policies
POLICY_WASM  := $(POLICY_NAMES:%=$(POLICY_OUT)/%.wasm)
POLICY_HCL   := $(POLICY_NAMES:%=$(POLICY_OUT)/%.hcl)
PLUGIN_SRC   := $(filter-out %_test.go,$(wildcard plugins/abi/*.go plugins/sdk/*.go)) go.mod go.sum

.PHONY: policies example-as

policies: $(POLICY_WASM) $(POLICY_HCL)

.SECONDEXPANSION:

$(POLICY_BUNDLE): $(POLICY_SRC) $(PLUGIN_SRC)
	@mkdir -p $(@D)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@.tmp ./policies/all/wasm
	mv -f $@.tmp $@

$(POLICY_OUT)/%.wasm: $(POLICY_BUNDLE) | $(POLICY_OUT)/%.hcl
	@mkdir -p $(@D)
	cp $< $@.tmp
	mv -f $@.tmp $@

$(POLICY_OUT)/%.hcl: policies/$$*/$$*.hcl
	@mkdir -p $(@D)
	cp $< $@.tmp
	mv -f $@.tmp $@

AS_EXAMPLE := plugins/examples/assemblyscript

example-as: build/examples/as_example.wasm

$(AS_EXAMPLE)/node_modules/.package-lock.json: $(AS_EXAMPLE)/package.json $(AS_EXAMPLE)/package-lock.json
	cd $(AS_EXAMPLE) && npm ci --no-audit --no-fund
	@touch $@

build/examples/as_example.wasm: $(AS_EXAMPLE)/assembly/index.ts $(AS_EXAMPLE)/node_modules/.package-lock.json
	@mkdir -p $(@D)
	cd $(AS_EXAMPLE) && npx asc assembly/index.ts -O3 --runtime incremental --use abort= -o $(CURDIR)/$@.tmp
	mv -f $@.tmp $@
