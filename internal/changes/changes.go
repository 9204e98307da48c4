// Package changes is the vocabulary of mailsync's change feed: what an application is told when
// the copy of a mailbox changes. Every change is written by the store in the same transaction as
// the data it describes, fenced by the same task epoch, so a change is visible if and only if its
// data is (docs/changes.md).
//
// Changes are numbered per account: Seq is gapless and in commit order within an account (the
// store assigns it under the account's change-head row lock, which a second writer of the same
// account waits for until the first commits). There is no order between accounts.
package changes

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Kind names what happened. The set is closed: a consumer may switch on it exhaustively.
type Kind string

const (
	// MessageCreated: a message was stored (Message holds its summary).
	MessageCreated Kind = "message.created"
	// MessageUpdated: a stored message's flags changed (OldFlags → Flags).
	MessageUpdated Kind = "message.updated"
	// MessageDeleted: a stored message is gone from its folder (expunged or moved elsewhere).
	MessageDeleted Kind = "message.deleted"
	// FolderCreated: a folder appeared.
	FolderCreated Kind = "folder.created"
	// FolderRenamed: a folder is now called Folder (it was OldName); its messages are unchanged.
	FolderRenamed Kind = "folder.renamed"
	// FolderDeleted: a folder and every message in it are gone. No message.deleted follows for them.
	FolderDeleted Kind = "folder.deleted"
	// FolderReset: the folder's UIDVALIDITY changed, so every message stored for it was dropped;
	// message.created changes for the new UIDs follow. No message.deleted precedes it.
	FolderReset Kind = "folder.reset"
	// SyncSucceeded and SyncFailed: a sync task of the account ended (Sync holds its counts),
	// succeeded, or failed or cancelled (Sync.State says which). Every task that ends writes
	// exactly one, whoever ended it.
	SyncSucceeded Kind = "sync.succeeded"
	SyncFailed    Kind = "sync.failed"
)

// Kinds lists every kind, in the order the documentation gives them.
var Kinds = []Kind{MessageCreated, MessageUpdated, MessageDeleted, FolderCreated, FolderRenamed,
	FolderDeleted, FolderReset, SyncSucceeded, SyncFailed}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, known := range Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// ErrGone is returned for a cursor older than what the change log still holds: the changes after
// it were pruned, so the reader must re-read the folders and continue from the current head.
var ErrGone = errors.New("the changes after this cursor are no longer kept")

// Change is one entry of an account's change log.
type Change struct {
	AccountID int64
	// Seq is the change's number in its account's log: 1, 2, 3, ... without gaps, in commit order.
	Seq  int64
	Kind Kind
	// Folder is the folder the change is about ("" for sync.*).
	Folder string
	// UID is the message's UID in Folder for message.*, else 0.
	UID uint32
	// TaskID is the sync task whose transaction wrote the change, "" when none did.
	TaskID string
	// At is the database clock when the change was committed.
	At time.Time
	// Data is the kind's payload (one of the payload types below), as stored.
	Data json.RawMessage
}

// Message is the payload of message.created.
type Message struct {
	UIDValidity uint32    `json:"uidvalidity"`
	MessageID   string    `json:"message_id,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	From        string    `json:"from,omitempty"`
	Date        time.Time `json:"date,omitzero"`
	Flags       []string  `json:"flags"`
	Size        int64     `json:"size"`
}

// FlagUpdate is the payload of message.updated.
type FlagUpdate struct {
	OldFlags []string `json:"old_flags"`
	Flags    []string `json:"flags"`
}

// MessageGone is the payload of message.deleted.
type MessageGone struct {
	MessageID string `json:"message_id,omitempty"`
}

// Folder is the payload of folder.created, folder.renamed (OldName set) and folder.reset
// (OldUIDValidity set).
type Folder struct {
	UIDValidity    uint32 `json:"uidvalidity,omitempty"`
	OldName        string `json:"old_name,omitempty"`
	OldUIDValidity uint32 `json:"old_uidvalidity,omitempty"`
	// Dropped is how many stored messages a folder.deleted or folder.reset removed.
	Dropped int `json:"dropped,omitempty"`
}

// Sync is the payload of sync.succeeded and sync.failed. Every sync task that ends writes exactly
// one of them, in the transaction that ends it: sync.succeeded for a succeeded task, sync.failed
// for a failed or a cancelled one (State tells which), whoever ended it (its worker, a reaper, a
// Start that replaced a dead task, a cancel of a queued task).
type Sync struct {
	TaskID string `json:"task_id"`
	// State is the task's final state: succeeded, failed or cancelled.
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	New     int64  `json:"new_messages"`
	Updated int64  `json:"updated_messages"`
	Deleted int64  `json:"deleted_messages"`
	Error   string `json:"error,omitempty"`
}

// ID is the idempotency id of an account's change number seq, "<account>:<seq>": the same for a
// change in the API, the stream and every webhook delivery.
func ID(accountID, seq int64) string {
	return strconv.FormatInt(accountID, 10) + ":" + strconv.FormatInt(seq, 10)
}

// New builds a change of kind k about folder/uid with payload data, ready for the store to
// number. It panics if data cannot be encoded: every payload is one of this package's types.
func New(k Kind, folder string, uid uint32, data any) Change {
	raw, err := json.Marshal(data)
	if err != nil {
		panic("changes: encode " + string(k) + ": " + err.Error())
	}
	return Change{Kind: k, Folder: folder, UID: uid, Data: raw}
}
