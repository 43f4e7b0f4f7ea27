//go:build wasip1

// Command wasm is the bundle of the shipped policies: one module, each
// policy selected by its manifest's config.policy.
package main

import (
	_ "time/tzdata" // wasip1 has no zoneinfo on disk (quiet_hours)

	"github.com/edgerelay/edgerelay/plugins/sdk"
	accountsharingfilter "github.com/edgerelay/edgerelay/policies/account_sharing_filter"
	newdeviceescalation "github.com/edgerelay/edgerelay/policies/new_device_escalation"
	otpredaction "github.com/edgerelay/edgerelay/policies/otp_redaction"
	pushbombingguard "github.com/edgerelay/edgerelay/policies/push_bombing_guard"
	quiethours "github.com/edgerelay/edgerelay/policies/quiet_hours"
)

func init() {
	sdk.Policy("account_sharing_filter", accountsharingfilter.ParseConfig, accountsharingfilter.Evaluate, sdk.Reads(accountsharingfilter.Reads))
	sdk.Policy("new_device_escalation", newdeviceescalation.ParseConfig, newdeviceescalation.Evaluate, sdk.Reads(newdeviceescalation.Reads))
	sdk.Policy("otp_redaction", otpredaction.ParseConfig, otpredaction.Evaluate, sdk.Reads(otpredaction.Reads))
	sdk.Policy("push_bombing_guard", pushbombingguard.ParseConfig, pushbombingguard.Evaluate, sdk.Reads(pushbombingguard.Reads))
	sdk.Policy("quiet_hours", quiethours.ParseConfig, quiethours.Evaluate, sdk.Reads(quiethours.Reads))
}

func main() {}
