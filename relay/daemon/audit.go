package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/policy"
	"github.com/edgerelay/edgerelay/relay/store"
)

// captureWriter keeps a copy of a handler's status and body, so a wrapper
// can record what an admin route did.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// auditOK wraps an admin route of the socket: when it answers 200, the
// entry built from the request and the answer's body is recorded with the
// socket peer as the actor.
func auditOK(next http.Handler, a store.AuditLog, log hclog.Logger, entry func(r *http.Request, body []byte) relay.AuditEntry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &captureWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		if cw.status != http.StatusOK {
			return
		}
		ingest.Record(r.Context(), log, a, entry(r, cw.body.Bytes()))
	})
}

// compactJSON is body on one line, or nil when it is not JSON.
func compactJSON(body []byte) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, body) != nil {
		return nil
	}
	return b.Bytes()
}

// replayEntry records POST /v1/deadletters/{id}/replay answered 200. (A
// 409 "no provider for its lane" re-opened the job too but is not
// recorded: its answer does not name the job.)
func replayEntry(r *http.Request, body []byte) relay.AuditEntry {
	var res struct {
		Event relay.EventKey `json:"event"`
	}
	_ = json.Unmarshal(body, &res)
	return relay.AuditEntry{Action: relay.AuditDeadLetterReplay, Workspace: res.Event.Workspace, Target: r.PathValue("id"),
		Before: relay.AuditJSON(map[string]string{"state": string(relay.StateFailed)}), After: compactJSON(body)}
}

// cancelEntry records the upstream's DELETE /v1/events/{workspace}/{id}
// answered 200 (a repeated cancel too: it is answered 200 with nothing
// withdrawn).
func cancelEntry(r *http.Request, body []byte) relay.AuditEntry {
	return relay.AuditEntry{Action: relay.AuditEventCancel, Workspace: r.PathValue("workspace"), Target: r.PathValue("id"),
		After: compactJSON(body)}
}

// pluginVersions is the loaded plugins by name, for plugins.reload's
// before and after.
func pluginVersions(list []policy.PluginInfo) map[string]policy.PluginVersion {
	out := make(map[string]policy.PluginVersion, len(list))
	for _, p := range list {
		if p.Hash != "" {
			out[p.Name] = policy.PluginVersion{Hash: p.Hash, Order: p.Order, Mode: p.Mode}
		}
	}
	return out
}

// auditReload wraps POST /v1/plugins/reload: the operator's reload is
// recorded with the plugin versions before and after (each plugin it
// loaded or unloaded is also recorded, by the watcher's OnChange).
func auditReload(next http.Handler, list func() []policy.PluginInfo, a store.AuditLog, log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := pluginVersions(list())
		cw := &captureWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		if cw.status != http.StatusOK {
			return
		}
		ingest.Record(r.Context(), log, a, relay.AuditEntry{Action: relay.AuditPluginsReload,
			Before: relay.AuditJSON(before), After: relay.AuditJSON(pluginVersions(list()))})
	})
}

// auditPluginChange records a plugin loaded, replaced or unloaded by the
// watcher (actor: relayd itself, named by its relay name, since each
// relay of a cluster loads its own plugin directory; the operator's own
// reload is recorded by auditReload).
func auditPluginChange(a store.AuditLog, relayName string, log hclog.Logger) func(policy.PluginChange) {
	return func(c policy.PluginChange) {
		action := relay.AuditPluginLoad
		if c.After == nil {
			action = relay.AuditPluginUnload
		}
		e := relay.AuditEntry{Time: time.Now().UTC(), Actor: relay.Actor{Kind: relay.ActorSystem, Subject: relayName}, Action: action, Target: c.Name}
		if c.Before != nil {
			e.Before = relay.AuditJSON(c.Before)
		}
		if c.After != nil {
			e.After = relay.AuditJSON(c.After)
		}
		ingest.Record(context.Background(), log, a, e)
	}
}

// auditErase completes an erasure in the audit log: the entries about the
// erased user (or workspace) go too, and the erasure is recorded with the
// operator as the actor and the user only as a pseudonym (ErasedUserID),
// so the log keeps who erased when without keeping the user's id.
func auditErase(a store.AuditLog, log hclog.Logger) func(ctx context.Context, r *http.Request, res eraseResult) {
	return func(ctx context.Context, r *http.Request, res eraseResult) {
		ctx = context.WithoutCancel(ctx)
		n, err := a.EraseAudit(ctx, res.Workspace, res.User)
		if err != nil {
			// Ids only, as the erase handler logs.
			log.Error("erase audit entries", relay.LogKeyWorkspace, res.Workspace, relay.LogKeyUser, res.User, relay.LogKeyError, err)
		}
		target := "workspace"
		if res.User != "" {
			target = ErasedUserID(res.Workspace, res.User)
		}
		ingest.Record(ctx, log, a, relay.AuditEntry{Action: relay.AuditErase, Workspace: res.Workspace, Target: target,
			After: relay.AuditJSON(map[string]any{"erased": res.Erased, "audit_entries": n})})
	}
}

// ErasedUserID is how the audit log names an erased user: "user:" and the
// first 16 bytes of SHA-256(workspace, NUL, user) in hex. Whoever knows the
// id can check that it was erased; the log does not keep the id.
func ErasedUserID(workspace, user string) string {
	h := sha256.Sum256([]byte(workspace + "\x00" + user))
	return "user:" + hex.EncodeToString(h[:16])
}
