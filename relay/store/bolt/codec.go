package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Value encodings. Values carry only what their key does not.

// eventFormat is the first byte of an events value.
const eventFormat = 1

// eventHeaderLen is the format byte plus the 8-byte undecided seq.
const eventHeaderLen = 9

// eventValue is the JSON part of an events value.
type eventValue struct {
	Event      relay.Event `json:"event"`
	ReceivedAt time.Time   `json:"received_at"`
}

// encodeEvent returns an events value with room for the seq, which
// setEventSeq fills in inside the transaction.
func encodeEvent(e relay.Event, receivedAt time.Time) ([]byte, error) {
	js, err := json.Marshal(eventValue{Event: e, ReceivedAt: receivedAt})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	b := make([]byte, eventHeaderLen, eventHeaderLen+len(js))
	b[0] = eventFormat
	return append(b, js...), nil
}

func setEventSeq(b []byte, seq uint64) { binary.BigEndian.PutUint64(b[1:eventHeaderLen], seq) }

// eventSeq returns the undecided seq of an events value.
func eventSeq(b []byte) (uint64, error) {
	if len(b) < eventHeaderLen || b[0] != eventFormat {
		return 0, fmt.Errorf("decode event: unknown format (%d bytes)", len(b))
	}
	return binary.BigEndian.Uint64(b[1:eventHeaderLen]), nil
}

func decodeEvent(b []byte) (eventValue, error) {
	var v eventValue
	if _, err := eventSeq(b); err != nil {
		return v, err
	}
	if err := json.Unmarshal(b[eventHeaderLen:], &v); err != nil {
		return v, fmt.Errorf("decode event: %w", err)
	}
	return v, nil
}

// decisionValue is a decisions value.
type decisionValue struct {
	Decision relay.Decision `json:"decision"`
	Alert    *relay.Alert   `json:"alert,omitempty"`
}

func encodeDecision(d relay.Decision, a *relay.Alert) ([]byte, error) {
	b, err := json.Marshal(decisionValue{Decision: d, Alert: a})
	if err != nil {
		return nil, fmt.Errorf("encode decision: %w", err)
	}
	return b, nil
}

func decodeDecision(b []byte) (decisionValue, error) {
	var v decisionValue
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode decision: %w", err)
	}
	return v, nil
}

// jobValue is a jobs_open / jobs_done value: a relay.Job without its key.
type jobValue struct {
	Platform  relay.Platform      `json:"platform"`
	State     relay.DeliveryState `json:"state"`
	Attempts  int                 `json:"attempts,omitempty"`
	LastError string              `json:"last_error,omitempty"`
	NextAt    time.Time           `json:"next_at,omitzero"`
	ExpiresAt time.Time           `json:"expires_at,omitzero"`
	UpdatedAt time.Time           `json:"updated_at,omitzero"`
}

func encodeJob(j *relay.Job) ([]byte, error) {
	b, err := json.Marshal(jobValue{
		Platform: j.Platform, State: j.State, Attempts: j.Attempts, LastError: j.LastError,
		NextAt: j.NextAt, ExpiresAt: j.ExpiresAt, UpdatedAt: j.UpdatedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	return b, nil
}

func decodeJob(k, b []byte) (relay.Job, error) {
	ek, dev, err := splitJobKey(k)
	if err != nil {
		return relay.Job{}, err
	}
	var v jobValue
	if err := json.Unmarshal(b, &v); err != nil {
		return relay.Job{}, fmt.Errorf("decode job %s/%s: %w", ek, dev, err)
	}
	return relay.Job{
		Event: ek, DeviceID: dev, Platform: v.Platform, State: v.State, Attempts: v.Attempts,
		LastError: v.LastError, NextAt: v.NextAt, ExpiresAt: v.ExpiresAt, UpdatedAt: v.UpdatedAt,
	}, nil
}
