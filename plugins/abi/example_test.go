package abi_test

import (
	"fmt"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// A plugin decodes the Input, decides, and encodes its Output; the host does
// the reverse.
func Example() {
	in := []byte(`{"abi":1,"now":"2026-11-27T23:30:00Z",
		"event":{"id":"evt-1","workspace":"acme","user":"u-42","type":"account_shared",
		         "data":{"owner":"alice@corp.example"}},
		"baseline":{"verdict":"deliver","reason":"enabled","enforced":false},
		"config":{"owners":["@corp.example"]}}`)

	var input abi.Input
	if err := abi.DecodeInput(in, &input); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(input.Event.Type, input.Event.Data["owner"], string(input.Config))

	out := abi.Suppress("internal_share")
	out.Set = &abi.Set{Title: abi.String("Shared by \"Alice\"")}
	wire := abi.AppendOutput(nil, &out)
	fmt.Println(string(wire))

	var back abi.Output
	fmt.Println(abi.DecodeOutput(wire, &back), back.Verdict, *back.Set.Title)

	fmt.Println(abi.DecodeOutput([]byte(`{"verdict":"allow","set":{"token":"x"}}`), &back))
	// Output:
	// account_shared alice@corp.example {"owners":["@corp.example"]}
	// {"verdict":"suppress","reason":"internal_share","set":{"title":"Shared by \"Alice\""}}
	// <nil> suppress Shared by "Alice"
	// set: field "token" is not settable (settable: title, body, priority, interruption_level, sound, category, thread_id, data)
}
