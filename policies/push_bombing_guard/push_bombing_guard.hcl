# push_bombing_guard: at most `max` MFA prompts per user per window; the
# first prompt over the limit becomes one warning alert, the rest are
# suppressed. identity_verification is usually enforced, hence
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
