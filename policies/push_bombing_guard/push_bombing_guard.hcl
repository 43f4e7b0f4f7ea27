# push_bombing_guard: at most `max` MFA prompts per user per window; the
# rest are suppressed, and the first over the limit asks the relay for one
# separate warning alert (a notice: no actions, never answerable). identity_verification is usually enforced, hence
# override_enforced.
order             = 20
types             = ["identity_verification"]
override_enforced = true
on_error          = "skip"
mode              = "enforce"

config {
  policy = "push_bombing_guard"   # which policy of the bundle (make policies installs one module for all)
  max    = 5
  window = "10m"
}
