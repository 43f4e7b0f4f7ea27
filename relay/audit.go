package relay

import (
	"encoding/json"
	"time"
)

// ActorKind says through which door a change came.
type ActorKind string

// Actor kinds.
const (
	ActorSocket ActorKind = "socket" // an operator on the local socket (uid/pid from SO_PEERCRED)
	ActorApp    ActorKind = "app"    // an app API caller (JWT subject, workspace, role)
	ActorSystem ActorKind = "system" // relayd itself (plugin directory watcher, SIGHUP)
)

// Actor is who made a change. Socket actors carry the peer's uid and pid
// (nil when the kernel did not tell); app actors the JWT's sub, ws and
// role; system actors the relay's name as Subject.
type Actor struct {
	Kind      ActorKind `json:"kind"`
	UID       *int      `json:"uid,omitempty"`
	PID       *int      `json:"pid,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Workspace string    `json:"workspace,omitempty"`
	Role      string    `json:"role,omitempty"`
}

// SocketActor is the actor of a socket request from a peer with uid and
// pid.
func SocketActor(uid, pid int) Actor {
	return Actor{Kind: ActorSocket, UID: &uid, PID: &pid}
}

// Audit actions: what an AuditEntry records.
const (
	AuditSettingsPut      = "settings.put"      // a workspace's settings changed
	AuditPreferencesPut   = "preferences.put"   // a user's preferences changed by someone else
	AuditDeviceDelete     = "device.delete"     // an operator removed a device
	AuditDeadLetterReplay = "deadletter.replay" // an operator replayed a dead letter
	AuditPluginsReload    = "plugins.reload"    // an operator asked for a plugin reload
	AuditPluginLoad       = "plugin.load"       // a plugin (version) was loaded
	AuditPluginUnload     = "plugin.unload"     // a plugin was unloaded
	AuditEventCancel      = "event.cancel"      // an event's open deliveries were cancelled
	AuditErase            = "erase"             // a user's or workspace's data was erased
)

// AuditEntry is one record of the audit log: who changed what, when, and
// the state before and after (JSON, as the API shows it; absent when
// there is none). The store assigns Seq, in commit order.
type AuditEntry struct {
	Seq       uint64          `json:"seq"`
	Time      time.Time       `json:"time"`
	Actor     Actor           `json:"actor"`
	Action    string          `json:"action"`
	Workspace string          `json:"workspace,omitempty"`
	User      string          `json:"user,omitempty"`
	Target    string          `json:"target,omitempty"` // device id, dead letter id, plugin name, event id
	Before    json.RawMessage `json:"before,omitempty"`
	After     json.RawMessage `json:"after,omitempty"`
}

// AuditJSON marshals v for AuditEntry.Before and After; nil stays nil.
// Values here are the relay's own (maps, structs), so an error cannot
// happen in practice; it yields nil rather than a broken entry.
func AuditJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
