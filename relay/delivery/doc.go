// Package delivery holds the contract between the queue and the push
// providers: the Notifier interface the queue calls, and the typed Error every
// provider returns, which says what the queue should do next (retry, drop the
// device token, give up, or stop and page an operator).
//
// The providers live beneath it: delivery/apns (Apple, via sideshow/apns2) and
// delivery/fcm (Google, via firebase.google.com/go/v4). This package does no
// I/O and keeps no state; it must not import either provider.
package delivery
