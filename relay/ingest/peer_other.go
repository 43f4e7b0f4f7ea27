//go:build !linux

package ingest

import "net"

// peerCred is only implemented on Linux (SO_PEERCRED); elsewhere socket
// actors carry no uid or pid.
func peerCred(*net.UnixConn) (uid, pid int, ok bool) { return 0, 0, false }
