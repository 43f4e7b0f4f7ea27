# /etc/relayd/relayd.hcl — production starting point for relayd installed
# from a release archive (systemd unit relayd.service) or the container
# image. Every attribute is described in docs/config.md; check a change with
#   relayd -config /etc/relayd/relayd.hcl -check
# before `systemctl reload relayd` / a restart.
#
# Paths match the unit's directories: state in /var/lib/relayd
# (StateDirectory), the socket in /run/relayd (RuntimeDirectory), config,
# keys and policy plugins in /etc/relayd (ConfigurationDirectory).

log {
  level  = "info"
  format = "json" # journald and log shippers read one JSON object per line
}

data_dir         = "/var/lib/relayd"
shutdown_timeout = "10s"

# Upstream services connect here. Give them the relayd group (or change
# mode) to let them in: the file permissions are the socket API's only
# access control.
socket {
  path = "/run/relayd/relayd.sock"
  mode = "0660"
}

# The app API for phones. Plain HTTP is refused unless the address is
# loopback (e.g. behind a TLS-terminating proxy on the same host).
api {
  address = "0.0.0.0:8480"
  tls {
    cert_file = "/etc/relayd/tls.crt"
    key_file  = "/etc/relayd/tls.key"
  }
}

auth {
  issuer          = "https://id.example.com"
  audience        = "edgerelay"
  public_key_file = "/etc/relayd/upstream.pem" # EdDSA or RS256 public key
}

store "bolt" {
  path      = "/var/lib/relayd/relay.db"
  retention = "168h"
}

app "example" {
  apns {
    topic       = "com.example.app"
    key_file    = "/etc/relayd/AuthKey.p8"
    key_id      = "ABC123DEFG"
    team_id     = "TEAM123456"
    connections = 2
  }
  fcm {
    project_id       = "example-project"
    credentials_file = "/etc/relayd/fcm-service-account.json"
  }
}

notification "identity_verification" {
  default = "enforced"
}

# The shipped policies are installed here (release archive: policies/;
# container image: built in). Drop NAME.wasm (+ NAME.hcl) files in to add
# your own; changes are picked up without a restart.
plugins {
  dir          = "/etc/relayd/policies"
  timeout      = "250ms"
  memory_limit = "32MiB"
  on_error     = "skip"
}

retry {
  initial = "1s"
  max     = "5m"
  jitter  = 0.2
}

metrics {
  address = "127.0.0.1:9480"
}

# Who changed settings, preferences, devices, dead letters and plugins
# (relayctl audit); entries older than retention are pruned.
audit {
  retention = "8760h"
}
