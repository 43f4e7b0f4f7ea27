package apns

import (
	"testing"

	"github.com/sideshow/apns2"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// Without an endpoint, devices go to Apple's host for their environment.
func TestHostByEnvironment(t *testing.T) {
	dir := t.TempDir()
	creds, err := relaytest.WriteDevCredentials(dir, relaytest.DevCredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(&config.APNS{Topic: "t", KeyFile: creds.APNsKeyFile, KeyID: "k", TeamID: "x", Connections: 3}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for env, want := range map[string]string{"": apns2.HostProduction, relay.EnvironmentProduction: apns2.HostProduction, relay.EnvironmentSandbox: apns2.HostDevelopment} {
		p := c.pool(relay.Device{Environment: env})
		if len(p.conns) != 3 || "https://"+p.host != want || cap(p.sem) != 3*DefaultMaxInFlight {
			t.Errorf("environment %q: %d connections, host %s, cap %d", env, len(p.conns), p.host, cap(p.sem))
		}
	}
}
