# otp_redaction: a one-time code never shows on the lock screen.
order    = 40
types    = ["otp_received"]
on_error = "suppress"    # fail closed: better no OTP alert than a leaked code
mode     = "enforce"

config {
  policy = "otp_redaction"   # which policy of the bundle (make policies installs one module for all)
  body = "Tap to view your code for {account}"
}
