package ingest

import (
	"context"
	"net"

	"github.com/edgerelay/edgerelay/relay"
)

type peerKey struct{}

// connContext attaches the connecting process's credentials to the
// connection's requests (http.Server.ConnContext): the socket is trusted
// by file permissions, and the audit log names who used it.
func connContext(ctx context.Context, c net.Conn) context.Context {
	a := relay.Actor{Kind: relay.ActorSocket}
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, pid, ok := peerCred(uc); ok {
			a = relay.SocketActor(uid, pid)
		}
	}
	return context.WithValue(ctx, peerKey{}, a)
}

// Actor returns who sent a socket request: the peer's uid and pid as the
// kernel reported them when it connected (SO_PEERCRED), or a socket actor
// without them where the platform does not tell (and in tests that call
// ServeHTTP directly).
func Actor(ctx context.Context) relay.Actor {
	if a, ok := ctx.Value(peerKey{}).(relay.Actor); ok {
		return a
	}
	return relay.Actor{Kind: relay.ActorSocket}
}
