package abi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func FuzzDecodeInput(f *testing.F) {
	in := sampleInput()
	f.Add(AppendInput(nil, &in))
	f.Add([]byte(`{"abi":1,"event":{"title":"\ud83d\ude00 \ud83d x\u0000"},"config":[1,{"a":null}],"x":-1.5e-3}`))
	f.Add([]byte(`{"user":{"recent":{"a":{"1m":1e2}},"preferences":{"b":true}},"prior":[]}`))
	f.Add([]byte(`{"now":"2026-11-27T10:00:00+02:00","event":{"data":{"k":"v"},"actions":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var x Input
		if err := DecodeInput(b, &x); err != nil {
			return
		}
		enc := AppendInput(nil, &x)
		if !json.Valid(enc) {
			t.Fatalf("AppendInput wrote invalid JSON: %s", enc)
		}
		var y Input
		if err := DecodeInput(enc, &y); err != nil {
			t.Fatalf("decode(append(x)): %v\n%s", err, enc)
		}
		normConfig(&x)
		normConfig(&y)
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("round trip differs:\n x %#v\n y %#v", x, y)
		}
		if enc2 := AppendInput(nil, &y); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// normConfig treats an empty config like an absent one: both encode to
// nothing.
func normConfig(in *Input) {
	if len(in.Config) == 0 {
		in.Config = nil
	}
}

func FuzzDecodeOutput(f *testing.F) {
	out := sampleOutput()
	f.Add(AppendOutput(nil, &out))
	f.Add([]byte(`{"verdict":"allow"}`))
	f.Add([]byte(`{"verdict":"suppress","reason":"\u00e9","devices":["a","b"]}`))
	f.Add([]byte(`{"verdict":"allow","set":{"title":null,"data":{}},"devices":[]}`))
	f.Add([]byte(`{"verdict":"defer","defer_until":"2026-11-27T10:00:00.123456789-07:00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var x Output
		if err := DecodeOutput(b, &x); err != nil {
			return
		}
		enc := AppendOutput(nil, &x)
		if !json.Valid(enc) {
			t.Fatalf("AppendOutput wrote invalid JSON: %s", enc)
		}
		var y Output
		if err := DecodeOutput(enc, &y); err != nil {
			t.Fatalf("decode(append(x)): %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("round trip differs:\n x %#v\n y %#v", x, y)
		}
	})
}
