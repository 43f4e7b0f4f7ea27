// Package pushbombingguard is the push_bombing_guard policy, the rate limit
// OWASP ASVS asks for on push authentication. It counts a user's
// identity_verification prompts with the host-supplied user.recent counts
// (which include the event being judged):
//
//   - count <= max: the prompt passes unchanged;
//   - count == max+1 (the first prompt over the limit): the prompt is still
//     delivered, but rewritten into one warning alert — title "Repeated
//     sign-in requests blocked", a body that explains, category "" (no
//     approve/deny buttons) and data {"warning": "push_bombing"} — with
//     reason "push_bombing_warning";
//   - count > max+1: suppressed with reason "push_bombing_suppressed".
//
// So an attacker who spams MFA prompts gets at most max prompts plus one
// warning through per window. identity_verification is often enforced, so
// the manifest must grant override_enforced = true.
//
// Config:
//
//	{"max": 5, "window": "10m"}   // window: "1m", "10m" or "1h"
package pushbombingguard
