package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"mailsync/internal/store/storetest"
	"mailsync/internal/worker"
)

// TestWatcherSkipsReauthRequired: an OAuth2 account that must sign in again is not watched (its
// watch stops at the next account list), and is watched again once it has signed in again.
func TestWatcherSkipsReauthRequired(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newEnv(t, d)
		a := storetest.SeedOAuthAccount(t, e.store, "zoe", "127.0.0.1", 143, []byte("sealed"), time.Now().Add(time.Hour))
		push := &fakePush{open: map[int64]func(){}}
		w := &worker.Watcher{Accounts: e.store, Watch: push.watch, Tasks: e.tasks,
			Refresh: 50 * time.Millisecond, Retry: 10 * time.Millisecond, MaxRetry: 50 * time.Millisecond, Poll: 10 * time.Millisecond}
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = w.Run(wctx) })
		t.Cleanup(func() { stop(); wg.Wait() })

		waitWatching := func(want bool) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for push.watching(a.ID) != want {
				if time.Now().After(deadline) {
					t.Fatalf("watching = %v after 5 s, want %v", !want, want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		waitWatching(true)
		if ok, err := e.store.MarkReauthRequired(ctx, a.ID, 0, "sign in again"); err != nil || !ok {
			t.Fatal(ok, err)
		}
		waitWatching(false)
		opened := push.opened.Load()
		time.Sleep(200 * time.Millisecond) // four account lists
		if n := push.opened.Load(); n != opened {
			t.Fatalf("%d watches opened for a reauth_required account", n-opened)
		}
		if _, err := e.store.ReplaceOAuthToken(ctx, a.ID, "test", "zoe", []byte("new"), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		waitWatching(true)
	})
}
