package natsd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay/natsd"
	"github.com/edgerelay/edgerelay/relay/natsd/natsdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSingleNodeInProcess(t *testing.T) {
	s, err := natsd.New(natsd.Options{Name: "solo", StoreDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	if u := s.ClientURL(); u != "" {
		t.Fatalf("listen \"\" opened a client port: %s", u)
	}
	if err := s.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	nc, err := s.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func TestClusterReplicates(t *testing.T) {
	servers := natsdtest.Start(t, 3, natsdtest.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]jetstream.JetStream, len(servers))
	for i, s := range servers {
		if s.ClusterURL() == "" {
			t.Fatalf("node %s has no route listener", s.Name())
		}
		// Listen "" on a clustered node: a loopback client port, since
		// DontListen would keep the routes down (nats-server #5174).
		if u := s.ClientURL(); !strings.HasPrefix(u, "nats://127.0.0.1:") {
			t.Fatalf("node %s client URL %q, want a loopback port", s.Name(), u)
		}
		nc, err := s.Conn()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if conns[i], err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := conns[0].CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	kv3, err := conns[2].KeyValue(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv3.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("read on another node: %v %v", e, err)
	}
	if _, err := kv3.Create(ctx, "k", []byte("w")); err == nil {
		t.Fatal("create of an existing key through another node succeeded")
	}
}

func TestOptionErrors(t *testing.T) {
	for _, o := range []natsd.Options{
		{},
		{StoreDir: "x", Cluster: &natsd.ClusterOptions{Listen: "127.0.0.1:0"}},
		{StoreDir: "x", Cluster: &natsd.ClusterOptions{Name: "c"}},
	} {
		if _, err := natsd.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	s, err := natsd.New(natsd.Options{StoreDir: t.TempDir(), Listen: "nohostport"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("bad listen address accepted")
	}
}
