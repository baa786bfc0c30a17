// Package errs holds the sentinel errors that cross package boundaries and
// decide an HTTP status. Wrap them with %w; internal/httpapi maps them to
// status codes in exactly one place.
package errs

import "errors"

var (
	// ErrBadRequest: the input is wrong; the message says what to fix.
	ErrBadRequest = errors.New("bad request")
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: no or unknown token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token's role may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: the request conflicts with the current state.
	ErrConflict = errors.New("conflict")
	// ErrNotLeader: this agent is not the raft leader; retry at the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoQuorum: no leader is known or the write could not be committed.
	ErrNoQuorum = errors.New("no quorum")
	// ErrUnavailable: a dependency (disk, agent) is not usable right now.
	ErrUnavailable = errors.New("unavailable")
)

// NotLeader carries the leader's API address when known.
type NotLeader struct {
	Leader    string
	LeaderAPI string
}

func (e *NotLeader) Error() string {
	if e.Leader == "" {
		return "not the leader and no leader is known (the cluster may be electing one or have lost quorum)"
	}
	return "not the leader; the leader is " + e.Leader + " (" + e.LeaderAPI + ")"
}

// Unwrap makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeader) Unwrap() error { return ErrNotLeader }
