package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/events"
	"mailsync/internal/httpapi"
	"mailsync/internal/imapconn"
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
	"mailsync/internal/web"
)

// sessionTTL is how long a web UI sign-in lasts.
const sessionTTL = 7 * 24 * time.Hour

// imapLogin tests IMAP credentials for the API before an account is saved or changed.
type imapLogin struct{}

func (imapLogin) CheckLogin(ctx context.Context, a store.Account, password string) error {
	conn, err := imapconn.Dial(ctx, imapConfig(a, password))
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// serverKey returns the server key (MAILSYNC_SECRET_KEY, else the key file in the data
// directory, made on first use) and the box that seals IMAP passwords under it.
func (g *Globals) serverKey() ([]byte, *secret.Box, error) {
	key, err := secret.LoadKey(os.Getenv("MAILSYNC_SECRET_KEY"), filepath.Join(g.DataDir, "secret.key"))
	if err != nil {
		return nil, nil, err
	}
	box, err := secret.New(key)
	if err != nil {
		return nil, nil, err
	}
	return key, box, nil
}

// taskSignals is how task changes reach the event streams: an in-process bus, bridged through
// PostgreSQL LISTEN/NOTIFY when several instances share that database. run, when not nil, must
// run for the bridge to work.
func (g *Globals) taskSignals(log *slog.Logger) (bus *events.Bus, changed func(task.Task), run func(context.Context) error) {
	bus = events.NewBus()
	if !strings.HasPrefix(g.DB, "postgres://") && !strings.HasPrefix(g.DB, "postgresql://") {
		return bus, bus.TaskChanged, nil
	}
	br := events.NewBridge(bus, g.DB, "", log)
	return bus, br.TaskChanged, br.Run
}

// httpHandler is everything `serve` answers: the API (with the probes and metrics) and, at "/",
// the web UI.
func httpHandler(api *httpapi.Server) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/api/", "/livez", "/readyz", "/metrics"} {
		mux.Handle(p, api.Handler())
	}
	mux.Handle("/", web.Handler())
	return mux
}

// newAPI builds the HTTP API over the store and the lifecycle.
func (g *Globals) newAPI(s *store.Store, tasks *task.Manager, bus *events.Bus, key []byte, box *secret.Box) (*httpapi.Server, error) {
	return httpapi.New(httpapi.Config{
		Store: s, Tasks: tasks, Events: bus, Box: box, Login: imapLogin{},
		Sessions: auth.NewSessions(auth.DeriveKey(key, "session"), sessionTTL),
		Metrics:  metrics.New(s),
		Log:      g.logger,
		Version:  version,
		DataDir:  g.DataDir,
	})
}
