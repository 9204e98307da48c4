package syncer

import (
	"context"
	"runtime"
	"sync"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/mailparse"
	"mailsync/internal/store"
)

// pending is one fetched message on its way to the store. done is closed once row is parsed.
type pending struct {
	msg  imapconn.Message
	row  store.Message
	done chan struct{}
}

// fetchNew downloads the bodies of set into the store and returns how many it stored. Three
// stages overlap, because the database is the slowest and must never wait for the network:
//
//	the fetch goroutine streams bodies from the server, in UID order;
//	ParseWorkers goroutines parse them (the raw bytes are shared, never copied);
//	this goroutine commits them in arrival order, taking whatever is ready, up to one batch.
//
// A window bounds everything fetched but not yet committed to one batch's count and bytes: memory
// stays bounded, and a crash loses at most one batch of downloads. Each commit advances the
// checkpoint to just past the highest UID it stored, so the next sync resumes from there.
//
// When the connection breaks, what already arrived is committed before the error is returned.
// It returns how many messages it stored and the highest UID among them.
func (a *accountSync) fetchNew(ctx context.Context, folder string, set imapconn.UIDSet, cur *cursor) (stored int, last uint32, err error) {
	opts := a.s.opts
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	win := newWindow(opts.BatchMessages, opts.BatchBytes)
	// Both channels hold at most what the window admits, so sends never block.
	queue := make(chan *pending, opts.BatchMessages+1)
	jobs := make(chan *pending, opts.BatchMessages+1)
	var parsers sync.WaitGroup
	for range opts.ParseWorkers {
		parsers.Go(func() {
			for p := range jobs {
				p.row = toRow(p.msg)
				close(p.done)
			}
		})
	}
	fetchErr := make(chan error, 1)
	go func() {
		// The window admits each body by its announced size before a byte of it is read, so a
		// large message waits for the ones before it to be committed instead of joining them
		// in memory: one message above the window's bytes is in flight alone.
		admitted := false
		admit := func(size int64) error {
			if err := win.acquire(ctx, size); err != nil {
				return err
			}
			admitted = true
			return nil
		}
		err := a.conn.FetchBodiesAdmitting(ctx, set, admit, func(m imapconn.Message) error {
			if opts.Fetched != nil {
				opts.Fetched(folder, m.UID)
			}
			if !admitted { // a NIL body: nothing was announced
				if err := win.acquire(ctx, int64(len(m.Raw))); err != nil {
					return err
				}
			}
			admitted = false
			p := &pending{msg: m, done: make(chan struct{})}
			jobs <- p
			queue <- p
			return nil
		})
		close(jobs)
		close(queue)
		fetchErr <- err
	}()
	defer parsers.Wait()

	batch := make([]*pending, 0, opts.BatchMessages)
	for open := true; open; {
		batch = batch[:0]
		p, ok := <-queue
		if !ok {
			break
		}
		batch = append(batch, p)
		size := int64(len(p.msg.Raw))
	take:
		for len(batch) < opts.BatchMessages && size < opts.BatchBytes {
			select {
			case p, ok := <-queue:
				if !ok {
					open = false
					break take
				}
				batch = append(batch, p)
				size += int64(len(p.msg.Raw))
			default:
				break take
			}
		}
		if err := a.commitNew(ctx, batch, size, cur); err != nil {
			cancel(err)
			_ = <-fetchErr // the fetch stops because of cancel(err): err is the cause to report
			return stored, last, err
		}
		stored += len(batch)
		for _, p := range batch {
			last = max(last, p.msg.UID)
		}
		win.release(len(batch), size)
		clear(batch) // the backing array would keep the bodies reachable until overwritten
		if size > opts.BatchBytes {
			// A message larger than the window, alone in its batch, is garbage now. Collect it
			// before the next one arrives, or the heap would grow to hold both (the collector's
			// target is twice the live heap): peak memory stays one large message, not two.
			runtime.GC()
		}
	}
	if err := <-fetchErr; err != nil {
		return stored, last, a.fail(ctx, folder, err)
	}
	return stored, last, nil
}

// commitNew stores one batch of new messages with the advanced checkpoint.
func (a *accountSync) commitNew(ctx context.Context, batch []*pending, size int64, cur *cursor) error {
	b := store.Batch{Reset: cur.reset, Messages: make([]store.Message, len(batch))}
	next := cur.folder.UIDNext
	for i, p := range batch {
		<-p.done
		b.Messages[i] = p.row
		next = max(next, p.msg.UID+1)
	}
	b.Folder = cur.folder
	b.Folder.UIDNext = next
	p := a.p
	p.New += len(batch)
	p.MessagesDone += len(batch)
	p.MessagesTotal = max(p.MessagesTotal, p.MessagesDone)
	p.BytesDone += size
	began := time.Now()
	if _, err := a.s.store.CommitBatch(ctx, a.run.Lease(), p, b); err != nil {
		return a.storeFailed(ctx, err)
	}
	a.p = p
	cur.folder.UIDNext, cur.reset = next, false
	a.run.Report(a.p)
	a.run.Beat(began)
	return nil
}

// toRow parses one message. A parse failure is recorded on the row, never returned.
func toRow(m imapconn.Message) store.Message {
	parsed, err := mailparse.Parse(m.Raw)
	row := store.Message{
		UID:          m.UID,
		MessageID:    parsed.MessageID,
		Subject:      parsed.Subject,
		From:         parsed.From,
		To:           parsed.To,
		Date:         parsed.Date,
		InternalDate: m.InternalDate,
		Flags:        m.Flags,
		Size:         m.Size,
		Snippet:      parsed.Snippet,
		BodyText:     parsed.BodyText,
		Raw:          m.Raw,
	}
	if row.Size == 0 {
		row.Size = int64(len(m.Raw))
	}
	if err != nil {
		row.ParseError = err.Error()
	}
	return row
}

// window bounds the messages and bytes in flight between the fetch and the commit. One message
// bigger than the whole byte budget is let through alone.
type window struct {
	maxN     int
	maxBytes int64

	mu    sync.Mutex
	n     int
	bytes int64
	freed chan struct{} // signalled on release; one waiter (the fetch goroutine)
}

func newWindow(maxN int, maxBytes int64) *window {
	return &window{maxN: maxN, maxBytes: maxBytes, freed: make(chan struct{}, 1)}
}

func (w *window) acquire(ctx context.Context, size int64) error {
	for {
		w.mu.Lock()
		if w.n == 0 || (w.n < w.maxN && w.bytes+size <= w.maxBytes) {
			w.n++
			w.bytes += size
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-w.freed:
		}
	}
}

func (w *window) release(n int, size int64) {
	w.mu.Lock()
	w.n -= n
	w.bytes -= size
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
}
