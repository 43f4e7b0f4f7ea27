# new_device_escalation: sign-ins and new devices from a country outside the
# user's usual ones are escalated (interruption level, clear title).
order    = 30
types    = ["identity_verification", "new_trusted_device"]
on_error = "skip"
mode     = "enforce"

config {
  policy = "new_device_escalation"   # which policy of the bundle (make policies installs one module for all)
  usual   = {}            # e.g. { "u-42" = ["FR", "DE"] }
  default = ["US"]
  level   = "time-sensitive"
}
