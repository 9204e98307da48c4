package httpapi

import (
	"context"
	"net/http"
)

// What the tests of package httpapi_test reach inside the API for.

// SessionCookie names the web UI's session cookie, for tests that send or forge one.
const SessionCookie = sessionCookie

// ParseLastEventID is parseLastEventID, for the fuzz test that skips streams it would follow.
var ParseLastEventID = parseLastEventID

// EnterPasswordGate takes a slot of the password gate, as a login does, until release.
func (s *Server) EnterPasswordGate(ctx context.Context) (release func(), err error) {
	return s.gate.Enter(ctx)
}

// Recover is the middleware that turns a handler's panic into a logged 500 problem.
func (s *Server) Recover(next http.Handler) http.Handler { return s.recover(next) }

// Observe is the middleware that counts every request by its route pattern.
func (s *Server) Observe(next http.Handler) http.Handler { return s.observe(next) }

// ParseCursor and FormatCursor are the change feed's cursor codec, for tests that read event ids.
func ParseCursor(s string) (map[int64]int64, error) { return parseCursor(s) }

// FormatCursor encodes per-account positions as the change feed's cursor.
func FormatCursor(c map[int64]int64) string { return cursor(c).String() }

// OpenStreams is how many event streams the user has open on this instance.
func (s *Server) OpenStreams(user int64) int { return s.streams.count(user) }
