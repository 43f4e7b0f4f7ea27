package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// TestAuditAdminAndOperator: an admin enforcing a type through the app
// API and an operator replaying a dead letter through the socket both
// appear in `relayctl audit`, with who did it and the state before and
// after; so do an upstream cancel and a plugin reload.
func TestAuditAdminAndOperator(t *testing.T) {
	cfgPath, fakes := startRelayd(t)
	cfg, diags := config.Load(cfgPath)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ctl := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, append([]string{"-config", cfgPath}, args...)...)
		if code != exitOK {
			t.Fatalf("relayctl %q: exit %d: %s", args, code, stderr)
		}
		return stdout
	}

	// The admin, through the app API.
	tok := strings.TrimSpace(ctl("token", "mint", "-user", "boss", "-workspace", "acme", "-role", "admin"))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://"+cfg.API.Address+"/v1/workspace/settings",
		strings.NewReader(`{"identity_verification":"disabled","otp_received":"enforced"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/workspace/settings: %d", resp.StatusCode)
	}

	// The operator, through the socket: a dead letter, replayed.
	iosToken := strings.Repeat("cd", 32)
	fakes.APNs.Script(iosToken, relaytest.Rule{Reason: "PayloadTooLarge", Times: 1})
	ctl("device", "put", "acme", "u1", "iphone", "-platform", "ios", "-token", iosToken, "-app", "demo")
	ev := t.TempDir() + "/ev.json"
	os.WriteFile(ev, []byte(`{"id":"evt-a","workspace":"acme","user":"u1","type":"account_shared","title":"Shared"}`), 0o600)
	ctl("send", ev)
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == ""; time.Sleep(20 * time.Millisecond) {
		var list struct {
			DeadLetters []struct{ ID string } `json:"dead_letters"`
		}
		json.Unmarshal([]byte(ctl("-json", "dlq", "list")), &list)
		if len(list.DeadLetters) > 0 {
			id = list.DeadLetters[0].ID
		} else if time.Now().After(deadline) {
			t.Fatal("no dead letter after 10s")
		}
	}
	ctl("dlq", "replay", id)

	var out struct {
		Entries []auditEntry `json:"entries"`
	}
	if err := json.Unmarshal([]byte(ctl("audit", "-workspace", "acme", "-json")), &out); err != nil {
		t.Fatal(err)
	}
	byAction := map[string]auditEntry{}
	for _, e := range out.Entries {
		e.Before, e.After = compactJSON(t, e.Before), compactJSON(t, e.After)
		if _, ok := byAction[e.Action]; !ok {
			byAction[e.Action] = e
		}
	}
	set, ok := byAction["settings.put"]
	if !ok || set.who() != "app:admin@acme/boss" || set.Workspace != "acme" ||
		string(set.Before) != `{"identity_verification":"enabled","otp_received":"enabled"}` ||
		string(set.After) != `{"identity_verification":"disabled","otp_received":"enforced"}` {
		t.Errorf("settings entry %+v (actor %s, before %s, after %s)", set, set.who(), set.Before, set.After)
	}
	rep, ok := byAction["deadletter.replay"]
	wantWho := "socket:uid=" + itoa(os.Getuid()) + ",pid=" + itoa(os.Getpid())
	if !ok || rep.who() != wantWho || rep.Target != id || rep.Workspace != "acme" ||
		string(rep.Before) != `{"state":"failed"}` || !strings.Contains(string(rep.After), `"state":"pending"`) {
		t.Errorf("replay entry %+v (actor %s, want %s; before %s, after %s)", rep, rep.who(), wantWho, rep.Before, rep.After)
	}
	if rep.Seq <= set.Seq {
		t.Errorf("newest first: replay %d listed after settings %d", rep.Seq, set.Seq)
	}

	// The table an operator reads names the same.
	human := ctl("audit", "-since", "1h")
	for _, want := range []string{"ACTOR", "app:admin@acme/boss", "settings.put", `{"identity_verification":"disabled","otp_received":"enforced"}`,
		wantWho, "deadletter.replay", id} {
		if !strings.Contains(human, want) {
			t.Errorf("relayctl audit lacks %q:\n%s", want, human)
		}
	}
	// Filters reach the server.
	if err := json.Unmarshal([]byte(ctl("-json", "audit", "-action", "deadletter.replay")), &out); err != nil || len(out.Entries) != 1 {
		t.Errorf("-action deadletter.replay: %+v %v", out.Entries, err)
	}
	// The upstream cancelling a prompt on the socket.
	os.WriteFile(ev, []byte(`{"id":"evt-c","workspace":"acme","user":"u1","type":"new_trusted_device","actions":["approve","deny"]}`), 0o600)
	ctl("send", ev)
	var cancelled json.RawMessage
	if err := newClient(cfg.Socket.Path).do(t.Context(), http.MethodDelete, "/v1/events/acme/evt-c", "", nil, &cancelled); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := json.Unmarshal([]byte(ctl("-json", "audit", "-action", "event.cancel")), &out); err != nil || len(out.Entries) != 1 ||
		out.Entries[0].who() != wantWho || out.Entries[0].Target != "evt-c" || !strings.Contains(string(out.Entries[0].After), `"cancelled"`) {
		t.Errorf("-action event.cancel: %+v %v", out.Entries, err)
	}
	// An operator's plugin reload, with the (empty) plugin set before and after.
	ctl("plugin", "reload")
	if err := json.Unmarshal([]byte(ctl("-json", "audit", "-action", "plugins.reload")), &out); err != nil || len(out.Entries) != 1 ||
		out.Entries[0].who() != wantWho || string(compactJSON(t, out.Entries[0].After)) != `{}` {
		t.Errorf("-action plugins.reload: %+v %v", out.Entries, err)
	}
	code, _, stderr := runCLI(t, "-config", cfgPath, "audit", "-since", "yesterday")
	if code != exitFailure || !strings.Contains(stderr, `field "since"`) {
		t.Errorf("bad -since: exit %d, stderr %s", code, stderr)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func compactJSON(t *testing.T, raw json.RawMessage) json.RawMessage {
	t.Helper()
	if len(raw) == 0 {
		return raw
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return b.Bytes()
}
