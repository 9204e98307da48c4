package imapconn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/imaptest/hostile"
)

// hostileConfig is how the tests reach a hostile server, with limits small enough to trip fast.
func hostileConfig(s *hostile.Server, limits imapconn.Limits) imapconn.Config {
	cfg := config(s, imaptest.User{Login: s.Login, Password: s.Password})
	cfg.Limits = limits
	return cfg
}

func small(i int) hostile.Message {
	return hostile.Message{UID: uint32(i), Raw: []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))}
}

// wantLimitRefusal fails unless err is a permanent *Error wrapping a *LimitError that says
// fragment, returned within limit of start.
func wantLimitRefusal(t *testing.T, err error, start time.Time, within time.Duration, fragment string) {
	t.Helper()
	t.Logf("err after %s: %v", time.Since(start).Round(time.Millisecond), err)
	var le *imapconn.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a *LimitError", err)
	}
	if !errors.Is(err, imapconn.ErrPermanent) {
		t.Errorf("class %q, want permanent: the same server will do it again", imapconn.Classify(err))
	}
	if !strings.Contains(err.Error(), fragment) {
		t.Errorf("error %q does not say %q", err, fragment)
	}
	if d := time.Since(start); d > within {
		t.Errorf("refused after %s, want within %s", d, within)
	}
}

// TestHugeAnnouncedBodyIsNotRead serves a body literal announced at 64 GB: FetchBodies hands
// over the messages before it, then refuses that one by its UID without reading or allocating it.
func TestHugeAnnouncedBodyIsNotRead(t *testing.T) {
	t.Parallel()
	s := hostile.Start(t, hostile.Folder{Name: "INBOX", UIDValidity: 1, Messages: []hostile.Message{
		small(1), {UID: 2, Size: 1000, Announce: 64 << 30}, small(3),
	}})
	c := dial(t, hostileConfig(s, imapconn.Limits{}))
	defer c.Close()
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	var got []uint32
	start := time.Now()
	err := c.FetchBodies(context.Background(), imapconn.UIDsFrom(1), func(m imapconn.Message) error {
		got = append(got, m.UID)
		return nil
	})
	t.Logf("err after %s: %v", time.Since(start).Round(time.Millisecond), err)
	var big *imapconn.TooLargeError
	if !errors.As(err, &big) || big.UID != 2 || big.Size != 64<<30 || big.Limit != imapconn.DefaultMaxMessageSize {
		t.Fatalf("err = %v, want a *TooLargeError for UID 2 of 64 GiB over the default limit", err)
	}
	if !strings.Contains(err.Error(), "message UID 2 is 64 GiB, above the maximum message size of 100.0 MiB") {
		t.Errorf("error %q does not name the message, its size and the limit", err)
	}
	if len(got) != 1 || got[0] != 1 {
		t.Errorf("messages handed over: %v, want [1]", got)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s: the body was read", time.Since(start))
	}
}

// TestMessageAboveTheLimitIsRefused is the honest case: a message really larger than a small
// configured limit is refused the same way, and one at the limit is read whole.
func TestMessageAboveTheLimitIsRefused(t *testing.T) {
	t.Parallel()
	s := hostile.Start(t, hostile.Folder{Name: "INBOX", UIDValidity: 1, Messages: []hostile.Message{
		{UID: 1, Size: 64 << 10}, {UID: 2, Size: 64<<10 + 1},
	}})
	c := dial(t, hostileConfig(s, imapconn.Limits{MaxMessageSize: 64 << 10}))
	defer c.Close()
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	err := c.FetchBodies(context.Background(), imapconn.UIDsFrom(1), func(m imapconn.Message) error {
		sizes = append(sizes, len(m.Raw))
		return nil
	})
	var big *imapconn.TooLargeError
	if !errors.As(err, &big) || big.UID != 2 {
		t.Fatalf("err = %v, want a *TooLargeError for UID 2", err)
	}
	if len(sizes) != 1 || sizes[0] != 64<<10 {
		t.Errorf("bodies read: %v, want one of %d bytes", sizes, 64<<10)
	}
}

// TestHostileListAnswers plays the LIST answers that exhausted memory or time: each is refused
// with a permanent error naming the limit, promptly.
func TestHostileListAnswers(t *testing.T) {
	t.Parallel()
	filler := []byte(strings.Repeat("a", 4096))
	tests := []struct {
		name     string
		limits   imapconn.Limits
		list     hostile.Handler
		within   time.Duration
		fragment string
		timeout  bool // a transient timeout rather than a *LimitError
	}{
		{
			name: "folder name as an endless literal",
			list: func(s *hostile.Session, _ string) string {
				s.Printf("* LIST () \"/\" {99999999999}\r\n")
				s.Endless(filler, 0)
				return ""
			},
			within: 5 * time.Second, fragment: "a literal of 93.1 GiB in a LIST or STATUS response, more than the maximum response size of 16.0 MiB",
		},
		{
			name:   "folder name as a literal just over the limit",
			limits: imapconn.Limits{MaxResponseSize: 1 << 20},
			list: func(s *hostile.Session, _ string) string {
				s.Printf("* LIST () \"/\" {%d}\r\n", 1<<20)
				s.Endless(filler, 0)
				return ""
			},
			within: 5 * time.Second, fragment: "more than the maximum response size of 1.0 MiB",
		},
		{
			name:   "an endless line",
			limits: imapconn.Limits{MaxResponseSize: 1 << 20},
			list: func(s *hostile.Session, _ string) string {
				s.Printf("* LIST () \"/\" \"")
				s.Endless(filler, 0)
				return ""
			},
			within: 10 * time.Second, fragment: "sent a line, more than the maximum response size of 1.0 MiB",
		},
		{
			name:   "an endless stream of folders",
			limits: imapconn.Limits{MaxFolders: 500}, // the default's 10,000: the syncer's test
			list: func(s *hostile.Session, _ string) string {
				for i := 0; s.Printf("* LIST () \"/\" \"folder %d\"\r\n", i); i++ {
				}
				return ""
			},
			within: 10 * time.Second, fragment: "listed more than 500 folders",
		},
		{
			name:   "a slow stream that never ends",
			limits: imapconn.Limits{CommandDeadline: 500 * time.Millisecond},
			list: func(s *hostile.Session, _ string) string {
				for i := 0; s.Printf("* LIST () \"/\" \"folder %d\"\r\n", i) && s.Flush(); i++ {
					time.Sleep(10 * time.Millisecond)
				}
				return ""
			},
			within: 3 * time.Second, fragment: "did not finish within 500ms", timeout: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := hostile.Start(t, hostile.Folder{Name: "INBOX", UIDValidity: 1})
			s.Handle("LIST", tt.list)
			c := dial(t, hostileConfig(s, tt.limits))
			defer c.Close()
			start := time.Now()
			_, err := c.ListFolders(context.Background())
			if !tt.timeout {
				wantLimitRefusal(t, err, start, tt.within, tt.fragment)
				return
			}
			t.Logf("err after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if !errors.Is(err, imapconn.ErrTransient) || !strings.Contains(err.Error(), tt.fragment) {
				t.Errorf("err = %v, want a transient timeout saying %q", err, tt.fragment)
			}
			if d := time.Since(start); d > tt.within {
				t.Errorf("ended after %s, want within %s", d, tt.within)
			}
		})
	}
}

// TestEndlessFetchAnswersTimeOut answers a FLAGS fetch of three messages with an endless
// repetition of one of them: repeats are no progress, so the command ends at the no-progress
// timeout instead of running for ever.
func TestEndlessFetchAnswersTimeOut(t *testing.T) {
	t.Parallel()
	s := hostile.Start(t, hostile.Folder{Name: "INBOX", UIDValidity: 1, Messages: []hostile.Message{small(1), small(2), small(3)}})
	s.Handle("UID FETCH", func(s *hostile.Session, _ string) string {
		for s.Printf("* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n") {
		}
		return ""
	})
	cfg := hostileConfig(s, imapconn.Limits{})
	cfg.CommandTimeout = 500 * time.Millisecond
	c := dial(t, cfg)
	defer c.Close()
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.FetchFlags(context.Background(), imapconn.UIDSet{{Start: 1, Stop: 3}}, 0)
	t.Logf("err after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, imapconn.ErrTransient) || !strings.Contains(err.Error(), "no progress within 500ms") {
		t.Errorf("err = %v, want the no-progress timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ended after %s, want about 500ms", d)
	}
}

// TestUndecodableFolderNames lists names that are not valid modified UTF-7, in every form a
// name can take on the wire: the listing succeeds, each such folder comes back under its raw
// characters and marked, and the valid ones are untouched.
func TestUndecodableFolderNames(t *testing.T) {
	t.Parallel()
	s := hostile.Start(t, hostile.Folder{Name: "INBOX", UIDValidity: 1}, hostile.Folder{Name: "Donn&AOk-es", UIDValidity: 2},
		hostile.Folder{Name: "R&D", UIDValidity: 3})
	s.Handle("LIST", func(s *hostile.Session, _ string) string {
		s.Printf("* LIST () \"/\" INBOX\r\n")
		s.Printf("* LIST () \"/\" \"Donn&AOk-es\"\r\n")
		s.Printf("* LIST () \"/\" R&D\r\n")                                    // an atom
		s.Printf("* LIST (\\HasNoChildren) \"/\" \"Tom & \\\"Jerry\\\"\"\r\n") // quoted, with escapes
		s.Printf("* LIST () \"/\" {6}\r\nQ&A\xffet\r\n")                       // a literal, not even UTF-8
		s.Printf("* LIST () NIL \"&AGE-\"\r\n")                                // ASCII hidden in base64
		return "OK"
	})
	c := dial(t, hostileConfig(s, imapconn.Limits{}))
	defer c.Close()
	folders, err := c.ListFolders(context.Background())
	if err != nil {
		t.Fatalf("ListFolders: %v", err)
	}
	got := map[string]bool{}
	for _, f := range folders {
		got[f.Name] = f.Undecodable
	}
	want := map[string]bool{"INBOX": false, "Données": false, "R&D": true, `Tom & "Jerry"`: true, "Q&A\uFFFDet": true, "&AGE-": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("folders (name: undecodable) = %v, want %v", got, want)
	}
	// The connection is still good, and a valid name still works.
	if _, err := c.Select(context.Background(), "Données", false); err != nil {
		t.Errorf("Select after the listing: %v", err)
	}
}

// TestUnparseableResponseIsPermanent sends a LIST answer go-imap cannot parse: the error is
// permanent (it would repeat on every connection) and says what happened.
func TestUnparseableResponseIsPermanent(t *testing.T) {
	t.Parallel()
	s := hostile.Start(t, hostile.Folder{Name: "INBOX", UIDValidity: 1})
	s.Handle("LIST", func(s *hostile.Session, _ string) string {
		s.Printf("* LIST garbage\r\n")
		return "OK"
	})
	c := dial(t, hostileConfig(s, imapconn.Limits{}))
	defer c.Close()
	_, err := c.ListFolders(context.Background())
	t.Logf("err: %v", err)
	if !errors.Is(err, imapconn.ErrPermanent) || !imapconn.IsProtocol(err) {
		t.Fatalf("err = %v (class %q), want a permanent protocol error", err, imapconn.Classify(err))
	}
	if !strings.Contains(err.Error(), "cannot parse") {
		t.Errorf("error %q does not say the answer could not be parsed", err)
	}
}
