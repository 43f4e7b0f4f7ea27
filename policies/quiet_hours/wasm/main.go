//go:build wasip1

// Command wasm is the quiet_hours plugin module.
package main

import (
	_ "time/tzdata" // wasip1 has no zoneinfo on disk

	"github.com/edgerelay/edgerelay/plugins/sdk"
	quiethours "github.com/edgerelay/edgerelay/policies/quiet_hours"
)

func init() {
	sdk.HandleConfig(quiethours.ParseConfig, quiethours.Evaluate, sdk.Reads(quiethours.Reads))
}

func main() {}
