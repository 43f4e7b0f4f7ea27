// Package seal encrypts an alert's title, body, data and presentation
// fields (category, sound, thread id) to a device's X25519 public key with
// HPKE (RFC 9180), so Apple and Google carry only ciphertext and the app's
// notification extension opens it on the phone.
//
// It owns the sealed-payload format (docs/sealed-payloads.md, version 2):
// the suite DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + ChaCha20-Poly1305 in
// base mode, the info string Info, the Binding of the ciphertext to its
// alert (workspace, event id, type, expires_at as associated data, so a
// ciphertext cannot be moved to another alert), and the encoding of the
// result. It also makes the content-free Generic alert of seal =
// "required". It does no I/O and keeps no state; deciding which alerts to
// seal is the daemon's sealing notifier's.
package seal
