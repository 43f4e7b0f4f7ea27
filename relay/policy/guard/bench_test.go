package guard

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkInstrument measures the rewrite of the shipped policies' bundle
// (a 4 MB standard-Go module), done once per load before compiling.
func BenchmarkInstrument(b *testing.B) {
	out := filepath.Join(b.TempDir(), "x.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "../../../policies/all/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatal(err, string(o))
	}
	w, _ := os.ReadFile(out)
	b.SetBytes(int64(len(w)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Instrument(w); err != nil {
			b.Fatal(err)
		}
	}
}
