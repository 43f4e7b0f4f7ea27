//go:build wasip1

// Command scripted is a test plugin whose manifest config says what it
// answers, so end-to-end tests can drive every verdict through relayd.
//
//	config { verdict = "suppress|allow|defer"  reason = "…"  defer_seconds = 2
//	         devices = ["pixel"]  title = "…" }
package main

import (
	"encoding/json"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/plugins/sdk"
)

type config struct {
	Verdict      string   `json:"verdict"`
	Reason       string   `json:"reason"`
	DeferSeconds float64  `json:"defer_seconds"`
	Devices      []string `json:"devices"`
	Title        string   `json:"title"`
	// Misbehave: "loop" spins forever, "panic" panics, "bomb" allocates
	// without limit, "recurse" recurses without end.
	Misbehave string `json:"misbehave"`
}

var sink [][]byte

func recurse(n int) int { return recurse(n+1) + 1 }

func parse(raw []byte) (config, error) {
	var c config
	if len(raw) == 0 {
		return c, nil
	}
	err := json.Unmarshal(raw, &c)
	return c, err
}

func evaluate(in abi.Input, c config) abi.Output {
	switch c.Misbehave {
	case "loop":
		for i := 0; ; i++ {
			_ = i
		}
	case "panic":
		panic("scripted panic")
	case "bomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "recurse":
		recurse(0)
	}
	out := abi.Output{Verdict: c.Verdict, Reason: c.Reason, Devices: c.Devices}
	if out.Verdict == "" {
		out.Verdict = abi.VerdictAllow
	}
	if out.Verdict == abi.VerdictDefer {
		out.DeferUntil = in.Now.Add(time.Duration(c.DeferSeconds * float64(time.Second)))
	}
	if c.Title != "" {
		t := c.Title
		out.Set = &abi.Set{Title: &t}
	}
	return out
}

func init() { sdk.HandleConfig(parse, evaluate) }

func main() {}
