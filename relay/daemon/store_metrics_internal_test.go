package daemon

import (
	"testing"

	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

// plainBackend is a backend that cannot lease at accept (as JetStream).
type plainBackend struct{ store.Backend }

// The pipeline's store leases at accept only when the backend can: over
// one that cannot, the pipeline must not see an AcceptLeaser (it would
// reserve a batch's send slots for leases that never come).
func TestPipelineStoreLeasesOnlyWhatTheBackendCan(t *testing.T) {
	m := &metrics{}
	if _, ok := pipelineStore(timedStore{Backend: plainBackend{}, m: m}).(store.AcceptLeaser); ok {
		t.Error("a backend that cannot lease at accept looks like one that can")
	}
	st := bolttest.Open(t)
	ps := pipelineStore(timedStore{Backend: st, m: m})
	if _, ok := ps.(store.AcceptLeaser); !ok {
		t.Error("the bolt store's accept leases are hidden from the pipeline")
	}
	if _, ok := ps.(store.UsersReader); !ok {
		t.Error("the bolt store's batched user reads are hidden from the pipeline")
	}
}
