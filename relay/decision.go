package relay

import "time"

// Verdict is the outcome of the decision chain for an event.
type Verdict string

// Verdicts.
const (
	VerdictDeliver  Verdict = "deliver"
	VerdictSuppress Verdict = "suppress"
	VerdictDefer    Verdict = "defer"
)

// Decision records why an event was (or was not) delivered.
type Decision struct {
	Verdict    Verdict          `json:"verdict"`
	Reason     string           `json:"reason"`
	Enforced   bool             `json:"enforced,omitempty"`
	DeferUntil time.Time        `json:"defer_until,omitzero"`
	Plugins    []PluginDecision `json:"plugins"`
}

// PluginDecision is one plugin's part in a decision.
type PluginDecision struct {
	Name    string `json:"name"`
	Hash    string `json:"hash"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Shadow  bool   `json:"shadow,omitempty"`
}
