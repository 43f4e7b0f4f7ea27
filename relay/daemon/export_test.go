package daemon

// SocketRoutes returns the patterns the running daemon's socket serves
// (nil before Run has wired it).
func (d *Daemon) SocketRoutes() []string {
	if s := d.socket.Load(); s != nil {
		return s.Routes()
	}
	return nil
}
