package daemon

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/httpjson"
)

// backuper is a store that can stream a consistent copy of itself (bolt).
type backuper interface {
	Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error)
}

// backupHandler serves GET /v1/backup: the store file as one consistent
// snapshot, streamed while relayd runs (relayctl backup). A store without
// a file (jetstream) answers 501 naming what to do instead.
func backupHandler(st any, log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := st.(backuper)
		if !ok {
			httpjson.Error(w, http.StatusNotImplemented, "not_implemented",
				"store \"jetstream\" has no single file to copy: back up the JetStream streams with `nats stream backup` or snapshots (docs/operations.md)")
			return
		}
		// A large file takes longer than any request deadline.
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		start := time.Now()
		n, err := b.Backup(r.Context(), w, func(size int64) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Header().Set("Content-Disposition", `attachment; filename="relay.db"`)
			w.WriteHeader(http.StatusOK)
		})
		if err != nil {
			if n == 0 && w.Header().Get("Content-Length") == "" {
				httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			}
			// Mid-stream: the short body (against Content-Length) tells
			// the client the copy is incomplete.
			log.Error("backup failed", "bytes", n, relay.LogKeyError, err)
			return
		}
		log.Info("backup streamed", "bytes", n, "took", time.Since(start))
	})
}
