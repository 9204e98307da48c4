package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// ServeCmd runs everything a mailsync instance does.
type ServeCmd struct {
	Addr             string        `name:"addr" env:"MAILSYNC_ADDR" default:"127.0.0.1:8080" help:"Address to listen on."`
	Workers          int           `name:"workers" env:"MAILSYNC_WORKERS" default:"4" help:"How many syncs run at once on this instance."`
	Demo             bool          `name:"demo" env:"MAILSYNC_DEMO" help:"Also run a built-in IMAP server on loopback, filled with a few thousand generated messages, and a demo user and account for it: try mailsync without a mailbox of your own."`
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

	key, box, err := g.serverKey()
	if err != nil {
		return err
	}
	bus, changed, runBridge := g.taskSignals(log)
	tasks.Changed = changed
	var demoInfo *demo
	if c.Demo {
		if demoInfo, err = startDemo(ctx, c.Addr, s, box, log); err != nil {
			return err
		}
		defer demoInfo.Close()
	}
	api, err := g.newAPI(s, tasks, bus, key, box)
	if err != nil {
		return err
	}

	body, err := g.syncBody(s)
	if err != nil {
		return err
	}
	w := worker.New(tasks, body, worker.Config{Concurrency: c.Workers, Logger: log, Changed: changed})
	reaper := &worker.Reaper{Tasks: tasks, Interval: g.Lifecycle.ReapInterval, Logger: log}
	scheduler := &worker.Scheduler{Accounts: s, Tasks: tasks, Interval: c.ScheduleInterval, Logger: log,
		Started: func(task.Task) { w.Wake() }}

	srv := &http.Server{Handler: httpHandler(api), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(api.Shutdown) // event streams end, so Shutdown need not wait for them
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("mailsync listening", "addr", "http://"+ln.Addr().String(), "db", s.Dialect(), "owner", w.Owner())
	if demoInfo != nil {
		demoInfo.announce(g.stdout, "http://"+ln.Addr().String())
	}

	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	wg.Go(func() { reaper.Run(ctx) })
	wg.Go(func() { scheduler.Run(ctx) })
	if runBridge != nil {
		wg.Go(func() { runBridge(ctx) })
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: handing running syncs back to the queue")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	wg.Wait()
	log.Info("stopped")
	return nil
}
