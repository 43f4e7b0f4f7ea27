package ingest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Audit limits of GET /v1/audit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = store.MaxAuditLimit
)

// AuditList is the answer of GET /v1/audit: entries newest first. When
// more may match, NextBefore is the "before" of the next page.
type AuditList struct {
	Entries    []relay.AuditEntry `json:"entries"`
	NextBefore uint64             `json:"next_before,omitempty"`
}

// Record appends an audit entry made by the sender of r (its Time and
// Actor are filled in). The change it records is already made, so a
// failure to record is logged (as an error naming the change), not
// returned: the caller's answer stays true. log nil: discarded.
func Record(ctx context.Context, log hclog.Logger, a store.AuditLog, e relay.AuditEntry) {
	if a == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Actor.Kind == "" {
		e.Actor = Actor(ctx)
	}
	// The change is made: record it even if the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := a.AppendAudit(ctx, e); err != nil && log != nil {
		log.Error("audit entry not recorded", "action", e.Action, relay.LogKeyWorkspace, e.Workspace,
			relay.LogKeyUser, e.User, "target", e.Target, "before", string(e.Before), "after", string(e.After), relay.LogKeyError, err)
	}
}

func (s *Server) record(r *http.Request, e relay.AuditEntry) {
	Record(r.Context(), s.log, s.opts.Audit, e)
}

// getAudit serves GET /v1/audit?workspace=&user=&action=&since=&before=&limit=.
// since is an RFC 3339 time or a duration back from now ("24h").
func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) {
	if s.opts.Audit == nil {
		writeError(w, http.StatusNotFound, CodeNotFound, "no audit log")
		return
	}
	f, err := parseAuditFilter(r.URL.Query(), time.Now())
	if err != nil {
		badRequest(w, err)
		return
	}
	entries, err := s.opts.Audit.Audit(r.Context(), f)
	if err != nil {
		s.storeError(w, "read audit log", err)
		return
	}
	out := AuditList{Entries: entries}
	if len(entries) == f.Limit {
		out.NextBefore = entries[len(entries)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
}

// parseAuditFilter reads GET /v1/audit's query parameters.
func parseAuditFilter(q map[string][]string, now time.Time) (store.AuditFilter, error) {
	f := store.AuditFilter{Limit: DefaultAuditLimit}
	for k := range q {
		switch k {
		case "workspace", "user", "action", "since", "before", "limit":
		default:
			return f, &FieldError{Field: k, Reason: "unknown query parameter; use workspace, user, action, since, before, limit"}
		}
	}
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f.Workspace, f.User, f.Action = get("workspace"), get("user"), get("action")
	for _, k := range []string{"workspace", "user"} {
		if v := get(k); v != "" {
			if err := checkName(k, v); err != nil {
				return f, err
			}
		}
	}
	if v := get("since"); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			f.Since = t
		} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
			f.Since = now.Add(-d)
		} else {
			return f, &FieldError{Field: "since", Reason: fmt.Sprintf("want an RFC 3339 time or a positive duration such as 24h, got %s", quoteShort(v))}
		}
	}
	if v := get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return f, &FieldError{Field: "before", Reason: "want a positive sequence number, got " + quoteShort(v)}
		}
		f.Before = n
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			return f, &FieldError{Field: "limit", Reason: fmt.Sprintf("want 1 to %d, got %s", MaxAuditLimit, quoteShort(v))}
		}
		f.Limit = n
	}
	return f, nil
}
