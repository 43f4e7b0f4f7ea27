# quiet_hours: defer (or suppress) non-urgent notifications during each
# user's quiet window. Enforced types always pass, and so do the
# time-critical types listed in exempt: an MFA prompt, a new-device request
# or an OTP deferred to the morning would expire unseen.
order    = 50
on_error = "skip"
mode     = "enforce"

config {
  policy  = "quiet_hours"   # which policy of the bundle (make policies installs one module for all)
  default = { start = "22:00", end = "07:00", tz = "Europe/Paris" }
  users   = {}
  action  = "defer"
  exempt  = ["identity_verification", "new_trusted_device", "otp_received"]
}
