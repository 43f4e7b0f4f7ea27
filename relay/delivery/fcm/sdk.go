package fcm

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
)

// sdkModule is the Firebase Admin SDK's module path.
const sdkModule = "firebase.google.com/go/v4"

// newMessagingClient builds the Firebase Admin SDK's messaging client the
// way firebase.App.Messaging does, without importing the SDK's root package.
//
// Why: the root package imports every Firebase service, and through Cloud
// Storage and Firestore gRPC's xDS and envoy's generated protobufs. relayd
// uses none of them, yet linking them made its binary 77 MB instead of 53 MB
// and its resident memory 13–14 MiB larger (their init code and descriptors
// are read at start; docs/benchmarks.md, session 10). messaging.NewClient
// is exported but takes the SDK's internal.MessagingConfig, which Go's
// internal-package rule keeps us from naming, so it is built by reflection.
// Every assumption about that struct is checked here: an SDK whose
// constructor changed shape is reported as an error when the client is
// built (and fails this package's tests), never as a panic or a client
// without its project. See firebase-admin-go issue #772 for the request of
// a service-only constructor.
func newMessagingClient(ctx context.Context, projectID string, opts []option.ClientOption) (*messaging.Client, error) {
	fn := reflect.ValueOf(messaging.NewClient)
	version := sdkVersion()
	cfgPtr, err := newMessagingConfig(fn.Type())
	if err != nil {
		return nil, fmt.Errorf("firebase SDK %s: messaging.NewClient: %w", version, err)
	}
	cfg := cfgPtr.Elem()
	cfg.FieldByName("ProjectID").SetString(projectID)
	cfg.FieldByName("Opts").Set(reflect.ValueOf(opts))
	cfg.FieldByName("Version").SetString(version)
	out := fn.Call([]reflect.Value{reflect.ValueOf(ctx), cfgPtr})
	if e := out[1].Interface(); e != nil {
		return nil, e.(error)
	}
	return out[0].Interface().(*messaging.Client), nil
}

// newMessagingConfig checks that fnType is
// func(context.Context, *struct{Opts []option.ClientOption; ProjectID, Version string; ...}) (*messaging.Client, error)
// and returns a new zero config for it.
func newMessagingConfig(fnType reflect.Type) (reflect.Value, error) {
	var (
		ctxType    = reflect.TypeFor[context.Context]()
		errType    = reflect.TypeFor[error]()
		clientType = reflect.TypeFor[*messaging.Client]()
	)
	if fnType.Kind() != reflect.Func || fnType.NumIn() != 2 || fnType.NumOut() != 2 || fnType.IsVariadic() ||
		fnType.In(0) != ctxType || fnType.Out(0) != clientType || fnType.Out(1) != errType {
		return reflect.Value{}, fmt.Errorf("signature is %v, want func(context.Context, *MessagingConfig) (*messaging.Client, error)", fnType)
	}
	p := fnType.In(1)
	if p.Kind() != reflect.Pointer || p.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, fmt.Errorf("config parameter is %v, want a pointer to a struct", p)
	}
	want := map[string]reflect.Type{
		"Opts":      reflect.TypeFor[[]option.ClientOption](),
		"ProjectID": reflect.TypeFor[string](),
		"Version":   reflect.TypeFor[string](),
	}
	var problems []string
	for name, typ := range want {
		f, ok := p.Elem().FieldByName(name)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%v has no field %s", p.Elem(), name))
		case f.Type != typ || !f.IsExported() || len(f.Index) != 1:
			problems = append(problems, fmt.Sprintf("%v.%s is %v, want %v", p.Elem(), name, f.Type, typ))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return reflect.Value{}, errors.New(strings.Join(problems, "; "))
	}
	return reflect.New(p.Elem()), nil
}

// sdkVersion is the linked SDK's version without the "v" (the form of
// firebase.Version, sent in the X-Firebase-Client header): from the
// binary's build info, or else (test binaries record no dependencies) from
// the module cache path of messaging.NewClient's source; "unknown" when
// neither has it.
func sdkVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path != sdkModule {
				continue
			}
			if m.Replace != nil {
				m = m.Replace
			}
			if v := strings.TrimPrefix(m.Version, "v"); v != "" && v != "(devel)" {
				return v
			}
		}
	}
	if f := runtime.FuncForPC(reflect.ValueOf(messaging.NewClient).Pointer()); f != nil {
		file, _ := f.FileLine(f.Entry())
		if _, rest, ok := strings.Cut(file, sdkModule+"@v"); ok {
			if v, _, ok := strings.Cut(rest, "/"); ok && v != "" {
				return v
			}
		}
	}
	return "unknown"
}
