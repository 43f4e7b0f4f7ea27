// Package readstest checks, in a shipped policy's tests, that the policy
// answers from the input sections it declares (its Reads) as it does from
// the whole input: a policy reading a section it did not declare gets it
// empty in relayd.
package readstest

import (
	"reflect"
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// Evaluate runs eval as the module does, on only the sections reads of in,
// fails t unless it answers as it does with the whole input, and returns
// the answer.
func Evaluate[C any](t testing.TB, eval func(abi.Input, C) abi.Output, reads abi.Sections, in abi.Input, c C) abi.Output {
	t.Helper()
	out := eval(in.Only(reads), c)
	if full := eval(in, c); !reflect.DeepEqual(out, full) {
		t.Errorf("with only the sections in Reads: %+v; with the whole input: %+v", out, full)
	}
	return out
}
