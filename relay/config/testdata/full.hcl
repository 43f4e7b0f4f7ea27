# Every block and attribute, with values that differ from the defaults.
shutdown_timeout = "30s"
data_dir         = "/var/lib/relayd"

log {
  level  = "debug"
  format = "json"
}

socket {
  path = "/run/relayd/relayd.sock"
  mode = "0600"
}

api {
  address = "0.0.0.0:8443"
  tls {
    cert_file = "tls/relay.crt"
    key_file  = "tls/relay.key"
  }
}

auth {
  issuer          = "https://id.example.com"
  audience        = "edgerelay"
  public_key_file = "keys/upstream.pem"
}

store "jetstream" {
  url      = "nats://n1:4222,nats://n2:4222"
  replicas = 3
}

app "com.example.ios" {
  apns {
    topic         = "com.example.ios"
    cert_file     = "certs/push.p12"
    cert_password = "hunter2"
    endpoint      = "https://apns-proxy.internal:8443/"
    ca_file       = "certs/proxy-ca.pem"
    connections   = 8
  }
}

app "android" {
  fcm {
    project_id       = "example-prod"
    credentials_file = "/etc/relayd/fcm.json"
  }
}

app "both" {
  apns {
    topic    = "com.example.both"
    key_file = "AuthKey.p8"
    key_id   = "ABC123DEFG"
    team_id  = "TEAM123456"
  }
  fcm {
    project_id       = "example-both"
    credentials_file = "fcm-both.json"
    endpoint         = "http://127.0.0.1:8444"
  }
}

# Built-in types: override a few attributes only.
notification "otp_received" {
  default = "enforced"
  ttl     = "3m"
}
notification "account_shared" {
  default = "disabled"
}

# A type the product does not ship.
notification "break_glass" {
  default  = "enforced"
  ttl      = "1h30m"
  priority = "high"
  category = "ACK"
  actions  = ["acknowledge"]
  seal     = true
}

plugins {
  dir          = "policies"
  timeout      = "100ms"
  memory_limit = "512KiB"
  on_error     = "suppress"
}

retention {
  answers          = "2h"
  dead_letters     = "off"
  inactive_devices = "2160h"
}

retry {
  initial = "500ms"
  max     = "1h"
  jitter  = 0.5
}

metrics {
  address      = ":9480"
  allow_remote = true  # a firewall restricts it
  pprof        = false
}
