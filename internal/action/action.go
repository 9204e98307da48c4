// Package action is the vocabulary of actions on mail: what a user asked mailsync to do on an
// account's server (set or clear flags, move, delete, save a draft, send), its states and what an
// attempt at it came to. It is the one home of those names; the store keeps actions, the syncer
// applies them, the API and the CLI create them. docs/actions.md tells the whole story.
//
// An action is stored before it is done and applied by the account's task, which pushes the
// account's open actions to the server, in order, before it pulls. So an action never runs beside
// a sync of its account, and a dead worker's action is taken by the next task.
package action

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailsync/internal/compose"
)

// Kind is what an action does.
type Kind string

const (
	// Flags adds and removes flags of messages, as deltas (+FLAGS/-FLAGS), never as a whole set.
	Flags Kind = "flags"
	// Move moves messages to another folder of their account.
	Move Kind = "move"
	// Delete moves messages to the account's Trash, or expunges them when they are in Trash
	// already or Permanent is set.
	Delete Kind = "delete"
	// Draft saves a composed message in the account's Drafts (with \Draft), replacing an older
	// draft when Replaces names one.
	Draft Kind = "draft"
	// Send submits a composed message over SMTP, then saves a copy in Sent unless the server
	// does that itself.
	Send Kind = "send"
)

// Kinds lists every kind.
var Kinds = []Kind{Flags, Move, Delete, Draft, Send}

// Valid reports whether k is a kind.
func (k Kind) Valid() bool { return slices.Contains(Kinds, k) }

// State is where an action stands. The open states are Pending, Running, Submitting and Sent;
// the others are final.
type State string

const (
	// Pending: stored, waiting for the account's task.
	Pending State = "pending"
	// Running: a task is applying it. A task that finds it so (its first taker died) applies it
	// again, looking first whether the first attempt got through, so nothing is done twice.
	Running State = "running"
	// Submitting: a send's DATA is under way. A task that finds a send so cannot know whether
	// the server took it: the send becomes Unknown.
	Submitting State = "submitting"
	// Sent: the SMTP server accepted the send; the copy for Sent is still to be saved.
	Sent State = "sent"
	// Done: applied.
	Done State = "done"
	// Failed: not applied, and not tried again by itself: Error says why (the message is gone,
	// the folder does not exist, the server refused, too many attempts).
	Failed State = "failed"
	// Conflict: a flag the action changes was changed on the server since mailsync's copy
	// (CONDSTORE UNCHANGEDSINCE said so); that flag was left as the other change made it, and
	// Result.Conflict tells which.
	Conflict State = "conflict"
	// Unknown: a send interrupted between handing the message to the SMTP server and its
	// answer. It may or may not have gone out; it is never sent again by itself. Its owner
	// decides (retry sends it again).
	Unknown State = "unknown"
	// Cancelled: withdrawn by its owner before it was applied.
	Cancelled State = "cancelled"
)

// Open reports whether s is not final: the action is still to be applied, or under way.
func (s State) Open() bool {
	switch s {
	case Pending, Running, Submitting, Sent:
		return true
	}
	return false
}

// Retryable reports whether an owner may ask for a final action to be tried again.
func (s State) Retryable() bool { return s == Failed || s == Unknown || s == Conflict }

// MaxAttempts is how many tasks may take one action before it fails: an action that keeps
// killing its worker, or meets a temporary failure every time, is not retried for ever.
const MaxAttempts = 5

// Request is what was asked, as stored (actions.request) and shown by the API.
type Request struct {
	// Messages are the mailsync message ids acted on (flags, move, delete), in the order given.
	Messages []int64 `json:"messages,omitempty"`
	// Add and Remove are the flag deltas of a Flags action.
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
	// Folder is the destination of a Move.
	Folder string `json:"folder,omitempty"`
	// Permanent: a Delete expunges instead of moving to Trash.
	Permanent bool `json:"permanent,omitempty"`
	// Replaces is the message id of the draft a Draft replaces.
	Replaces int64 `json:"replaces,omitempty"`
	// MessageID, From and Recipients describe the composed message of a Send or Draft (its
	// bytes are stored beside the request). Recipients are bare addresses, Bcc included: the
	// only addresses a send is submitted to.
	MessageID  string   `json:"message_id,omitempty"`
	From       string   `json:"from,omitempty"`
	Recipients []string `json:"recipients,omitempty"`
	Subject    string   `json:"subject,omitempty"`
}

// Result is what the attempts at an action came to, beyond its state.
type Result struct {
	// SMTP is the SMTP server's answer to a send.
	SMTP string `json:"smtp,omitempty"`
	// Applied lists the messages done, and Gone those that no longer existed (already moved,
	// deleted or expunged elsewhere): not an error for a flags, move or delete action.
	Applied []int64 `json:"applied,omitempty"`
	Gone    []int64 `json:"gone,omitempty"`
	// Conflict reports the messages whose flags changed on the server since mailsync's copy.
	Conflict []FlagConflict `json:"conflict,omitempty"`
	// Appended is where a draft or the copy of a send was saved.
	Appended *Appended `json:"appended,omitempty"`
}

// FlagConflict is one message whose flags changed elsewhere while an action waited.
type FlagConflict struct {
	Message int64 `json:"message"`
	// Server is the message's flags on the server when the action was applied; Kept are the
	// flags of the action left as the other change made them.
	Server []string `json:"server"`
	Kept   []string `json:"kept"`
}

// Appended is a message saved by APPEND.
type Appended struct {
	Folder string `json:"folder"`
	UID    uint32 `json:"uid,omitempty"`
}

// Action is one stored action.
type Action struct {
	ID        int64
	AccountID int64
	UserID    int64
	Kind      Kind
	State     State
	Request   Request
	// Raw is the composed message of a Send or Draft.
	Raw           []byte
	Attempts      int
	NextAttemptAt time.Time
	TaskID        string
	Result        Result
	Error         string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	FinishedAt    time.Time
}

// New is an action to store.
type New struct {
	AccountID int64
	UserID    int64
	Kind      Kind
	Request   Request
	Raw       []byte
	// Key is the client's Idempotency-Key ("" for none): the same key of the same user is the same
	// action.
	Key string
	// Fingerprint, when set, stands for the request in the comparison of a reused Key (see
	// Composed); otherwise the request and Raw do.
	Fingerprint []byte
}

// ErrKeyReused is the error for an Idempotency-Key given again with another request.
var ErrKeyReused = errors.New("this Idempotency-Key was used for another request")

// ErrNotOpen is the error for cancelling an action that is under way or over, or retrying one
// that is not final.
var ErrNotOpen = errors.New("the action is not in a state that allows this")

// CheckFlag says why flag cannot be set or cleared by an action, or nil: a system flag of RFC
// 9051 (\Recent is the server's alone) or a keyword made of atom characters.
func CheckFlag(flag string) error {
	switch {
	case flag == "":
		return errors.New("a flag cannot be empty")
	case len(flag) > 200:
		return errors.New("a flag is at most 200 characters")
	}
	body := flag
	if flag[0] == '\\' {
		switch strings.ToLower(flag) {
		case `\seen`, `\answered`, `\flagged`, `\deleted`, `\draft`:
			return nil
		case `\recent`:
			return errors.New(`\Recent is set by the server only`)
		}
		return fmt.Errorf("%q is not a system flag (\\Seen, \\Answered, \\Flagged, \\Deleted, \\Draft); keywords have no backslash", flag)
	}
	for i := range len(body) {
		c := body[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return fmt.Errorf("the flag %q holds %q, which IMAP does not allow in a keyword", flag, c)
		}
	}
	return nil
}

// CheckFolder says why name cannot name a destination folder, or nil.
func CheckFolder(name string) error {
	switch {
	case name == "":
		return errors.New("the folder cannot be empty")
	case len(name) > 1000:
		return errors.New("a folder name is at most 1000 bytes")
	case strings.ContainsAny(name, "\r\n\x00"):
		return errors.New("a folder name cannot hold CR, LF or NUL")
	}
	return nil
}

// Composed is the action that sends (Send) or saves (Draft) the composed message m, asked for
// with the request body fingerprint (what the client sent, to tell a reused Idempotency-Key:
// the composed bytes differ at every compose, by their fresh Message-ID and Date).
func Composed(kind Kind, accountID, userID int64, key string, m compose.Message, subject string, replaces int64, fingerprint []byte) New {
	return New{AccountID: accountID, UserID: userID, Kind: kind, Key: key, Raw: m.Raw, Fingerprint: fingerprint,
		Request: Request{MessageID: m.MessageID, From: m.From, Recipients: m.Recipients, Subject: subject, Replaces: replaces}}
}
