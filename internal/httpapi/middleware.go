package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"time"
)

// statusWriter remembers the status a handler wrote. It unwraps for http.ResponseController,
// which SSE streams use to flush and to lift the write deadline.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recover turns a handler's panic into a logged 500 problem instead of a dropped connection.
func (s *Server) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // the handler asked for the connection to be dropped
			}
			s.log.Error("httpapi: handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if sw.status == 0 {
				writeProblem(sw, http.StatusInternalServerError, "internal error: the server failed while answering; the failure is logged")
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// observe counts every request by its route pattern.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// The mux wrote the matched pattern into r (a panic leaves it set too).
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			code := sw.status
			if code == 0 {
				code = http.StatusOK
			}
			if v := recover(); v != nil {
				code = http.StatusInternalServerError
				defer panic(v)
			}
			s.cfg.Metrics.HTTPRequest(r.Method, route, code, time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// problem is an RFC 9457 problem document, as huma writes them.
type problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// writeProblem writes a problem document from a plain handler.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Title: http.StatusText(status), Status: status, Detail: detail})
}

// errStatus maps the errors plain handlers meet to a status and a message fit for the client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se interface{ GetStatus() int }
	if errors.As(err, &se) {
		writeProblem(w, se.GetStatus(), err.Error())
		return
	}
	s.log.Error("httpapi: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeProblem(w, http.StatusInternalServerError, "internal error; the failure is logged")
}
