//go:build wasip1

// Command wasm is the otp_redaction plugin module.
package main

import (
	"github.com/edgerelay/edgerelay/plugins/sdk"
	otpredaction "github.com/edgerelay/edgerelay/policies/otp_redaction"
)

func init() {
	sdk.HandleConfig(otpredaction.ParseConfig, otpredaction.Evaluate, sdk.Reads(otpredaction.Reads))
}

func main() {}
