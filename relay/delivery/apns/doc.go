// Package apns delivers alerts to iOS devices through Apple's APNs provider
// API over long-lived HTTP/2 connections (golang.org/x/net/http2), with
// sideshow/apns2's provider tokens, certificate loading, reasons and
// response type. It builds each request itself rather than through
// apns2.Client.PushWithContext: the same request without that function's
// URL parsing, header canonicalisation, JSON re-validation and http.Client
// layer, and with the answer's headers in reach (Retry-After, which
// apns2.Response does not carry).
//
// It owns the mapping from relay.Alert to an APNs request (headers and
// payload), the provider credentials (one shared .p8 token, or a client
// certificate), the connection pool and in-flight cap, and the
// classification of every APNs answer into a *delivery.Error. It does not
// retry: the queue decides what happens next.
package apns
