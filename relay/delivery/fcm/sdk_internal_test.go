package fcm

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
)

func TestNewMessagingConfigChecksTheSDKShape(t *testing.T) {
	if _, err := newMessagingConfig(reflect.TypeOf(messaging.NewClient)); err != nil {
		t.Fatalf("the linked SDK's messaging.NewClient: %v", err)
	}
	type noVersion struct {
		Opts      []option.ClientOption
		ProjectID string
	}
	type wrongType struct {
		Opts      []string
		ProjectID string
		Version   string
	}
	tests := []struct {
		name string
		fn   any
		want string
	}{
		{"not a func", 42, "signature is int"},
		{"one parameter", func(context.Context) (*messaging.Client, error) { return nil, nil }, "signature is"},
		{"other result", func(context.Context, *noVersion) (*int, error) { return nil, nil }, "signature is"},
		{"config by value", func(context.Context, noVersion) (*messaging.Client, error) { return nil, nil }, "want a pointer to a struct"},
		{"missing field", func(context.Context, *noVersion) (*messaging.Client, error) { return nil, nil }, "has no field Version"},
		{"field of another type", func(context.Context, *wrongType) (*messaging.Client, error) { return nil, nil }, "wrongType.Opts is []string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newMessagingConfig(reflect.TypeOf(tc.fn))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSDKVersionIsTheRequiredModule(t *testing.T) {
	if got, want := sdkVersion(), requiredSDKVersion(t); got != want {
		t.Fatalf("sdkVersion() = %q, want %q (go.mod)", got, want)
	}
}

// requiredSDKVersion reads the SDK's version from the module's go.mod.
func requiredSDKVersion(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mod)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == sdkModule {
			return strings.TrimPrefix(f[1], "v")
		}
	}
	t.Fatalf("go.mod requires no %s", sdkModule)
	return ""
}
