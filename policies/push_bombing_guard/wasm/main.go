//go:build wasip1

// Command wasm is the push_bombing_guard plugin module.
package main

import (
	"github.com/edgerelay/edgerelay/plugins/sdk"
	pushbombingguard "github.com/edgerelay/edgerelay/policies/push_bombing_guard"
)

func init() {
	sdk.HandleConfig(pushbombingguard.ParseConfig, pushbombingguard.Evaluate, sdk.Reads(pushbombingguard.Reads))
}

func main() {}
