package bolt

import (
	"reflect"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

func TestJobCodecRoundTrip(t *testing.T) {
	k := relay.EventKey{Workspace: "acme", ID: "evt-1"}
	tests := []relay.Job{
		{Event: k, DeviceID: "d"},
		job(k, "phone", relay.StatePending),
		{Event: k, DeviceID: "x\xff", Platform: "windows", State: "weird", Attempts: -3, LastError: "boom: 503",
			NextAt: time.Unix(-1, 999_999_999).UTC(), ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC), UpdatedAt: t0},
	}
	for _, want := range tests {
		got, err := decodeJob(jobKey(want.Event, want.DeviceID), encodeJob(&want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
	// Other zones come back as the same instant in UTC.
	j := job(k, "p", relay.StatePending)
	j.UpdatedAt = t0.In(time.FixedZone("x", 3600))
	got, err := decodeJob(jobKey(k, "p"), encodeJob(&j))
	if err != nil || !got.UpdatedAt.Equal(t0) {
		t.Fatalf("zone: %v %v", got.UpdatedAt, err)
	}
}

// FuzzDecodeJob: a job value never panics the decoder, and what decodes
// re-encodes to the same bytes.
func FuzzDecodeJob(f *testing.F) {
	k := relay.EventKey{Workspace: "acme", ID: "e"}
	f.Add(encodeJob(&relay.Job{}))
	j := job(k, "p", relay.StateDeferred)
	j.LastError, j.Attempts, j.NextAt = "429", 7, t0
	f.Add(encodeJob(&j))
	f.Add([]byte{jobFormat, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeJob(jobKey(k, "p"), v)
		if err != nil {
			return
		}
		again, err := decodeJob(jobKey(k, "p"), encodeJob(&got))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("not stable:\n%+v\n%+v", got, again)
		}
	})
}
