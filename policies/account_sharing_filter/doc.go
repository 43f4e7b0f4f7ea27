// Package accountsharingfilter is the account_sharing_filter policy: an
// account_shared event whose data "owner" is an internal owner from the
// config allow-list is suppressed (reason "internal_owner"), so users are
// not alerted about routine shares from colleagues or service accounts.
//
// Config:
//
//	{"internal_owners": ["svc-backup@corp.example", "@corp.example"]}
//
// An entry starting with "@" matches every owner ending with it (a domain
// suffix); any other entry matches one owner exactly. Matching ignores case.
package accountsharingfilter
