package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/store"
)

// eraseRequest is POST /v1/erase's body.
type eraseRequest struct {
	Workspace string `json:"workspace"`
	User      string `json:"user,omitempty"` // "": the whole workspace
}

// eraseResult is its answer.
type eraseResult struct {
	Workspace string       `json:"workspace"`
	User      string       `json:"user,omitempty"`
	Erased    store.Erased `json:"erased"`
}

// maxEraseBody bounds POST /v1/erase's body.
const maxEraseBody = 4 << 10

// decodeErase reads and checks an erase request; errors name the field.
func decodeErase(r io.Reader) (eraseRequest, error) {
	var req eraseRequest
	dec := json.NewDecoder(io.LimitReader(r, maxEraseBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("body: %w", err)
	}
	switch {
	case strings.TrimSpace(req.Workspace) == "":
		return req, errors.New(`field "workspace": required`)
	case strings.ContainsRune(req.Workspace, 0):
		return req, errors.New(`field "workspace": contains NUL`)
	case strings.ContainsRune(req.User, 0):
		return req, errors.New(`field "user": contains NUL`)
	}
	return req, nil
}

// eraseHandler serves POST /v1/erase: everything the store holds of a user
// (or, without user, of a workspace) is removed; the answer counts it.
// onErased, when set, learns of each erasure (the audit log).
func eraseHandler(st store.Eraser, log hclog.Logger, onErased func(ctx context.Context, r *http.Request, res eraseResult)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeErase(r.Body)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		erased, err := st.Erase(r.Context(), req.Workspace, req.User)
		if err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		res := eraseResult{Workspace: req.Workspace, User: req.User, Erased: erased}
		// Ids only: the erased user's data is gone, and must not come back
		// through the logs.
		log.Info("erased", relay.LogKeyWorkspace, req.Workspace, relay.LogKeyUser, req.User,
			"devices", erased.Devices, "events", erased.Events, "answers", erased.Answers, "dead_letters", erased.DeadLetters)
		if onErased != nil {
			onErased(r.Context(), r, res)
		}
		httpjson.Write(w, http.StatusOK, res)
	})
}
