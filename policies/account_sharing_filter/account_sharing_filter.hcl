# account_sharing_filter: no alert for shares from allow-listed internal owners.
order    = 10
types    = ["account_shared"]
on_error = "skip"
mode     = "enforce"

config {
  policy          = "account_sharing_filter"   # which policy of the bundle (make policies installs one module for all)
  internal_owners = ["@corp.example"]
}
