# quiet_hours: defer (or suppress) non-urgent notifications during each
# user's quiet window. Enforced types and MFA prompts always pass.
order    = 50
on_error = "skip"
mode     = "enforce"

config {
  default = { start = "22:00", end = "07:00", tz = "Europe/Paris" }
  users   = {}
  action  = "defer"
  exempt  = ["identity_verification"]
}
