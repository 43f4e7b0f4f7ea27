// Package api is edgerelay's app API: the HTTP server phones talk to over
// the network (DESIGN.md "App API", docs/app-api.md). It owns bearer-token
// authentication (JWT, algorithm pinned to the configured key), the
// devices, preferences, workspace settings and actions endpoints, per-user
// and per-address rate limits, strict request decoding, and the socket's
// GET /v1/actions/stream (StreamHandler, Hub), plus the withdraw alert the
// daemon sends to a user's other devices once an alert is answered
// (WithdrawAlert).
//
// Every request is treated as hostile: bodies are capped and decoded
// strictly, a caller reaches only its own workspace, user and devices,
// and every denial is logged with its reason (never the token). It does
// not decide or deliver alerts: answers are stored, published on the Hub
// and handed to Options.OnAnswer.
package api
