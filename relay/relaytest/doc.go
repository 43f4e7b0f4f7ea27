// Package relaytest holds in-process fakes of Apple's and Google's push
// services for tests and `make run`: FakeAPNs (APNs' HTTP/2 provider API) and
// FakeFCM (FCM HTTP v1 plus Google's OAuth2 token endpoint). Both are real
// HTTP/2 servers over TLS that validate requests the way the real services do,
// record every push, and can be scripted to fail.
//
// It also writes development credentials (an APNs .p8 key, a Google
// service-account file, a CA and a server certificate for the fakes, a JWT
// secret), starts both fakes on fixed addresses for `make run`
// (StartDevFakes), and gives tests an hclog logger (NewLogger).
//
// Nothing here talks to the real services, and nothing in the daemon's
// production path may import this package.
package relaytest
