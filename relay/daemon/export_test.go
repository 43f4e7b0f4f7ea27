package daemon

import "time"

// SocketRoutes returns the patterns the running daemon's socket serves
// (nil before Run has wired it).
func (d *Daemon) SocketRoutes() []string {
	if s := d.socket.Load(); s != nil {
		return s.Routes()
	}
	return nil
}

// SetTestHooks injects a store write fault (bolt) and shortens the health
// probe and undecided-sweep intervals; call before Run.
func (d *Daemon) SetTestHooks(storeFault func() error, health, sweep time.Duration) {
	d.storeFault, d.healthEvery, d.sweepEvery = storeFault, health, sweep
}
