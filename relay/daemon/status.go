package daemon

import (
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay/httpjson"
)

// Status is the answer of GET /v1/status on the socket: what relayd runs
// and since when. `relayctl status` shows it with the queue, plugins and
// readiness.
type Status struct {
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	StartedAt time.Time `json:"started_at"`
	Uptime    string    `json:"uptime"`
	Store     string    `json:"store"`
	Apps      []string  `json:"apps"`
}

// statusHandler serves GET /v1/status for a daemon started at start.
func (d *Daemon) statusHandler(start time.Time) http.Handler {
	version := d.Version
	if version == "" {
		version = "dev"
	}
	apps := make([]string, 0, len(d.cfg.Apps))
	for _, a := range d.cfg.Apps {
		apps = append(apps, a.Name)
	}
	slices.Sort(apps)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusOK, Status{
			Version:   version,
			GoVersion: runtime.Version(),
			StartedAt: start.UTC(),
			Uptime:    time.Since(start).Round(time.Second).String(),
			Store:     d.cfg.Store.Kind,
			Apps:      apps,
		})
	})
}
