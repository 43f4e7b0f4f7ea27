// Package pushbombingguard is the push_bombing_guard policy, the rate limit
// OWASP ASVS asks for on push authentication. It counts a user's
// identity_verification prompts with the host-supplied user.recent counts
// (which include the event being judged):
//
//   - count <= max: the prompt passes unchanged;
//   - count == max+1 (the first prompt over the limit): suppressed with
//     reason "push_bombing_guard", and the output asks the host for one
//     notice (abi.Notice): a separate warning alert to the user, titled
//     "Repeated sign-in requests blocked", with a body that explains and
//     data {"warning": "push_bombing"}, that carries no actions and can
//     never be answered;
//   - count > max+1: suppressed with reason "push_bombing_guard".
//
// The host counts at decision time, one user's events one by one in
// event order, in the store (so the counts survive a restart and are
// shared by a cluster): exactly one decision per window sees max+1.
//
// So an attacker who spams MFA prompts gets at most max prompts through, and the
// user one warning, per window. identity_verification is often enforced, so
// the manifest must grant override_enforced = true.
//
// Config:
//
//	{"max": 5, "window": "10m"}   // window: "1m", "10m" or "1h"
package pushbombingguard
