package abi

import (
	"testing"
	"time"
)

func TestParseUTC(t *testing.T) {
	for _, s := range []string{
		"2026-11-27T10:00:00Z", "2026-11-27T10:00:00.5Z", "2026-11-27T23:59:59.999999999Z",
		"1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
		"2024-02-29T12:00:00Z", "2000-02-29T00:00:00Z", "1900-03-01T00:00:00Z", "1969-12-31T23:59:59.1Z",
	} {
		want, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseUTC([]byte(s))
		if !ok || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseUTC(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"2026-02-29T10:00:00Z", "1900-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z",
		"2026-11-27T24:00:00Z", "2026-11-27T10:60:00Z", "2026-11-27T10:00:60Z", "2026-11-27T10:00:00.Z",
		"2026-11-27T10:00:00.1234567890Z", "2026-11-27T10:00:00+01:00", "2026-11-27t10:00:00Z", "2026-1a-27T10:00:00Z",
	} {
		if got, ok := parseUTC([]byte(s)); ok {
			t.Errorf("parseUTC(%q) = %v, want refusal", s, got)
		}
	}
}

func FuzzParseUTC(f *testing.F) {
	f.Add("2026-11-27T10:00:00.5Z")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseUTC([]byte(s))
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339, s)
		if err != nil || !got.Equal(want) {
			t.Fatalf("parseUTC(%q) = %v, time.Parse = %v, %v", s, got, want, err)
		}
	})
}
