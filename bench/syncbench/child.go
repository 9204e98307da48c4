package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// childSync is one mailsync sync as its own process: open (and migrate) the database, create
// the benchmark account on first use, then start a task and run it with the real worker and
// syncer, as `mailsync serve` would, and exit when it ends.
func childSync(args []string) int {
	if len(args) != 3 || !strings.HasPrefix(args[0], "sqlite:") {
		fmt.Fprintln(os.Stderr, "usage: child-sync sqlite:PATH HOST PORT")
		return 2
	}
	port, _ := strconv.Atoi(args[2])
	if err := syncOnce(args[0], args[1], port); err != nil {
		fmt.Fprintln(os.Stderr, "mailsync:", err)
		return 1
	}
	return 0
}

func syncOnce(dsn, host string, port int) error {
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	key, err := secret.LoadKey("", filepath.Join(filepath.Dir(strings.TrimPrefix(dsn, "sqlite:")), "secret.key"))
	if err != nil {
		return err
	}
	box, err := secret.New(key)
	if err != nil {
		return err
	}
	acct, err := benchAccount(ctx, st, box, host, port)
	if err != nil {
		return err
	}
	tasks, err := task.NewManager(st, task.DefaultConfig())
	if err != nil {
		return err
	}
	start := time.Now()
	tk, _, err := tasks.Start(ctx, acct.ID, false)
	if err != nil {
		return err
	}
	engine := syncer.New(st, box, syncer.Options{})
	w := worker.New(tasks, engine.Run, worker.Config{Concurrency: 1, PollInterval: time.Millisecond})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(wctx)
	}()
	defer func() {
		stop()
		<-done
	}()
	for {
		time.Sleep(time.Millisecond)
		tk, err = tasks.Get(ctx, tk.ID)
		if err != nil {
			return err
		}
		if tk.State.Active() {
			continue
		}
		if tk.State != task.Succeeded {
			return fmt.Errorf("sync %s: %s", tk.State, tk.Error)
		}
		p := tk.Progress
		// The task's own duration, from Start to its end: what a user waits for. The process
		// still has to close the database, which copies the WAL into the database file.
		fmt.Printf("task %.3f\n", time.Since(start).Seconds())
		fmt.Fprintf(os.Stderr, "%d new, %d updated, %d deleted, %d MB\n", p.New, p.Updated, p.Deleted, p.BytesDone>>20)
		return nil
	}
}

func benchAccount(ctx context.Context, st *store.Store, box *secret.Box, host string, port int) (store.Account, error) {
	accts, err := st.Accounts(ctx, 0)
	if err != nil || len(accts) > 0 {
		if len(accts) > 0 {
			return accts[0], nil
		}
		return store.Account{}, err
	}
	u, err := st.CreateUser(ctx, "bench@example.test", "x", false)
	if err != nil {
		return store.Account{}, err
	}
	return st.CreateAccount(ctx, store.Account{
		UserID: u.ID, Name: "bench", IMAPHost: host, IMAPPort: port, TLSMode: "none", Login: login,
		SecretEnc: box.Seal([]byte(password), secret.AccountContext(login, host)),
	})
}
