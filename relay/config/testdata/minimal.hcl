# The smallest valid config: one app. Everything else is a default.
app "demo" {
  fcm {
    project_id       = "demo-project"
    credentials_file = "fcm.json"
  }
}
