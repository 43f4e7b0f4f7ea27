package relay

// Ids of the events the relay makes itself (withdraw pushes, notices,
// token proofs). They are made here, and only here, in a namespace
// upstream ids cannot reach: every internal id is
// InternalPrefix + kind + InternalPrefix + rest, and CheckID refuses an id
// that begins with InternalPrefix. The kinds hold no InternalPrefix, so
// (kind, rest) is read back unambiguously.
//
// Ids made before this namespace ("<id>~withdraw") stay in stores until
// their events are pruned (they expire with the prompt); until then an
// upstream event with that very id is answered duplicate.

// InternalPrefix begins every internal event id and no upstream id.
const InternalPrefix = "~"

// Kinds of internal events.
const (
	// InternalWithdraw carries the silent push that withdraws an answered
	// (or cancelled) prompt from the user's devices.
	InternalWithdraw = "withdraw"
	// InternalExpired carried the withdraw push sent when an actionable
	// prompt expired unanswered. Relays since 2026-12-06 send that push
	// from the prompt's own job (relay.StateWithdrawDue); stores keep such
	// events until they are pruned.
	InternalExpired = "expired"
	// InternalNotice carries a notice a plugin asked for (the push-bombing
	// guard's warning).
	InternalNotice = "notice"
	// InternalTokenProof carries the silent push with the one-time code
	// that proves an app holds a push token (a token moving to another
	// user).
	InternalTokenProof = "token-proof"
)

// InternalID returns the id of an internal event of kind derived from id
// (an event id, or a nonce).
func InternalID(kind, id string) string {
	return InternalPrefix + kind + InternalPrefix + id
}

// WithdrawID is the id of the derived event that carries the silent
// "withdraw the prompt" push of event id.
func WithdrawID(id string) string { return InternalID(InternalWithdraw, id) }

// NoticeID is the id of the derived event that carries the notice plugin
// asked for while judging event id: one per event and plugin. (Two pairs
// could only meet if a plugin's file name held InternalPrefix.)
func NoticeID(id, plugin string) string { return InternalID(InternalNotice, id+InternalPrefix+plugin) }
