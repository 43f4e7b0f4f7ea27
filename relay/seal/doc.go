// Package seal encrypts an alert's title, body and data to a device's
// X25519 public key with HPKE (RFC 9180), so Apple and Google carry only
// ciphertext and the app's notification extension opens it on the phone.
//
// It owns the sealed-payload format (docs/sealed-payloads.md): the suite
// DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + ChaCha20-Poly1305 in base
// mode, the info string Info, and the encoding of the result. It does no
// I/O and keeps no state; deciding which alerts to seal is the queue's.
package seal
