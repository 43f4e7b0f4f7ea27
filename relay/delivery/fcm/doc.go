// Package fcm delivers alerts through Firebase Cloud Messaging (HTTP v1),
// using firebase.google.com/go/v4's messaging client, built without the
// SDK's root package and the services it links (sdk.go, RATIONALE.md).
//
// It owns the mapping from relay.Alert to an FCM message (notification
// messages for informational alerts, data-only messages for actionable and
// silent ones), the service-account OAuth2 token exchange (always against the
// credentials file's token_uri, over a transport that trusts ca_file), the
// per-send deadline that bounds the SDK's own 503 retries, and the
// classification of every FCM error into a *delivery.Error. It does not retry
// beyond what the SDK does inside one send.
package fcm
