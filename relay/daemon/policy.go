package daemon

import (
	"context"
	"net/http"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/policy"
)

// policyAdapter lets the pipeline run the plugin chain of the watcher.
type policyAdapter struct {
	w *policy.Watcher
}

// Applies tells the pipeline whether an event needs the plugins: one that
// needs none is decided on accept, in the same store write.
func (p policyAdapter) Applies(ev relay.Event) bool { return p.w.Applies(ev.Workspace, ev.Type) }

// Active tells the pipeline whether any plugin is loaded (one could read
// the user.recent counts, which only deciders keep).
func (p policyAdapter) Active() bool { return p.w.Active() }

func (p policyAdapter) Evaluate(ctx context.Context, in pipeline.PolicyInput) (pipeline.PolicyResult, error) {
	ev := in.Event
	var recent map[string]abi.Recent
	if len(in.Recent) > 0 {
		recent = make(map[string]abi.Recent, len(in.Recent))
		for t, c := range in.Recent {
			recent[t] = abi.Recent{M1: c.M1, M10: c.M10, H1: c.H1}
		}
	}
	res, err := p.w.Evaluate(ctx, &policy.Request{
		Now: in.Now, Event: &ev, Baseline: in.Baseline,
		Settings: in.Settings, Preferences: in.Preferences, Devices: in.Devices,
		Recent: recent,
	})
	if err != nil {
		return pipeline.PolicyResult{}, err
	}
	out := pipeline.PolicyResult{
		Verdict: res.Verdict, Reason: res.Reason, DeferUntil: res.DeferUntil,
		Plugins: res.Plugins, Devices: res.Devices,
	}
	for _, n := range res.Notices {
		out.Notices = append(out.Notices, pipeline.Notice{Plugin: n.Plugin, Title: n.Title, Body: n.Body, Data: n.Data})
	}
	if set := res.Set; set != nil {
		out.Apply = func(a *relay.Alert) { applySet(a, set) }
	}
	return out, nil
}

// applySet applies the plugins' field changes to the rendered alert.
func applySet(a *relay.Alert, s *abi.Set) {
	if s.Title != nil {
		a.Title = *s.Title
	}
	if s.Body != nil {
		a.Body = *s.Body
	}
	if s.Priority != nil {
		a.Priority = relay.Priority(*s.Priority)
	}
	if s.InterruptionLevel != nil {
		a.InterruptionLevel = *s.InterruptionLevel
	}
	if s.Sound != nil {
		a.Sound = *s.Sound
	}
	if s.Category != nil {
		a.Category = *s.Category
	}
	if s.ThreadID != nil {
		a.ThreadID = *s.ThreadID
	}
	if len(s.Data) > 0 {
		data := make(map[string]string, len(a.Data)+len(s.Data))
		for k, v := range a.Data {
			data[k] = v
		}
		for k, v := range s.Data {
			data[k] = v
		}
		a.Data = data
	}
}

// pluginsHandler serves GET /v1/plugins.
func pluginsHandler(w *policy.Watcher) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		httpjson.Write(rw, http.StatusOK, map[string]any{"plugins": w.List()})
	})
}

// reloadHandler serves POST /v1/plugins/reload.
func reloadHandler(w *policy.Watcher) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		start := time.Now()
		if err := w.Reload(); err != nil {
			httpjson.Write(rw, http.StatusOK, map[string]any{"reloaded": true, "took": time.Since(start).String(), "errors": err.Error(), "plugins": w.List()})
			return
		}
		httpjson.Write(rw, http.StatusOK, map[string]any{"reloaded": true, "took": time.Since(start).String(), "plugins": w.List()})
	})
}
