package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay/natsd"
	"github.com/edgerelay/edgerelay/relay/natsd/natsdtest"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/jetstream"
	"github.com/edgerelay/edgerelay/relay/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var prefixes atomic.Int64

// harness opens each backend on a fresh prefix through the first server,
// and its peer through the next server (another node of a cluster).
func harness(servers []*natsd.Server, replicas int) storetest.Harness {
	var mu sync.Mutex
	prefixOf := map[store.Backend]string{}
	open := func(t *testing.T, node int, prefix string) *jetstream.Store {
		t.Helper()
		nc, err := servers[node%len(servers)].Conn()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := jetstream.Open(ctx, jetstream.Options{Conn: nc, Replicas: replicas, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return storetest.Harness{
		Open: func(t *testing.T) store.Backend {
			prefix := fmt.Sprintf("t%d", prefixes.Add(1))
			t.Cleanup(func() { dropPrefix(t, servers[0], prefix) })
			s := open(t, 0, prefix)
			mu.Lock()
			prefixOf[s] = prefix
			mu.Unlock()
			return s
		},
		OpenPeer: func(t *testing.T, b store.Backend) store.Backend {
			mu.Lock()
			prefix := prefixOf[b]
			mu.Unlock()
			return open(t, 1, prefix)
		},
		Dump: func(t *testing.T, b store.Backend) []string {
			mu.Lock()
			prefix := prefixOf[b]
			mu.Unlock()
			return dumpPrefix(t, servers[0], prefix)
		},
	}
}

// streamsOf names every stream of a store prefix.
func streamsOf(prefix string) []string {
	return []string{prefix + "_jobs", prefix + "_answers", prefix + "_accepted", "KV_" + prefix + "_events", "KV_" + prefix + "_dir", "KV_" + prefix + "_recent"}
}

// dumpPrefix returns the subject and data of every message in a store's
// streams, delete and purge markers included.
func dumpPrefix(t *testing.T, s *natsd.Server, prefix string) []string {
	nc, err := s.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for _, name := range streamsOf(prefix) {
		str, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := str.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := str.GetMsg(ctx, seq)
			if errors.Is(err, njs.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("stream %s seq %d: %v", name, seq, err)
			}
			out = append(out, name+" "+m.Subject+" "+string(m.Data))
		}
	}
	return out
}

// dropPrefix deletes a test's streams, so that a long suite does not keep
// dozens of raft groups busy.
func dropPrefix(t *testing.T, s *natsd.Server, prefix string) {
	nc, err := s.Conn()
	if err != nil {
		t.Error(err)
		return
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range streamsOf(prefix) {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Logf("drop stream %s: %v", name, err)
		}
	}
}

func TestConformanceR1(t *testing.T) {
	servers := natsdtest.Start(t, 1, natsdtest.Config{})
	storetest.Run(t, harness(servers, 1))
}

func TestConformanceR3(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	servers := natsdtest.Start(t, 3, natsdtest.Config{})
	storetest.Run(t, harness(servers, 3))
}
