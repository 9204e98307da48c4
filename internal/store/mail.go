package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/task"
)

// Folder is one IMAP folder of an account and its sync checkpoint: the UIDVALIDITY the stored
// UIDs belong to, the UIDNEXT below which every message is stored, and the HIGHESTMODSEQ up to
// which flag changes are applied.
type Folder struct {
	ID            int64
	AccountID     int64
	Name          string // decoded UTF-8, exactly as the server names it
	Delimiter     string
	Attributes    []string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      int
	// MailboxID is the server's RFC 8474 MAILBOXID of the folder, "" when unknown. With
	// UIDVALIDITY it says whether the stored UIDs still name the server's messages.
	MailboxID    string
	LastSyncedAt time.Time
}

// Message is one stored message. Raw holds the exact bytes the server sent.
type Message struct {
	ID           int64
	AccountID    int64
	FolderID     int64
	UID          uint32
	MessageID    string
	Subject      string
	From         string
	To           []string
	Date         time.Time
	InternalDate time.Time
	Flags        []string
	Size         int64
	Snippet      string
	BodyText     string
	Raw          []byte
	ParseError   string
}

// FlagChange is a message's new flag set.
type FlagChange struct {
	UID   uint32
	Flags []string
}

// Batch is one unit of sync work for one folder. It commits whole or not at all, together with
// the folder's checkpoint and a fenced heartbeat: a crash repeats a batch, never skips one.
type Batch struct {
	// Folder is the checkpoint to store (matched by account and name); its ID is ignored.
	Folder Folder
	// Reset drops every stored message of the folder first (UIDVALIDITY changed).
	Reset    bool
	Messages []Message // new messages, upserted by UID
	Flags    []FlagChange
	Deleted  []uint32 // UIDs the server no longer has
}

// CommitBatch writes b in one transaction whose first statement is the fenced heartbeat of l:
// when the lease is lost nothing is written and task.ErrLeaseLost is returned. It returns the folder's
// id.
//
// The same transaction appends the batch's changes to the account's change log (changes.go): a
// change exists if and only if the data it describes was committed, and only for what really
// changed: a message already stored with the same flags (a repeated batch, or a damaged copy
// downloaded again), or a deletion of a UID never stored, says nothing.
func (s *Store) CommitBatch(ctx context.Context, l task.Lease, p task.Progress, b Batch) (folderID int64, err error) {
	err = s.inTx(ctx, func(tx txn) error {
		if _, err := s.heartbeat(ctx, tx, l, p, time.Time{}); err != nil {
			return err
		}
		var log []changes.Change
		before, existed, err := folderBefore(ctx, tx, b.Folder.AccountID, b.Folder.Name)
		if err != nil {
			return err
		}
		if folderID, err = s.upsertFolder(ctx, tx, b.Folder); err != nil {
			return err
		}
		if !existed {
			log = append(log, changes.New(changes.FolderCreated, b.Folder.Name, 0,
				changes.Folder{UIDValidity: b.Folder.UIDValidity}))
		}
		if b.Reset {
			res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE folder_id = $1`, folderID)
			if err != nil {
				return fmt.Errorf("reset folder: %w", err)
			}
			dropped, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("reset folder: %w", err)
			}
			if existed {
				log = append(log, changes.New(changes.FolderReset, b.Folder.Name, 0, changes.Folder{
					UIDValidity: b.Folder.UIDValidity, OldUIDValidity: before.UIDValidity, Dropped: int(dropped)}))
			}
		}
		// A folder just created, or just reset, holds nothing yet: a first sync reads nothing.
		stored := map[uint32]storedMessage{}
		if existed && !b.Reset {
			if stored, err = storedFlags(ctx, tx, folderID, b.Messages, b.Flags); err != nil {
				return err
			}
		}
		if err := s.insertMessages(ctx, tx, b.Folder.AccountID, folderID, b.Messages); err != nil {
			return err
		}
		for _, m := range lastPerUID(b.Messages) {
			old, had := stored[m.UID]
			switch {
			case had && old.messageID != m.MessageID:
				// Another message under a stored UID (force_full found the stored copy is not
				// the server's, and its Message-ID says it is another message, not a damaged
				// copy of the same one): the old one is gone and this one is new.
				log = append(log, changes.New(changes.MessageDeleted, b.Folder.Name, m.UID, changes.MessageGone{MessageID: old.messageID}))
				fallthrough
			case !had:
				log = append(log, changes.New(changes.MessageCreated, b.Folder.Name, m.UID, changes.Message{
					UIDValidity: b.Folder.UIDValidity, MessageID: m.MessageID, Subject: m.Subject, From: m.From,
					Date: m.Date, Flags: flagList(m.Flags), Size: m.Size}))
			case !sameFlags(old.flags, m.Flags):
				log = append(log, changes.New(changes.MessageUpdated, b.Folder.Name, m.UID,
					changes.FlagUpdate{OldFlags: flagList(old.flags), Flags: flagList(m.Flags)}))
			}
			stored[m.UID] = storedMessage{flags: m.Flags, messageID: m.MessageID}
		}
		if err := updateFlags(ctx, tx, folderID, b.Flags); err != nil {
			return err
		}
		for _, c := range lastFlagPerUID(b.Flags) {
			if old, had := stored[c.UID]; had && !sameFlags(old.flags, c.Flags) {
				log = append(log, changes.New(changes.MessageUpdated, b.Folder.Name, c.UID,
					changes.FlagUpdate{OldFlags: flagList(old.flags), Flags: flagList(c.Flags)}))
				old.flags = c.Flags
				stored[c.UID] = old
			}
		}
		gone, err := deleteUIDs(ctx, tx, folderID, b.Deleted)
		if err != nil {
			return err
		}
		for _, g := range gone {
			log = append(log, changes.New(changes.MessageDeleted, b.Folder.Name, g.uid, changes.MessageGone{MessageID: g.messageID}))
		}
		_, err = s.appendChanges(ctx, tx, b.Folder.AccountID, l.TaskID, log)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: commit batch of %q: %w", b.Folder.Name, err)
	}
	return folderID, nil
}

// folderBefore reads the stored checkpoint of a folder as it was before a batch, if it exists.
func folderBefore(ctx context.Context, tx txn, accountID int64, name string) (Folder, bool, error) {
	var (
		f           Folder
		uidvalidity int64
	)
	err := tx.QueryRowContext(ctx, `SELECT id, uidvalidity FROM folders WHERE account_id = $1 AND name = $2`,
		accountID, name).Scan(&f.ID, &uidvalidity)
	if errors.Is(err, sql.ErrNoRows) {
		return Folder{}, false, nil
	}
	if err != nil {
		return Folder{}, false, fmt.Errorf("read folder: %w", err)
	}
	f.UIDValidity = uint32(uidvalidity)
	return f, true, nil
}

// storedMessage is what the change log compares a batch's message with: its stored flags, and
// the Message-ID that tells another message under the same UID.
type storedMessage struct {
	flags     []string
	messageID string
}

// storedFlags reads the stored flags of the UIDs a batch writes (new messages and flag changes)
// before it writes them, with one range read: what the change log compares against. A UID that is
// not stored is absent from the map.
func storedFlags(ctx context.Context, tx txn, folderID int64, msgs []Message, flags []FlagChange) (map[uint32]storedMessage, error) {
	out := map[uint32]storedMessage{}
	if len(msgs) == 0 && len(flags) == 0 {
		return out, nil
	}
	lo, hi := uint32(math.MaxUint32), uint32(0)
	want := make(map[uint32]bool, len(msgs)+len(flags))
	for _, m := range msgs {
		lo, hi, want[m.UID] = min(lo, m.UID), max(hi, m.UID), true
	}
	for _, c := range flags {
		lo, hi, want[c.UID] = min(lo, c.UID), max(hi, c.UID), true
	}
	rows, err := tx.QueryContext(ctx, `SELECT uid, flags, message_id FROM messages WHERE folder_id = $1 AND uid BETWEEN $2 AND $3`,
		folderID, int64(lo), int64(hi))
	if err != nil {
		return nil, fmt.Errorf("read stored flags: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			uid    int64
			joined string
			m      storedMessage
		)
		if err := rows.Scan(&uid, &joined, &m.messageID); err != nil {
			return nil, fmt.Errorf("read stored flags: %w", err)
		}
		if want[uint32(uid)] {
			m.flags = strings.Fields(joined)
			out[uint32(uid)] = m
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stored flags: %w", err)
	}
	return out, nil
}

// sameFlags compares two flag sets, whatever their order.
func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// flagList is flags as a change payload carries them: never null.
func flagList(flags []string) []string {
	if flags == nil {
		return []string{}
	}
	return flags
}

// lastFlagPerUID keeps the last of several changes to one UID, in UID order of first appearance.
func lastFlagPerUID(cs []FlagChange) []FlagChange {
	last := make(map[uint32]int, len(cs))
	for i, c := range cs {
		last[c.UID] = i
	}
	out := make([]FlagChange, 0, len(last))
	for i, c := range cs {
		if last[c.UID] == i {
			out = append(out, c)
		}
	}
	return out
}

func (s *Store) upsertFolder(ctx context.Context, tx txn, f Folder) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `
		INSERT INTO folders (account_id, name, delimiter, attributes, uidvalidity, uidnext, highestmodseq, messages, mailbox_id, last_synced_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {{now}})
		ON CONFLICT (account_id, name) DO UPDATE SET delimiter = excluded.delimiter, attributes = excluded.attributes,
			uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext, highestmodseq = excluded.highestmodseq,
			messages = excluded.messages, mailbox_id = excluded.mailbox_id, last_synced_at = excluded.last_synced_at
		RETURNING id`,
		f.AccountID, f.Name, f.Delimiter, strings.Join(f.Attributes, " "), int64(f.UIDValidity), int64(f.UIDNext),
		int64(f.HighestModSeq), f.Messages, f.MailboxID).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("folder checkpoint: %w", err)
	}
	return id, nil
}

// insertMessages upserts msgs by UID, as many rows per statement as the dialect prefers.
func (s *Store) insertMessages(ctx context.Context, tx txn, accountID, folderID int64, msgs []Message) error {
	msgs = lastPerUID(msgs)
	insertRows := s.dialect.insertRows
	var (
		full *sql.Stmt // the statement for insertRows rows, prepared once per batch
		args = make([]any, 0, insertRows*messageColumns)
	)
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for len(msgs) > 0 {
		chunk := msgs[:min(insertRows, len(msgs))]
		msgs = msgs[len(chunk):]
		args = args[:0]
		for _, m := range chunk {
			args = append(args, accountID, folderID, int64(m.UID), m.MessageID, m.Subject, m.From,
				strings.Join(m.To, "\n"), at(m.Date), at(m.InternalDate), strings.Join(m.Flags, " "),
				m.Size, m.Snippet, m.BodyText, m.Raw[:min(len(m.Raw), rawPiece)], m.ParseError)
		}
		var err error
		if len(chunk) == insertRows {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, insertMessagesSQL(insertRows)); err != nil {
					return fmt.Errorf("prepare message insert: %w", err)
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertMessagesSQL(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("insert messages uid %d to %d: %w", chunk[0].UID, chunk[len(chunk)-1].UID, err)
		}
		for _, m := range chunk {
			if len(m.Raw) > rawPiece {
				if err := writePieces(ctx, tx, folderID, m); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rawPiece is the most of a raw message one statement binds (see migration 00007).
const rawPiece = 1 << 20

// writePieces stores the rest of a large message's bytes, after the first piece that went into
// its row, one piece per statement.
func writePieces(ctx context.Context, tx txn, folderID int64, m Message) error {
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM messages WHERE folder_id = $1 AND uid = $2`,
		folderID, int64(m.UID)).Scan(&id); err != nil {
		return fmt.Errorf("pieces of uid %d: %w", m.UID, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM message_chunks WHERE message_id = $1`, id); err != nil {
		return fmt.Errorf("pieces of uid %d: %w", m.UID, err)
	}
	n := 0
	for off := rawPiece; off < len(m.Raw); off += rawPiece {
		n++
		if _, err := tx.ExecContext(ctx, `INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)`,
			id, n, m.Raw[off:min(off+rawPiece, len(m.Raw))]); err != nil {
			return fmt.Errorf("pieces of uid %d: %w", m.UID, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE messages SET raw_chunks = $1 WHERE id = $2`, n, id); err != nil {
		return fmt.Errorf("pieces of uid %d: %w", m.UID, err)
	}
	return nil
}

// readPieces appends the pieces of a large message to the first one, read with its row.
func (s *Store) readPieces(ctx context.Context, m *Message, pieces int) error {
	rows, err := s.read.QueryContext(ctx, `SELECT data FROM message_chunks WHERE message_id = $1 ORDER BY seq`, m.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	raw := make([]byte, len(m.Raw), len(m.Raw)+pieces*rawPiece)
	copy(raw, m.Raw)
	for rows.Next() {
		var piece []byte
		if err := rows.Scan(&piece); err != nil {
			return err
		}
		raw = append(raw, piece...)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	m.Raw = raw
	return nil
}

const messageColumns = 15

// insertMessagesSQL is the upsert of n messages.
func insertMessagesSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO messages (account_id, folder_id, uid, message_id, subject, from_addr, to_addrs, date,
		internal_date, flags, size, snippet, body_text, raw, parse_error) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range messageColumns {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", i*messageColumns+c+1)
		}
		b.WriteByte(')')
	}
	b.WriteString(`
		ON CONFLICT (folder_id, uid) DO UPDATE SET message_id = excluded.message_id, subject = excluded.subject,
			from_addr = excluded.from_addr, to_addrs = excluded.to_addrs, date = excluded.date,
			internal_date = excluded.internal_date, flags = excluded.flags, size = excluded.size,
			snippet = excluded.snippet, body_text = excluded.body_text, raw = excluded.raw,
			parse_error = excluded.parse_error, raw_chunks = 0`)
	return b.String()
}

// lastPerUID drops all but the last of messages that share a UID: one statement may not upsert
// a row twice (PostgreSQL refuses), and the last word is the newest.
func lastPerUID(msgs []Message) []Message {
	seen := make(map[uint32]bool, len(msgs))
	dup := false
	for _, m := range msgs {
		if seen[m.UID] {
			dup = true
			break
		}
		seen[m.UID] = true
	}
	if !dup {
		return msgs
	}
	clear(seen)
	out := make([]Message, 0, len(msgs))
	for i := len(msgs) - 1; i >= 0; i-- {
		if !seen[msgs[i].UID] {
			seen[msgs[i].UID] = true
			out = append(out, msgs[i])
		}
	}
	slices.Reverse(out)
	return out
}

func updateFlags(ctx context.Context, tx txn, folderID int64, changes []FlagChange) error {
	if len(changes) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE messages SET flags = $1 WHERE folder_id = $2 AND uid = $3`)
	if err != nil {
		return fmt.Errorf("prepare flag update: %w", err)
	}
	defer stmt.Close()
	for _, c := range changes {
		if _, err := stmt.ExecContext(ctx, strings.Join(c.Flags, " "), folderID, int64(c.UID)); err != nil {
			return fmt.Errorf("update flags of uid %d: %w", c.UID, err)
		}
	}
	return nil
}

// goneMessage is a message a batch deleted.
type goneMessage struct {
	uid       uint32
	messageID string
}

// deleteUIDs deletes the stored messages of uids and returns those that were stored.
func deleteUIDs(ctx context.Context, tx txn, folderID int64, uids []uint32) ([]goneMessage, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	stmt, err := tx.PrepareContext(ctx, `DELETE FROM messages WHERE folder_id = $1 AND uid = $2 RETURNING message_id`)
	if err != nil {
		return nil, fmt.Errorf("prepare delete: %w", err)
	}
	defer stmt.Close()
	var gone []goneMessage
	for _, uid := range uids {
		var messageID string
		err := stmt.QueryRowContext(ctx, folderID, int64(uid)).Scan(&messageID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// not stored (deleted twice in one batch, or never fetched): nothing changed
		case err != nil:
			return nil, fmt.Errorf("delete uid %d: %w", uid, err)
		default:
			gone = append(gone, goneMessage{uid: uid, messageID: messageID})
		}
	}
	return gone, nil
}

// DeleteFolder removes a folder the server no longer has, with its messages, fenced like a batch.
// Its change is one folder.deleted; the messages it takes with it are not listed one by one.
func (s *Store) DeleteFolder(ctx context.Context, l task.Lease, p task.Progress, accountID int64, name string) error {
	err := s.inTx(ctx, func(tx txn) error {
		if _, err := s.heartbeat(ctx, tx, l, p, time.Time{}); err != nil {
			return err
		}
		dropped, gone, err := deleteFolder(ctx, tx, accountID, name)
		if err != nil || !gone {
			return err // a folder never stored: nothing changed
		}
		_, err = s.appendChanges(ctx, tx, accountID, l.TaskID,
			[]changes.Change{changes.New(changes.FolderDeleted, name, 0, changes.Folder{Dropped: dropped})})
		return err
	})
	if err != nil {
		return fmt.Errorf("store: delete folder %q: %w", name, err)
	}
	return nil
}

// RenameFolder gives the stored folder from the name to, keeping its id, checkpoint and messages,
// fenced like a batch: the syncer calls it when a folder gone from the server under one name
// appears under another with the same RFC 8474 MAILBOXID and UIDVALIDITY, so that its messages
// are not downloaded again. A folder still stored under to (another folder, which the server no
// longer has under that name) is deleted first, as DeleteFolder would. The changes are that
// folder.deleted, if any, then one folder.renamed (OldName from); the messages are not listed.
// Renaming a folder that is not stored is ErrNotFound, and writes nothing.
func (s *Store) RenameFolder(ctx context.Context, l task.Lease, p task.Progress, accountID int64, from, to string) error {
	err := s.inTx(ctx, func(tx txn) error {
		if _, err := s.heartbeat(ctx, tx, l, p, time.Time{}); err != nil {
			return err
		}
		var log []changes.Change
		src, ok, err := folderBefore(ctx, tx, accountID, from)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("folder %q: %w", from, ErrNotFound)
		}
		if from == to {
			return nil
		}
		if dropped, gone, err := deleteFolder(ctx, tx, accountID, to); err != nil {
			return err
		} else if gone {
			log = append(log, changes.New(changes.FolderDeleted, to, 0, changes.Folder{Dropped: dropped}))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE folders SET name = $3 WHERE account_id = $1 AND name = $2`,
			accountID, from, to); err != nil {
			return fmt.Errorf("rename: %w", err)
		}
		log = append(log, changes.New(changes.FolderRenamed, to, 0, changes.Folder{UIDValidity: src.UIDValidity, OldName: from}))
		_, err = s.appendChanges(ctx, tx, accountID, l.TaskID, log)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: rename folder %q to %q: %w", from, to, err)
	}
	return nil
}

// deleteFolder deletes a stored folder with its messages and says how many messages it held, and
// whether there was such a folder.
func deleteFolder(ctx context.Context, tx txn, accountID int64, name string) (dropped int, gone bool, err error) {
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM messages m JOIN folders f ON f.id = m.folder_id
		WHERE f.account_id = $1 AND f.name = $2`, accountID, name).Scan(&dropped); err != nil {
		return 0, false, fmt.Errorf("count messages: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM folders WHERE account_id = $1 AND name = $2`, accountID, name)
	if err != nil {
		return 0, false, fmt.Errorf("delete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, false, fmt.Errorf("delete: %w", err)
	}
	return dropped, n > 0, nil
}

// Folders lists an account's folders by name.
func (s *Store) Folders(ctx context.Context, accountID int64) ([]Folder, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT id, account_id, name, delimiter, attributes, uidvalidity, uidnext, highestmodseq, messages, mailbox_id, last_synced_at
		FROM folders WHERE account_id = $1 ORDER BY name`, accountID)
	if err != nil {
		return nil, fmt.Errorf("store: folders of account %d: %w", accountID, err)
	}
	defer rows.Close()
	var out []Folder
	for rows.Next() {
		var (
			f                         Folder
			attrs                     string
			uidvalidity, uidnext, hms int64
			synced                    sql.NullInt64
		)
		if err := rows.Scan(&f.ID, &f.AccountID, &f.Name, &f.Delimiter, &attrs, &uidvalidity, &uidnext, &hms, &f.Messages, &f.MailboxID, &synced); err != nil {
			return nil, fmt.Errorf("store: folders of account %d: %w", accountID, err)
		}
		f.Attributes = strings.Fields(attrs)
		f.UIDValidity, f.UIDNext, f.HighestModSeq = uint32(uidvalidity), uint32(uidnext), uint64(hms)
		f.LastSyncedAt = fromNullMillis(synced)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: folders of account %d: %w", accountID, err)
	}
	return out, nil
}

// FolderUIDs returns the UIDs stored for a folder, ascending, with their flags.
func (s *Store) FolderUIDs(ctx context.Context, folderID int64) ([]FlagChange, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT uid, flags FROM messages WHERE folder_id = $1 ORDER BY uid`, folderID)
	if err != nil {
		return nil, fmt.Errorf("store: uids of folder %d: %w", folderID, err)
	}
	defer rows.Close()
	var out []FlagChange
	for rows.Next() {
		var (
			uid   int64
			flags string
		)
		if err := rows.Scan(&uid, &flags); err != nil {
			return nil, fmt.Errorf("store: uids of folder %d: %w", folderID, err)
		}
		out = append(out, FlagChange{UID: uint32(uid), Flags: strings.Fields(flags)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: uids of folder %d: %w", folderID, err)
	}
	return out, nil
}

// StoredSummary is what the store holds of a message short of its body, to check it against
// the server's Summary: Size is the stored RFC822.SIZE, RawSize the length of the stored bytes.
type StoredSummary struct {
	UID          uint32
	Flags        []string
	Size         int64
	RawSize      int64
	InternalDate time.Time
}

// FolderSummaries returns every stored message of a folder short of its body, ascending by UID.
// The raw bytes are measured, not read: both engines keep a value's length in its header (SQLite
// in the record, PostgreSQL in the out-of-line value's pointer). A large message's length is its
// first piece's plus its other pieces' (see writePieces).
func (s *Store) FolderSummaries(ctx context.Context, folderID int64) ([]StoredSummary, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT uid, flags, size,
			CASE WHEN raw_chunks = 0 THEN length(raw) ELSE length(raw) +
				(SELECT COALESCE(SUM(length(data)), 0) FROM message_chunks c WHERE c.message_id = messages.id) END,
			internal_date
		FROM messages WHERE folder_id = $1 ORDER BY uid`, folderID)
	if err != nil {
		return nil, fmt.Errorf("store: summaries of folder %d: %w", folderID, err)
	}
	defer rows.Close()
	var out []StoredSummary
	for rows.Next() {
		var (
			m        StoredSummary
			uid      int64
			flags    string
			internal sql.NullInt64
		)
		if err := rows.Scan(&uid, &flags, &m.Size, &m.RawSize, &internal); err != nil {
			return nil, fmt.Errorf("store: summaries of folder %d: %w", folderID, err)
		}
		m.UID, m.Flags, m.InternalDate = uint32(uid), strings.Fields(flags), fromNullMillis(internal)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: summaries of folder %d: %w", folderID, err)
	}
	return out, nil
}

// Message returns one message with its raw bytes.
func (s *Store) Message(ctx context.Context, id int64) (Message, error) {
	var pieces int
	m, err := scanMessage(s.read.QueryRowContext(ctx, `
		SELECT id, account_id, folder_id, uid, message_id, subject, from_addr, to_addrs, date, internal_date,
			flags, size, snippet, body_text, raw, parse_error, raw_chunks
		FROM messages WHERE id = $1`, id), &pieces)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, fmt.Errorf("store: message %d: %w", id, ErrNotFound)
	}
	if err == nil && pieces > 0 {
		err = s.readPieces(ctx, &m, pieces)
	}
	if err != nil {
		return Message{}, fmt.Errorf("store: message %d: %w", id, err)
	}
	return m, nil
}

// FolderMessages returns every message of a folder with its raw bytes, by UID. It holds the whole
// folder in memory: it is meant for verification (tests, the benchmark) and small folders.
func (s *Store) FolderMessages(ctx context.Context, folderID int64) ([]Message, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT id, account_id, folder_id, uid, message_id, subject, from_addr, to_addrs, date, internal_date,
			flags, size, snippet, body_text, raw, parse_error, raw_chunks
		FROM messages WHERE folder_id = $1 ORDER BY uid`, folderID)
	if err != nil {
		return nil, fmt.Errorf("store: messages of folder %d: %w", folderID, err)
	}
	defer rows.Close()
	var (
		out    []Message
		pieces = map[int]int{} // index in out: pieces to read once the rows are done
	)
	for rows.Next() {
		var n int
		m, err := scanMessage(rows, &n)
		if err != nil {
			return nil, fmt.Errorf("store: messages of folder %d: %w", folderID, err)
		}
		if n > 0 {
			pieces[len(out)] = n
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: messages of folder %d: %w", folderID, err)
	}
	rows.Close()
	for i, n := range pieces {
		if err := s.readPieces(ctx, &out[i], n); err != nil {
			return nil, fmt.Errorf("store: messages of folder %d: %w", folderID, err)
		}
	}
	return out, nil
}

// scanMessage reads a message row; extra receives the columns selected after parse_error.
func scanMessage(row rowScanner, extra ...any) (Message, error) {
	var (
		m                  Message
		uid                int64
		to, flags          string
		date, internalDate sql.NullInt64
	)
	dest := []any{&m.ID, &m.AccountID, &m.FolderID, &uid, &m.MessageID, &m.Subject, &m.From, &to, &date,
		&internalDate, &flags, &m.Size, &m.Snippet, &m.BodyText, &m.Raw, &m.ParseError}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return Message{}, err
	}
	m.UID = uint32(uid)
	if to != "" {
		m.To = strings.Split(to, "\n")
	}
	m.Flags = strings.Fields(flags)
	m.Date, m.InternalDate = fromNullMillis(date), fromNullMillis(internalDate)
	return m, nil
}
