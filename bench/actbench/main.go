// Command actbench measures actions on mail end to end: the real instance.Instance (API,
// workers, action starter) runs the real sync engine against a private Dovecot on loopback, and
// a client in this process asks for actions through the HTTP API and polls them until they end.
//
//	go run ./bench/actbench [-db postgres://...] [-messages 10000] [-rounds 3]
//
// After the first sync of a generated mailbox (internal/mailgen, 10,000 messages by default), each
// round measures:
//
//  1. latency: POST /api/messages/{id}/flags (toggle \Seen), then GET /api/actions/{id} every 2 ms
//     until a final state; -latency actions one after the other, each on an idle account (its
//     last task ended); as many back to back (the next posted as soon as the last is done, while
//     its task still runs); and as many from 4 clients at once (several in flight);
//  2. bulk: POST /api/accounts/{id}/messages/flags with 1,000 and 5,000 ids, time to done, and
//     every message's flags read back from Dovecot over a separate IMAP connection;
//  3. throughput: -moves single-message moves INBOX → Archive posted by -clients clients at once,
//     actions per second from the first POST to the last finished_at; then a sync, and the count
//     of Archive bodies downloaded (syncer.Options.Fetched) must not have moved;
//  4. the pending overlay: GET /api/accounts/{id}/messages?limit=50, -reads requests, with 0, 100
//     and 1,000 pending actions on the account (the worker's body is held, so they stay
//     pending; they are cancelled afterwards);
//  5. sends: -sends POST /api/accounts/{id}/send from -clients clients at once, against a go-smtp
//     server in this process (plain text, AUTH PLAIN), each copy appended to Sent on Dovecot:
//     sends per second from the first POST to the last done, checked on both servers.
//
// Needs root: Dovecot's mail processes run as a system user it creates.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // to make and drop the run's own schema

	"mailsync/internal/action"
	"mailsync/internal/auth"
	"mailsync/internal/dovecot"
	"mailsync/internal/httpapi"
	"mailsync/internal/imapconn"
	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/mailgen"
	"mailsync/internal/netpolicy"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

const (
	login    = "bench"
	password = "bench"
)

type config struct {
	db                      string
	messages                int
	seed                    int64
	rounds                  int
	latency, moves, clients int
	reads                   int
	sends                   int
	bulk                    []int
	overlay                 []int
}

func main() {
	var c config
	flag.StringVar(&c.db, "db", "", "database (default: a temporary SQLite file; postgres://... gets a schema of its own)")
	flag.IntVar(&c.messages, "messages", 10000, "messages in the generated mailbox")
	flag.Int64Var(&c.seed, "seed", 1, "corpus seed")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds (each figure is the median over them)")
	flag.IntVar(&c.latency, "latency", 100, "single actions timed one after the other, per round")
	flag.IntVar(&c.moves, "moves", 500, "single-message moves posted at once, per round")
	flag.IntVar(&c.clients, "clients", 8, "clients posting the moves")
	flag.IntVar(&c.reads, "reads", 500, "message-list requests per overlay size")
	flag.IntVar(&c.sends, "sends", 100, "sends posted at once (by -clients clients), per round; 0: none")
	flag.Parse()
	c.bulk = []int{1000, 5000}
	c.overlay = []int{0, 100, 1000}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "actbench:", err)
		os.Exit(1)
	}
}

// bench is one instance on one database, its Dovecot, and the API client of its one user.
type bench struct {
	c       config
	in      *instance.Instance
	dovecot *dovecot.Server
	api     *client
	smtp    *smtpServer
	account int64
	folders map[int64]string // id → name
	// fetched counts the bodies the sync engine downloaded, by folder.
	fetchMu sync.Mutex
	fetched map[string]int
	// applied and ended are when the push had applied each action on the server (before recording
	// it) and when it had recorded its end: they split a push's time per action into take + IMAP
	// and finish.
	marksMu        sync.Mutex
	applied, ended map[int64]time.Time
	// hold, while set, keeps the next task's body from starting until release is closed.
	hold    atomic.Bool
	holdMu  sync.Mutex
	release chan struct{}
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "actbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dsn, cleanup, err := database(c.db, dir)
	if err != nil {
		return err
	}
	defer cleanup()

	if err := os.MkdirAll(filepath.Join(dir, "dovecot"), 0o755); err != nil {
		return err
	}
	d, err := dovecot.Start(filepath.Join(dir, "dovecot"), dovecot.Options{})
	if err != nil {
		return err
	}
	defer d.Close()
	maildir := d.MaildirPath(login)
	stats, err := mailgen.WriteMaildir(maildir, mailgen.Options{Seed: c.seed, Messages: c.messages})
	if err != nil {
		return err
	}
	if err := d.AddUser(login, password); err != nil {
		return err
	}
	if err := d.Own(maildir); err != nil {
		return err
	}

	b := &bench{c: c, dovecot: d, fetched: map[string]int{}, release: make(chan struct{}),
		applied: map[int64]time.Time{}, ended: map[int64]time.Time{}}
	if err := b.start(ctx, dsn, filepath.Join(dir, "data")); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.in.Run(runCtx) }()
	defer func() {
		b.unhold()
		stop()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "instance:", err)
		}
		_ = b.in.Close()
	}()

	start := time.Now()
	if err := b.addAccount(ctx); err != nil {
		return err
	}
	if c.sends > 0 {
		if b.smtp, err = startSMTP(); err != nil {
			return err
		}
		defer b.smtp.Close()
		// The login is tried before the settings are stored.
		if err := b.api.do(ctx, "PUT", fmt.Sprintf("/api/accounts/%d/smtp", b.account),
			map[string]any{"host": "127.0.0.1", "port": b.smtp.port(), "tls_mode": "none", "saves_sent": false}, nil, 200); err != nil {
			return err
		}
	}
	tk, err := b.syncToEnd(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d messages (%d MB, %d folders); first sync %s: %.1f s\n", b.in.Store.Dialect(), stats.Messages,
		stats.Bytes>>20, len(stats.Folders), tk.State, time.Since(start).Seconds())
	if tk.State != task.Succeeded {
		return fmt.Errorf("first sync: %s %s", tk.State, tk.Error)
	}

	res := map[string][]time.Duration{}
	rates := map[string][]float64{}
	var notes []string
	for r := 1; r <= c.rounds; r++ {
		n, err := b.round(ctx, r, res, rates)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		notes = append(notes, n...)
		fmt.Fprintf(os.Stderr, "round %d done\n", r)
	}
	b.print(res, rates, notes)
	return nil
}

// start builds the Instance as serve does, with production timings, the real sync engine
// (loopback allowed, bodies counted) behind a body that can be held.
func (b *bench) start(ctx context.Context, dsn, dataDir string) error {
	s, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	if _, err := s.Migrate(ctx); err != nil {
		_ = s.Close()
		return err
	}
	loopback, err := netpolicy.New([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		_ = s.Close()
		return err
	}
	box, err := secret.New(instancetest.Key())
	if err != nil {
		_ = s.Close()
		return err
	}
	engine := syncer.New(s, box, syncer.Options{Destinations: loopback, Fetched: func(folder string, _ uint32) {
		b.fetchMu.Lock()
		b.fetched[folder]++
		b.fetchMu.Unlock()
	}, Applied: func(a action.Action) { b.mark(b.applied, a.ID) }, ActionEnded: func(a action.Action) { b.mark(b.ended, a.ID) }})
	b.in, err = instance.New(instance.Config{
		Store: s, DSN: dsn, Key: instancetest.Key(), Lifecycle: task.DefaultConfig(), Login: engine,
		Body: func(ctx context.Context, run *worker.Run) error {
			if b.hold.Load() {
				b.holdMu.Lock()
				release := b.release
				b.holdMu.Unlock()
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return engine.Run(ctx, run)
		},
		Workers: 4, Addr: "127.0.0.1:0", NoWebhooks: true, Log: slog.New(slog.DiscardHandler),
		API: httpapi.Config{Version: "bench", DataDir: dataDir, PasswordParams: instancetest.CheapParams},
	})
	if err != nil {
		_ = s.Close()
		return err
	}
	hash, err := auth.HashPassword("x", instancetest.CheapParams)
	if err != nil {
		return err
	}
	u, err := s.CreateUser(ctx, "bench@example.test", hash, true)
	if err != nil {
		return err
	}
	tok, tokHash := auth.NewToken()
	if _, err := s.CreateToken(ctx, u.ID, tokHash, "bench"); err != nil {
		return err
	}
	b.api = newClient(b.in.URL(), tok)
	return nil
}

// setHold makes the next tasks wait before their body runs; unhold lets them (and a waiting one) go.
func (b *bench) setHold() {
	b.holdMu.Lock()
	b.release = make(chan struct{})
	b.holdMu.Unlock()
	b.hold.Store(true)
}

func (b *bench) unhold() {
	if b.hold.Swap(false) {
		b.holdMu.Lock()
		close(b.release)
		b.holdMu.Unlock()
	}
}

func (b *bench) addAccount(ctx context.Context) error {
	var a httpapi.AccountJSON
	if err := b.api.do(ctx, "POST", "/api/accounts", map[string]any{
		"name": "bench", "imap_host": b.dovecot.Host(), "imap_port": b.dovecot.Port(), "tls_mode": "none",
		"login": login, "password": password,
	}, &a, 201); err != nil {
		return err
	}
	b.account = a.ID
	b.folders = map[int64]string{}
	return nil
}

func (b *bench) loadFolders(ctx context.Context) error {
	var folders []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	if err := b.api.do(ctx, "GET", fmt.Sprintf("/api/accounts/%d/folders", b.account), nil, &folders, 200); err != nil {
		return err
	}
	for _, f := range folders {
		b.folders[f.ID] = f.Name
	}
	return nil
}

func (b *bench) folderID(name string) int64 {
	for id, n := range b.folders {
		if n == name {
			return id
		}
	}
	return 0
}

// syncToEnd asks for a sync (Sync now) and waits for its task to end.
func (b *bench) syncToEnd(ctx context.Context) (task.View, error) {
	var r struct {
		Task task.View `json:"task"`
	}
	if err := b.api.do(ctx, "POST", fmt.Sprintf("/api/accounts/%d/sync", b.account), map[string]any{}, &r, 202); err != nil {
		return task.View{}, err
	}
	return b.waitTask(ctx, r.Task.ID)
}

func (b *bench) waitTask(ctx context.Context, id string) (task.View, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var t task.View
		if err := b.api.do(ctx, "GET", "/api/sync/tasks/"+id, nil, &t, 200); err != nil {
			return t, err
		}
		if !t.State.Active() {
			return t, nil
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("task %s still %s", id, t.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idle waits until the account has no live task.
func (b *bench) idle(ctx context.Context) error {
	var t task.View
	err := b.api.do(ctx, "GET", fmt.Sprintf("/api/accounts/%d/sync", b.account), nil, &t, 200)
	if err != nil {
		return err
	}
	if t.State.Active() {
		_, err = b.waitTask(ctx, t.ID)
	}
	return err
}

// messages is every stored message of the account (or of one folder), newest first.
func (b *bench) messages(ctx context.Context, folder int64) ([]httpapi.MessageJSON, error) {
	var all []httpapi.MessageJSON
	cursor := ""
	for {
		q := url.Values{"limit": {"200"}}
		if folder > 0 {
			q.Set("folder", fmt.Sprint(folder))
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Messages   []httpapi.MessageJSON `json:"messages"`
			NextCursor string                `json:"next_cursor"`
		}
		if err := b.api.do(ctx, "GET", fmt.Sprintf("/api/accounts/%d/messages?%s", b.account, q.Encode()), nil, &page, 200); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if page.NextCursor == "" {
			return all, nil
		}
		cursor = page.NextCursor
	}
}

func final(state string) bool {
	switch state {
	case "done", "failed", "conflict", "unknown", "cancelled":
		return true
	}
	return false
}

// waitAction polls the action every 2 ms until it is final.
func (b *bench) waitAction(ctx context.Context, id int64) (httpapi.ActionJSON, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var a httpapi.ActionJSON
		if err := b.api.do(ctx, "GET", fmt.Sprintf("/api/actions/%d", id), nil, &a, 200); err != nil {
			return a, err
		}
		if final(a.State) {
			return a, nil
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("action %d still %s after 5 minutes", id, a.State)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// toggleSeen asks for \Seen to be added to m, or removed when it has it.
func toggleSeen(m httpapi.MessageJSON) map[string]any {
	if slices.Contains(m.Flags, `\Seen`) {
		return map[string]any{"remove": []string{`\Seen`}}
	}
	return map[string]any{"add": []string{`\Seen`}}
}

// timedToggle posts one toggle and waits for it: the latency a user sees.
func (b *bench) timedToggle(ctx context.Context, m httpapi.MessageJSON) (time.Duration, httpapi.ActionJSON, error) {
	start := time.Now()
	var a httpapi.ActionJSON
	if err := b.api.do(ctx, "POST", fmt.Sprintf("/api/messages/%d/flags", m.ID), toggleSeen(m), &a, 202); err != nil {
		return 0, a, err
	}
	a, err := b.waitAction(ctx, a.ID)
	if err == nil && a.State != "done" {
		err = fmt.Errorf("action %d on message %d ended %s: %s", a.ID, m.ID, a.State, a.Error)
	}
	return time.Since(start), a, err
}

// round runs every scenario once; the figures are appended to res (durations) and rates.
func (b *bench) round(ctx context.Context, r int, res map[string][]time.Duration, rates map[string][]float64) ([]string, error) {
	var notes []string
	if err := b.loadFolders(ctx); err != nil {
		return nil, err
	}
	all, err := b.messages(ctx, 0)
	if err != nil {
		return nil, err
	}
	inbox, archive := b.folderID("INBOX"), b.folderID("Archive")
	if inbox == 0 || archive == 0 {
		return nil, fmt.Errorf("the account has no INBOX or Archive: %v", b.folders)
	}
	// Each round takes messages of its own: latency on the oldest, the bulk over everything.
	n := b.c.latency
	lat := all[len(all)-(r*3*n) : len(all)-((r-1)*3*n)]

	// 1. One action at a time, each on an idle account.
	var seq []time.Duration
	for _, m := range lat[:n] {
		if err := b.idle(ctx); err != nil {
			return nil, err
		}
		d, _, err := b.timedToggle(ctx, m)
		if err != nil {
			return nil, err
		}
		seq = append(seq, d)
	}
	addPercentiles(res, "latency, idle account", seq)

	// 1b. One after the other without waiting for the task to end (a user clicking through), and
	// from 4 clients at once: the account's task is live, so a new action joins it.
	for _, v := range []struct {
		name    string
		clients int
		msgs    []httpapi.MessageJSON
	}{{"latency, back to back", 1, lat[n : 2*n]}, {"latency, 4 in flight", 4, lat[2*n:]}} {
		if err := b.idle(ctx); err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var late []string
		ds, err := b.parallel(ctx, v.msgs, v.clients, func(m httpapi.MessageJSON) (time.Duration, error) {
			posted := time.Now()
			d, a, err := b.timedToggle(ctx, m)
			if err == nil && d > time.Second {
				// Which task applied it, and when was that task made?
				var t task.View
				if err := b.api.do(ctx, "GET", "/api/sync/tasks/"+a.TaskID, nil, &t, 200); err == nil && t.CreatedAt != nil {
					mu.Lock()
					made := t.CreatedAt.Sub(posted)
					when := fmtDur(made) + " after"
					if made < 0 {
						when = fmtDur(-made) + " before"
					}
					late = append(late, fmt.Sprintf("%s (applied by a task made %s the POST)", fmtDur(d), when))
					mu.Unlock()
				}
			}
			return d, err
		})
		if err != nil {
			return nil, err
		}
		addPercentiles(res, v.name, ds)
		if len(late) > 0 {
			notes = append(notes, fmt.Sprintf("round %d, %s: %d of %d actions took over 1 s: %s", r, v.name, len(late), len(ds),
				strings.Join(late, "; ")))
		}
	}

	// 2. Bulk flags, checked on the server.
	for _, size := range b.c.bulk {
		if size > len(all) {
			continue
		}
		if err := b.idle(ctx); err != nil {
			return nil, err
		}
		keyword := fmt.Sprintf("$Bench%dr%d", size, r)
		ids := make([]int64, size)
		for i, m := range all[:size] {
			ids[i] = m.ID
		}
		start := time.Now()
		var a httpapi.ActionJSON
		if err := b.api.do(ctx, "POST", fmt.Sprintf("/api/accounts/%d/messages/flags", b.account),
			map[string]any{"messages": ids, "add": []string{keyword}}, &a, 202); err != nil {
			return nil, err
		}
		if a, err = b.waitAction(ctx, a.ID); err != nil {
			return nil, err
		}
		d := time.Since(start)
		if a.State != "done" {
			return nil, fmt.Errorf("bulk flags of %d: %s %s", size, a.State, a.Error)
		}
		missing, err := b.serverMissing(ctx, all[:size], keyword)
		if err != nil {
			return nil, err
		}
		if missing > 0 {
			return nil, fmt.Errorf("bulk flags of %d: done, but %d messages lack %s on the server", size, missing, keyword)
		}
		res[fmt.Sprintf("bulk flags, %d messages (verified on the server)", size)] = append(res[fmt.Sprintf("bulk flags, %d messages (verified on the server)", size)], d)
	}

	// 3. Many single-message moves at once.
	if err := b.idle(ctx); err != nil {
		return nil, err
	}
	inboxMsgs, err := b.messages(ctx, inbox)
	if err != nil {
		return nil, err
	}
	if len(inboxMsgs) < b.c.moves {
		return nil, fmt.Errorf("INBOX holds %d messages, fewer than the %d moves", len(inboxMsgs), b.c.moves)
	}
	toMove := inboxMsgs[:b.c.moves]
	before := b.fetchedIn("Archive")
	first := time.Now()
	var idsMu sync.Mutex
	var moved []int64
	if _, err := b.parallel(ctx, toMove, b.c.clients, func(m httpapi.MessageJSON) (time.Duration, error) {
		var a httpapi.ActionJSON
		if err := b.api.do(ctx, "POST", fmt.Sprintf("/api/messages/%d/move", m.ID), map[string]any{"folder": "Archive"}, &a, 202); err != nil {
			return 0, err
		}
		idsMu.Lock()
		moved = append(moved, a.ID)
		idsMu.Unlock()
		return 0, nil
	}); err != nil {
		return nil, err
	}
	posted := time.Since(first)
	var last time.Time
	for _, id := range moved {
		a, err := b.waitAction(ctx, id)
		if err != nil {
			return nil, err
		}
		if a.State != "done" {
			return nil, fmt.Errorf("move action %d: %s %s", a.ID, a.State, a.Error)
		}
		if a.FinishedAt != nil && a.FinishedAt.After(last) {
			last = *a.FinishedAt
		}
	}
	span := last.Sub(first)
	rates[fmt.Sprintf("%d moves posted by %d clients: actions/s, first POST to last done", b.c.moves, b.c.clients)] = append(
		rates[fmt.Sprintf("%d moves posted by %d clients: actions/s, first POST to last done", b.c.moves, b.c.clients)], float64(len(moved))/span.Seconds())
	res["moves: time to post them all"] = append(res["moves: time to post them all"], posted)
	res["moves: first POST to last done"] = append(res["moves: first POST to last done"], span)
	if apply, finish := b.split(moved); apply > 0 {
		res["moves: per action, take + UID MOVE (median)"] = append(res["moves: per action, take + UID MOVE (median)"], apply)
		res["moves: per action, finish (median)"] = append(res["moves: per action, finish (median)"], finish)
	}
	if err := b.idle(ctx); err != nil {
		return nil, err
	}
	if tk, err := b.syncToEnd(ctx); err != nil || tk.State != task.Succeeded {
		return nil, fmt.Errorf("sync after the moves: %v %s %s", err, tk.State, tk.Error)
	}
	if again := b.fetchedIn("Archive") - before; again != 0 {
		notes = append(notes, fmt.Sprintf("round %d: %d moved messages were downloaded again", r, again))
	} else {
		notes = append(notes, fmt.Sprintf("round %d: %d moves, none downloaded again (Archive bodies fetched: %d before, %d after a sync)",
			r, len(moved), before, b.fetchedIn("Archive")))
	}
	archived, err := b.messages(ctx, archive)
	if err != nil {
		return nil, err
	}
	inArchive := map[int64]bool{}
	for _, m := range archived {
		inArchive[m.ID] = true
	}
	for _, m := range toMove {
		if !inArchive[m.ID] {
			return nil, fmt.Errorf("moved message %d is not in Archive after the sync", m.ID)
		}
	}

	// 4. The pending overlay's cost on reads.
	if all, err = b.messages(ctx, 0); err != nil {
		return nil, err
	}
	for _, open := range b.c.overlay {
		d, err := b.overlay(ctx, all, open)
		if err != nil {
			return nil, err
		}
		addPercentiles(res, fmt.Sprintf("GET messages?limit=50, %d pending actions", open), d)
	}

	// 5. Sends, each submitted to the SMTP server here and its copy appended to Sent on Dovecot.
	if b.c.sends > 0 {
		note, err := b.sendAll(ctx, r, res, rates)
		if err != nil {
			return nil, err
		}
		notes = append(notes, note)
	}
	return notes, nil
}

// sendAll posts -sends sends from -clients clients at once and waits for them all, then checks
// that the SMTP server got each once and that Sent on Dovecot holds one copy more for each.
func (b *bench) sendAll(ctx context.Context, r int, res map[string][]time.Duration, rates map[string][]float64) (string, error) {
	if err := b.idle(ctx); err != nil {
		return "", err
	}
	sentBefore, err := b.serverCount(ctx, "Sent")
	if err != nil {
		return "", err
	}
	received := b.smtp.received.Load()
	items := make([]httpapi.MessageJSON, b.c.sends) // only their count matters
	var mu sync.Mutex
	var ids []int64
	first := time.Now()
	if _, err := b.parallel(ctx, items, b.c.clients, func(httpapi.MessageJSON) (time.Duration, error) {
		var a httpapi.ActionJSON
		if err := b.api.do(ctx, "POST", fmt.Sprintf("/api/accounts/%d/send", b.account), map[string]any{
			"from": "Bench <bench@example.test>", "to": []string{"dora@example.test"},
			"subject": fmt.Sprintf("Bench round %d", r), "text": "A message from the benchmark.\n",
		}, &a, 202); err != nil {
			return 0, err
		}
		mu.Lock()
		ids = append(ids, a.ID)
		mu.Unlock()
		return 0, nil
	}); err != nil {
		return "", err
	}
	var last time.Time
	for _, id := range ids {
		a, err := b.waitAction(ctx, id)
		if err != nil {
			return "", err
		}
		if a.State != "done" {
			return "", fmt.Errorf("send %d: %s %s", a.ID, a.State, a.Error)
		}
		if a.FinishedAt != nil && a.FinishedAt.After(last) {
			last = *a.FinishedAt
		}
	}
	span := last.Sub(first)
	name := fmt.Sprintf("%d sends posted by %d clients: sends/s, first POST to last done", len(ids), b.c.clients)
	rates[name] = append(rates[name], float64(len(ids))/span.Seconds())
	res["sends: first POST to last done"] = append(res["sends: first POST to last done"], span)
	got := b.smtp.received.Load() - received
	sentAfter, err := b.serverCount(ctx, "Sent")
	if err != nil {
		return "", err
	}
	if got != int64(len(ids)) || sentAfter-sentBefore != uint32(len(ids)) {
		return "", fmt.Errorf("%d sends done, but the SMTP server received %d and Sent on Dovecot grew by %d", len(ids), got, sentAfter-sentBefore)
	}
	return fmt.Sprintf("round %d: %d sends, %d received by the SMTP server, Sent on Dovecot %d → %d", r, len(ids), got, sentBefore, sentAfter), nil
}

// serverCount is how many messages folder holds on Dovecot, asked over a connection of its own.
func (b *bench) serverCount(ctx context.Context, folder string) (uint32, error) {
	conn, err := b.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	st, err := conn.Status(ctx, folder)
	return st.Messages, err
}

func (b *bench) dial(ctx context.Context) (*imapconn.Conn, error) {
	return imapconn.Dial(ctx, imapconn.Config{Host: b.dovecot.Host(), Port: b.dovecot.Port(), TLS: imapconn.TLSNone,
		Login: login, Password: password})
}

// overlay measures the message list with open pending actions on the account: the first page's
// 50 messages and then older ones each get a toggle, while the worker's body is held so that none
// is applied. They are cancelled afterwards.
func (b *bench) overlay(ctx context.Context, all []httpapi.MessageJSON, open int) ([]time.Duration, error) {
	if err := b.idle(ctx); err != nil {
		return nil, err
	}
	b.setHold()
	defer b.unhold()
	var mu sync.Mutex
	var ids []int64
	if _, err := b.parallel(ctx, all[:open], b.c.clients, func(m httpapi.MessageJSON) (time.Duration, error) {
		var a httpapi.ActionJSON
		if err := b.api.do(ctx, "POST", fmt.Sprintf("/api/messages/%d/flags", m.ID), toggleSeen(m), &a, 202); err != nil {
			return 0, err
		}
		mu.Lock()
		ids = append(ids, a.ID)
		mu.Unlock()
		return 0, nil
	}); err != nil {
		return nil, err
	}
	path := fmt.Sprintf("/api/accounts/%d/messages?limit=50", b.account)
	var ds []time.Duration
	for i := range b.c.reads {
		start := time.Now()
		var page struct {
			Messages []httpapi.MessageJSON `json:"messages"`
		}
		if err := b.api.do(ctx, "GET", path, nil, &page, 200); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(start))
		if i == 0 && open > 0 {
			if len(page.Messages) == 0 || len(page.Messages[0].Pending) != 1 {
				return nil, fmt.Errorf("with %d pending actions the first listed message shows no pending action: %+v", open, page.Messages[:1])
			}
		}
	}
	for _, id := range ids {
		if err := b.api.do(ctx, "DELETE", fmt.Sprintf("/api/actions/%d", id), nil, nil, 200); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// parallel runs fn over items from n clients at once and returns what each call measured.
func (b *bench) parallel(ctx context.Context, items []httpapi.MessageJSON, n int, fn func(httpapi.MessageJSON) (time.Duration, error)) ([]time.Duration, error) {
	next := make(chan httpapi.MessageJSON)
	var mu sync.Mutex
	var out []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for m := range next {
				d, err := fn(m)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out = append(out, d)
				mu.Unlock()
			}
		})
	}
	for _, m := range items {
		if ctx.Err() != nil {
			break
		}
		next <- m
	}
	close(next)
	wg.Wait()
	return out, firstErr
}

func (b *bench) mark(m map[int64]time.Time, id int64) {
	b.marksMu.Lock()
	m[id] = time.Now()
	b.marksMu.Unlock()
}

// split is the median, over actions applied one after the other (ids ascending, as the push takes
// them), of take + IMAP (the previous action's end to this one's application) and of finish
// (application to recorded end).
func (b *bench) split(ids []int64) (applyMedian, finishMedian time.Duration) {
	b.marksMu.Lock()
	defer b.marksMu.Unlock()
	ids = slices.Clone(ids)
	slices.Sort(ids)
	var apply, finish []time.Duration
	for i, id := range ids {
		a, e := b.applied[id], b.ended[id]
		if a.IsZero() || e.IsZero() {
			continue
		}
		finish = append(finish, e.Sub(a))
		if i > 0 {
			if pe := b.ended[ids[i-1]]; !pe.IsZero() && a.After(pe) && a.Sub(pe) < time.Second {
				apply = append(apply, a.Sub(pe))
			}
		}
	}
	if len(apply) == 0 || len(finish) == 0 {
		return 0, 0
	}
	return median(apply), median(finish)
}

func (b *bench) fetchedIn(folder string) int {
	b.fetchMu.Lock()
	defer b.fetchMu.Unlock()
	return b.fetched[folder]
}

// serverMissing reads the flags of msgs from Dovecot over a connection of its own and counts the
// messages without keyword.
func (b *bench) serverMissing(ctx context.Context, msgs []httpapi.MessageJSON, keyword string) (int, error) {
	conn, err := b.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	byFolder := map[string]map[uint32]bool{}
	for _, m := range msgs {
		f := b.folders[m.FolderID]
		if byFolder[f] == nil {
			byFolder[f] = map[uint32]bool{}
		}
		byFolder[f][m.UID] = false
	}
	missing := 0
	for folder, uids := range byFolder {
		if _, err := conn.Select(ctx, folder, false); err != nil {
			return 0, err
		}
		updates, err := conn.FetchFlags(ctx, imapconn.UIDsFrom(1), 0)
		if err != nil {
			return 0, err
		}
		for _, u := range updates {
			if _, ok := uids[u.UID]; ok && slices.Contains(u.Flags, keyword) {
				uids[u.UID] = true
			}
		}
		for _, ok := range uids {
			if !ok {
				missing++
			}
		}
	}
	return missing, nil
}

func addPercentiles(res map[string][]time.Duration, name string, ds []time.Duration) {
	res[name+": p50"] = append(res[name+": p50"], percentile(ds, 0.50))
	res[name+": p99"] = append(res[name+": p99"], percentile(ds, 0.99))
	res[name+": max"] = append(res[name+": max"], slices.Max(ds))
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// print writes the table: each figure's median over the rounds, then every round's.
func (b *bench) print(res map[string][]time.Duration, rates map[string][]float64, notes []string) {
	fmt.Printf("\n%s, %d rounds (median, then every round)\n\n| figure | median | rounds |\n|---|---:|---|\n", b.in.Store.Dialect(), b.c.rounds)
	names := make([]string, 0, len(res))
	for name := range res {
		names = append(names, name)
	}
	order := []string{"latency, idle", "latency, back", "latency, 4", "bulk flags, 1000", "bulk flags, 5000", "moves", "GET messages?limit=50, 0 ", "GET messages?limit=50, 100 ", "GET messages?limit=50, 1000 ", "sends"}
	rank := func(n string) int {
		for i, p := range order {
			if strings.HasPrefix(n, p) {
				return i
			}
		}
		return len(order)
	}
	slices.SortStableFunc(names, func(x, y string) int {
		if d := rank(x) - rank(y); d != 0 {
			return d
		}
		return strings.Compare(suffixRank(x), suffixRank(y))
	})
	for _, name := range names {
		ds := res[name]
		strs := make([]string, len(ds))
		for i, d := range ds {
			strs[i] = fmtDur(d)
		}
		fmt.Printf("| %s | %s | %s |\n", name, fmtDur(median(ds)), strings.Join(strs, ", "))
	}
	for name, rs := range rates {
		strs := make([]string, len(rs))
		for i, r := range rs {
			strs[i] = fmt.Sprintf("%.0f", r)
		}
		fmt.Printf("| %s | %.0f | %s |\n", name, median(rs), strings.Join(strs, ", "))
	}
	fmt.Println()
	for _, n := range notes {
		fmt.Println(n)
	}
}

// suffixRank orders p50, p99, max within a figure.
func suffixRank(name string) string {
	switch {
	case strings.HasSuffix(name, "p50"):
		return "1"
	case strings.HasSuffix(name, "p99"):
		return "2"
	case strings.HasSuffix(name, "max"):
		return "3"
	}
	return name
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// client is the API's user on keep-alive loopback connections.
type client struct {
	base, token string
	hc          *http.Client
}

func newClient(base, token string) *client {
	return &client{base: base, token: token, hc: &http.Client{Timeout: 5 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, MaxConnsPerHost: 32}}}
}

// do sends body as JSON and decodes the answer into out; any status but want is an error.
func (c *client) do(ctx context.Context, method, path string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// database is the run's database: a SQLite file in dir, or a schema of its own in the
// PostgreSQL database given, dropped at the end.
func database(dsn, dir string) (string, func(), error) {
	if dsn == "" {
		return "sqlite:" + filepath.Join(dir, "bench.db"), func() {}, nil
	}
	if !strings.HasPrefix(dsn, "postgres") {
		return dsn, func() {}, nil
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return "", nil, err
	}
	schema := "actbench_" + strings.ToLower(rand.Text()[:10])
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		db.Close()
		return "", nil, err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		db.Close()
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		_, _ = db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		db.Close()
	}, nil
}
