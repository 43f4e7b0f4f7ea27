//go:build wasip1

// Command gogarbage is a test plugin that allocates garbage on every call:
// the Go runtime's collector must keep up across calls.
package main

import (
	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/plugins/sdk"
)

var sink []byte

func init() {
	sdk.Handle(func(in abi.Input) abi.Output {
		for i := 0; i < 16; i++ {
			sink = make([]byte, 4<<10)
		}
		return abi.Allow()
	})
}

func main() {}
