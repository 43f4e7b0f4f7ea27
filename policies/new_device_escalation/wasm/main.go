//go:build wasip1

// Command wasm is the new_device_escalation plugin module.
package main

import (
	"github.com/edgerelay/edgerelay/plugins/sdk"
	newdeviceescalation "github.com/edgerelay/edgerelay/policies/new_device_escalation"
)

func init() {
	sdk.HandleConfig(newdeviceescalation.ParseConfig, newdeviceescalation.Evaluate, sdk.Reads(newdeviceescalation.Reads))
}

func main() {}
