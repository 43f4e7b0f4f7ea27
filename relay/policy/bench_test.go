package policy

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

var (
	sdkOnce   sync.Once
	sdkPlugin []byte
	sdkErr    error
)

// sdkWasm builds a shipped policy (plugins/sdk, standard Go) once.
func sdkWasm(b *testing.B) []byte {
	sdkOnce.Do(func() {
		dir, err := os.MkdirTemp("", "policybench")
		if err != nil {
			sdkErr = err
			return
		}
		defer os.RemoveAll(dir)
		sdkPlugin, sdkErr = buildGoPlugin(dir, "../../policies/account_sharing_filter/wasm")
	})
	if sdkErr != nil {
		b.Skip(sdkErr)
	}
	return sdkPlugin
}

func benchInput() *abi.Input {
	s := NewSet(SetOptions{}, nil)
	req := testRequest(relay.TypeAccountShared, false)
	req.Event.Data = map[string]string{"owner": "alice@partner.example", "item": "vault-7"}
	in := s.input(req, time.Now())
	withSettings(in, req)
	in.Config = []byte(`{"internal_owners":["@corp.example"]}`)
	return in
}

// BenchmarkEvaluate measures one evaluation through the full path
// (semaphore, pool, per-call deadline, guest call, output decode), serially
// and from two goroutines, with the load-time guards on and off.
func BenchmarkEvaluate(b *testing.B) {
	plugins := []struct {
		name string
		wasm func(*testing.B) []byte
	}{
		{"trivial", func(*testing.B) []byte { return wasmtest.ConstPlugin(`{"verdict":"allow"}`) }},
		{"go-sdk", sdkWasm},
	}
	for _, pl := range plugins {
		for _, guards := range []bool{true, false} {
			name := pl.name
			if !guards {
				name += "/unguarded"
			}
			b.Run(name, func(b *testing.B) {
				e := openEngine(b, Options{Timeout: time.Second, noDeadline: !guards})
				p := mustLoad(b, e, "bench", pl.wasm(b))
				in := benchInput()
				ctx := context.Background()
				if _, err := p.Evaluate(ctx, in); err != nil {
					b.Fatal(err)
				}
				b.Run("serial", func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := p.Evaluate(ctx, in); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run("parallel", func(b *testing.B) {
					b.SetParallelism(1) // GOMAXPROCS goroutines
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := p.Evaluate(ctx, in); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			})
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	wasm := sdkWasm(b)
	e := openEngine(b, Options{CacheDir: filepath.Join(b.TempDir(), "cache")})
	for b.Loop() {
		p := mustLoad(b, e, "bench", wasm)
		p.Close(context.Background())
	}
}
