# Many mistakes at once: every one is reported, in file order.
shutdown_timeout = "soon"
colour           = "blue"

log {
  level  = "verbose"
  format = "yaml"
}

socket {
  mode = "rw-rw----"
  path = ""
}

api {
  address = "0.0.0.0:80"
}

auth {
  issuer            = "upstream"
  hs256_secret_file = "jwt.secret"
  public_key_file   = "upstream.pem"
}

store "sqlite" {
  path = "relay.db"
}

app "demo" {
  apns {
    topic       = "com.example.demo"
    key_file    = "AuthKey.p8"
    cert_file   = "push.p12"
    endpoint    = "https://api.push.apple.com/3/device"
    connections = 1000
  }
  fcm {
    credentials_file = "fcm.json"
    endpoint         = "grpc://fcm"
  }
}

app "demo" {
  fcm {
    project_id       = "p"
    credentials_file = "fcm.json"
  }
}

notification "otp_received" {
  default  = "always"
  ttl      = "0s"
  priority = "urgent"
  actions  = ["ok", "ok"]
  sound    = "ping"
}

notification "Bad-Name" {}

plugins {
  timeout      = "-5ms"
  memory_limit = "32MB"
  on_error     = "ignore"
}

retention {
  answers          = "10s"
  dead_letters     = "forever"
  inactive_devices = "-1h"
}

retry {
  initial = "1m"
  max     = "10s"
  jitter  = 1.2
}

metrics {
  address = "localhost"
}
