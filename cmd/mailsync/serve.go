package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"mailsync/internal/task"
	"mailsync/internal/web"
	"mailsync/internal/worker"
)

// ServeCmd runs everything a mailsync instance does.
type ServeCmd struct {
	Addr             string        `name:"addr" env:"MAILSYNC_ADDR" default:"127.0.0.1:8080" help:"Address to listen on."`
	Workers          int           `name:"workers" env:"MAILSYNC_WORKERS" default:"4" help:"How many syncs run at once on this instance."`
	ScheduleInterval time.Duration `name:"schedule-interval" env:"MAILSYNC_SCHEDULE_INTERVAL" default:"30s" help:"How often to look for accounts whose scheduled sync is due."`
}

func (c *ServeCmd) Run(ctx context.Context, g *Globals) error {
	log := g.logger
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	tasks, err := g.taskManager(s)
	if err != nil {
		return err
	}

	body, err := g.syncBody(s)
	if err != nil {
		return err
	}
	w := worker.New(tasks, body, worker.Config{Concurrency: c.Workers, Logger: log})
	reaper := &worker.Reaper{Tasks: tasks, Interval: g.Lifecycle.ReapInterval, Logger: log}
	scheduler := &worker.Scheduler{Accounts: s, Tasks: tasks, Interval: c.ScheduleInterval, Logger: log,
		Started: func(task.Task) { w.Wake() }}

	var shuttingDown atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if shuttingDown.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if err := s.Ping(r.Context()); err != nil {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", web.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("mailsync listening", "addr", "http://"+ln.Addr().String(), "db", s.Dialect(), "owner", w.Owner())

	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	wg.Go(func() { reaper.Run(ctx) })
	wg.Go(func() { scheduler.Run(ctx) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: handing running syncs back to the queue")
	shuttingDown.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	wg.Wait()
	log.Info("stopped")
	return nil
}
