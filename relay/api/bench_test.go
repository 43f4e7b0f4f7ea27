package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip, so the server sees a distinct client address.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 64,
	}}
}

func get(hc *http.Client, url, token string) (int, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// BenchmarkRateLimitFlood measures requests of ordinary users (each a
// distinct user, spread over 200 client addresses) while one user floods
// the API from its own address with 16 concurrent connections, with the
// default limits. It reports how many of the ordinary requests were served
// (legit_ok_%: should be 100) and what the flood got through (flood_ok/s:
// about DefaultUserRate) or was refused (flood_429/s).
func BenchmarkRateLimitFlood(b *testing.B) {
	ts := startServer(b, func(o *Options) {
		o.UserRate, o.UserBurst = DefaultUserRate, DefaultUserBurst
		o.AddrRate, o.AddrBurst = DefaultAddrRate, DefaultAddrBurst
		o.Now = time.Now
	})
	url := ts.url + "/v1/devices"
	flooder := clientFrom("127.0.0.2")
	defer flooder.CloseIdleConnections()
	floodTok := ts.token("acme", "mallory", RoleUser)

	ctx, stop := context.WithCancel(context.Background())
	var floodOK, flood429, floodOther atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				code, err := get(flooder, url, floodTok)
				switch {
				case err != nil:
					floodOther.Add(1)
				case code == 200:
					floodOK.Add(1)
				case code == 429:
					flood429.Add(1)
				default:
					floodOther.Add(1)
				}
			}
		})
	}

	clients := make([]*http.Client, 200)
	for i := range clients {
		clients[i] = clientFrom(fmt.Sprintf("127.0.1.%d", i+1))
		defer clients[i].CloseIdleConnections()
	}
	var n, ok atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			tok := ts.token("acme", fmt.Sprintf("user-%d", i), RoleUser)
			code, err := get(clients[i%int64(len(clients))], url, tok)
			if err == nil && code == 200 {
				ok.Add(1)
			}
		}
	})
	b.StopTimer()
	elapsed := time.Since(start).Seconds()
	stop()
	wg.Wait()
	b.ReportMetric(100*float64(ok.Load())/float64(n.Load()), "legit_ok_%")
	b.ReportMetric(float64(floodOK.Load())/elapsed, "flood_ok/s")
	b.ReportMetric(float64(flood429.Load())/elapsed, "flood_429/s")
	if floodOther.Load() > 0 {
		b.ReportMetric(float64(floodOther.Load()), "flood_errors")
	}
}
