# mk/policies.mk — the shipped policies and the second-language example.
# Included by the top-level Makefile (which defines GO).
#
#   make policies     policies/NAME/wasm -> build/policies/NAME.wasm (+ NAME.hcl)
#   make example-as   plugins/examples/assemblyscript -> build/examples/as_example.wasm
#
# Outputs are written to a temporary name and renamed into place, so a relay
# watching build/policies never loads a half-written module; the manifest is
# installed before its module.

GO ?= go

POLICY_NAMES := $(patsubst policies/%/wasm/main.go,%,$(wildcard policies/*/wasm/main.go))
POLICY_OUT   := build/policies
POLICY_WASM  := $(POLICY_NAMES:%=$(POLICY_OUT)/%.wasm)
POLICY_HCL   := $(POLICY_NAMES:%=$(POLICY_OUT)/%.hcl)
PLUGIN_SRC   := $(filter-out %_test.go,$(wildcard plugins/abi/*.go plugins/sdk/*.go)) go.mod go.sum

.PHONY: policies example-as

policies: $(POLICY_WASM) $(POLICY_HCL)

.SECONDEXPANSION:

$(POLICY_OUT)/%.wasm: $$(filter-out %_test.go,$$(wildcard policies/$$*/*.go policies/$$*/wasm/*.go)) $(PLUGIN_SRC) | $(POLICY_OUT)/%.hcl
	@mkdir -p $(@D)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@.tmp ./policies/$*/wasm
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
