// Package apns delivers alerts to iOS devices through Apple's APNs provider
// API, using sideshow/apns2 over long-lived HTTP/2 connections.
//
// It owns the mapping from relay.Alert to an APNs request (headers and
// payload), the provider credentials (one shared .p8 token, or a client
// certificate), the connection pool and in-flight cap, and the
// classification of every APNs answer into a *delivery.Error. It does not
// retry: the queue decides what happens next.
package apns
