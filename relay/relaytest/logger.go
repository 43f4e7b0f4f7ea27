package relaytest

import (
	"testing"

	"github.com/hashicorp/go-hclog"
)

// NewLogger returns an hclog logger at trace level that writes to tb's
// output, so its lines appear with the test that produced them.
func NewLogger(tb testing.TB) hclog.Logger {
	tb.Helper()
	return hclog.New(&hclog.LoggerOptions{
		Name:   tb.Name(),
		Level:  hclog.Trace,
		Output: tb.Output(),
	})
}
