//go:build wasip1

// Command wasm is the account_sharing_filter plugin module.
package main

import (
	"github.com/edgerelay/edgerelay/plugins/sdk"
	accountsharingfilter "github.com/edgerelay/edgerelay/policies/account_sharing_filter"
)

func init() {
	sdk.HandleConfig(accountsharingfilter.ParseConfig, accountsharingfilter.Evaluate, sdk.Reads(accountsharingfilter.Reads))
}

func main() {}
