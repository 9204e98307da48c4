package main

import (
	"net/http"

	"mailsync/internal/httpapi"
	"mailsync/internal/web"
)

// httpHandler is everything `serve` answers: the API with its probes and metrics, and at "/"
// the web UI.
func httpHandler(api *httpapi.Server) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/api/", "/livez", "/readyz", "/metrics"} {
		mux.Handle(p, api.Handler())
	}
	mux.Handle("/", web.Handler())
	return mux
}
