package changestest

import (
	"strings"
	"testing"

	"mailsync/internal/changes"
)

// TestReplayRefusesWhatDoesNotApply shows that the replay is strict: a log with a missing, an
// extra or a repeated change does not replay, or replays to a model that differs from the
// truth, so a replay equal to the store proves the log exact.
func TestReplayRefusesWhatDoesNotApply(t *testing.T) {
	created := func(uid uint32, flags ...string) changes.Change {
		return changes.New(changes.MessageCreated, "INBOX", uid, changes.Message{UIDValidity: 7, Flags: flags})
	}
	folder := changes.New(changes.FolderCreated, "INBOX", 0, changes.Folder{UIDValidity: 7})
	truth := Model{"INBOX": {UIDValidity: 7, Messages: map[uint32][]string{1: {`\Seen`}, 2: {}}}}
	for _, tc := range []struct {
		name     string
		log      []changes.Change
		tampered []Tampered
		err      string // part of the replay's error; "" for a log that replays
		matches  bool   // the replay equals truth
	}{
		{name: "exact", matches: true, log: []changes.Change{folder, created(1), created(2),
			changes.New(changes.MessageUpdated, "INBOX", 1, changes.FlagUpdate{OldFlags: []string{}, Flags: []string{`\Seen`}})}},
		{name: "a missing update: replays, differs", log: []changes.Change{folder, created(1), created(2)}},
		{name: "an extra message: replays, differs", log: []changes.Change{folder, created(1, `\Seen`), created(2), created(3)}},
		{name: "a repeated creation", err: "created twice", log: []changes.Change{folder, created(1, `\Seen`), created(2), created(2)}},
		{name: "a folder created twice", err: "folder \"INBOX\" created twice", log: []changes.Change{folder, folder}},
		{name: "an update from flags the model does not have", err: "old flags", log: []changes.Change{folder, created(1), created(2),
			changes.New(changes.MessageUpdated, "INBOX", 1, changes.FlagUpdate{OldFlags: []string{`\Draft`}, Flags: []string{`\Seen`}})}},
		{name: "an update that changes nothing", err: "changes nothing", log: []changes.Change{folder, created(1, `\Seen`), created(2),
			changes.New(changes.MessageUpdated, "INBOX", 2, changes.FlagUpdate{OldFlags: []string{}, Flags: []string{}})}},
		{name: "a deletion of a UID not there", err: "not in the model", log: []changes.Change{folder, created(1, `\Seen`), created(2),
			changes.New(changes.MessageDeleted, "INBOX", 3, changes.MessageGone{})}},
		{name: "a message of another UIDVALIDITY", err: "UIDVALIDITY", log: []changes.Change{folder,
			changes.New(changes.MessageCreated, "INBOX", 1, changes.Message{UIDValidity: 8})}},
		{name: "a reset that drops what the model does not hold", err: "reset", log: []changes.Change{folder, created(1),
			changes.New(changes.FolderReset, "INBOX", 0, changes.Folder{UIDValidity: 8, OldUIDValidity: 7, Dropped: 5})}},
		{name: "a rename from nowhere", err: "renamed from", log: []changes.Change{
			changes.New(changes.FolderRenamed, "INBOX", 0, changes.Folder{UIDValidity: 7, OldName: "Old"})}},
		{name: "rename, reset, delete: exact", matches: true, log: []changes.Change{
			changes.New(changes.FolderCreated, "Old", 0, changes.Folder{UIDValidity: 7}),
			changes.New(changes.MessageCreated, "Old", 9, changes.Message{UIDValidity: 7}),
			changes.New(changes.FolderCreated, "Gone", 0, changes.Folder{UIDValidity: 3}),
			changes.New(changes.FolderDeleted, "Gone", 0, changes.Folder{}),
			changes.New(changes.FolderRenamed, "INBOX", 0, changes.Folder{UIDValidity: 7, OldName: "Old"}),
			changes.New(changes.FolderReset, "INBOX", 0, changes.Folder{UIDValidity: 7, OldUIDValidity: 7, Dropped: 1}),
			created(1, `\Seen`), created(2)}},
		{name: "a lost message downloaded again: excused once", matches: true, tampered: []Tampered{{"INBOX", 2}},
			log: []changes.Change{folder, created(1, `\Seen`), created(2), created(2)}},
		{name: "a lost message downloaded twice: the second is a repeat", err: "created twice", tampered: []Tampered{{"INBOX", 2}},
			log: []changes.Change{folder, created(1, `\Seen`), created(2), created(2), created(2)}},
		{name: "tampered flags written back: the update is checked against the row, not the model", matches: true,
			tampered: []Tampered{{"INBOX", 1}}, log: []changes.Change{folder, created(1, `\Seen`), created(2),
				changes.New(changes.MessageUpdated, "INBOX", 1, changes.FlagUpdate{OldFlags: []string{`\Flagged`}, Flags: []string{`\Seen`}})}},
		{name: "a task that ends twice", err: "ended twice", log: []changes.Change{
			sync("t1", changes.SyncFailed, "failed"), sync("t1", changes.SyncSucceeded, "succeeded")}},
	} {
		for i := range tc.log {
			tc.log[i].Seq = int64(i + 1)
		}
		got, err := Replay(tc.log, tc.tampered...)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: replay error %v, want one saying %q", tc.name, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == "" && (Diff(truth, got) == "") != tc.matches:
			t.Errorf("%s: replay matches the truth: %v, want %v (diff: %s)", tc.name, !tc.matches, tc.matches, Diff(truth, got))
		}
	}

	// A gap in the numbers is refused whatever the changes.
	gap := []changes.Change{folder, created(1)}
	gap[0].Seq, gap[1].Seq = 1, 3
	if _, err := Replay(gap); err == nil || !strings.Contains(err.Error(), "gap") {
		t.Errorf("a log with a gap: %v", err)
	}
}

func sync(task string, kind changes.Kind, state string) changes.Change {
	c := changes.New(kind, "", 0, changes.Sync{TaskID: task, State: state})
	c.TaskID = task
	return c
}
