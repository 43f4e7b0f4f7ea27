package abi

import (
	"encoding/json"
	"testing"
)

func BenchmarkDecodeInput(b *testing.B) {
	in := sampleInput()
	doc := AppendInput(nil, &in)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var x Input
	for b.Loop() {
		if err := DecodeInput(doc, &x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInputEncodingJSON(b *testing.B) {
	in := sampleInput()
	doc := AppendInput(nil, &in)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		var x jsonInput
		if err := json.Unmarshal(doc, &x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendOutput(b *testing.B) {
	out := sampleOutput()
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = AppendOutput(buf[:0], &out)
	}
}

type jsonOutput struct {
	Verdict    string   `json:"verdict"`
	Reason     string   `json:"reason,omitempty"`
	DeferUntil string   `json:"defer_until,omitempty"`
	Set        *jsonSet `json:"set,omitempty"`
	Devices    []string `json:"devices,omitempty"`
}

type jsonSet struct {
	Title             *string           `json:"title,omitempty"`
	Body              *string           `json:"body,omitempty"`
	Priority          *string           `json:"priority,omitempty"`
	InterruptionLevel *string           `json:"interruption_level,omitempty"`
	Sound             *string           `json:"sound,omitempty"`
	Category          *string           `json:"category,omitempty"`
	ThreadID          *string           `json:"thread_id,omitempty"`
	Data              map[string]string `json:"data,omitempty"`
}

func BenchmarkAppendOutputEncodingJSON(b *testing.B) {
	o := sampleOutput()
	s := *o.Set
	out := jsonOutput{Verdict: o.Verdict, Reason: o.Reason, DeferUntil: "2026-11-28T06:00:00Z",
		Set:     &jsonSet{Title: s.Title, Body: s.Body, InterruptionLevel: s.InterruptionLevel, Category: s.Category, Data: s.Data},
		Devices: o.Devices}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeOutput(b *testing.B) {
	out := sampleOutput()
	doc := AppendOutput(nil, &out)
	b.ReportAllocs()
	var x Output
	for b.Loop() {
		if err := DecodeOutput(doc, &x); err != nil {
			b.Fatal(err)
		}
	}
}
