package bolt

import (
	"context"
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole store file to w while the
// store keeps serving: one read transaction pins a snapshot (writers go on
// beside it; pages they free are reused only after it ends). size, when
// set, learns the copy's length before its first byte. The copy opens as a
// store file of its own (restore: stop relayd, replace the file, start;
// docs/operations.md). It returns the bytes written.
func (s *Store) Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer leave()
	var n int64
	err = s.db.View(func(tx *bbolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// ctxWriter stops a long copy once ctx is done (the client went away, or
// relayd is stopping): the read transaction must not outlive it.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
