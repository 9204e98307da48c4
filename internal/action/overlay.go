package action

import "slices"

// Ref names an open action acting on a message.
type Ref struct {
	ID    int64
	Kind  Kind
	State State
}

// Effect is what the open actions of an account will make of one message: reads show the message
// as the actions will leave it (the pending overlay), so that a change asked for does not flicker
// back while it waits, and a sync pulling meanwhile never seems to revert it.
type Effect struct {
	// Actions are the open actions on the message, in the order they apply.
	Actions []Ref
	// ops are the flag deltas in order; a later one wins over an earlier one for the same flag.
	ops []flagOp
	// Folder is the folder a move leaves the message in ("" when none moves it).
	Folder string
	// Deleted: a delete will take it out of its folder (to Trash or for good).
	Deleted bool
}

type flagOp struct {
	flag string
	add  bool
}

// Overlay indexes the open actions of an account by message id. open must be in id order (the
// order they apply in).
func Overlay(open []Action) map[int64]*Effect {
	effects := map[int64]*Effect{}
	for _, a := range open {
		if !a.State.Open() {
			continue
		}
		for _, id := range a.Request.Messages {
			e := effects[id]
			if e == nil {
				e = &Effect{}
				effects[id] = e
			}
			e.Actions = append(e.Actions, Ref{ID: a.ID, Kind: a.Kind, State: a.State})
			switch a.Kind {
			case Flags:
				for _, f := range a.Request.Add {
					e.ops = append(e.ops, flagOp{flag: f, add: true})
				}
				for _, f := range a.Request.Remove {
					e.ops = append(e.ops, flagOp{flag: f})
				}
			case Move:
				e.Folder = a.Request.Folder
			case Delete:
				e.Deleted = true
			}
		}
		if a.Kind == Draft && a.Request.Replaces != 0 {
			// The replaced draft is removed once the new one is saved.
			e := effects[a.Request.Replaces]
			if e == nil {
				e = &Effect{}
				effects[a.Request.Replaces] = e
			}
			e.Actions = append(e.Actions, Ref{ID: a.ID, Kind: a.Kind, State: a.State})
			e.Deleted = true
		}
	}
	return effects
}

// Flags is stored with the effect's flag deltas applied, in a stable order (stored's, then the
// added ones in the order asked). Flags compare case-insensitively, as IMAP's system flags do.
func (e *Effect) Flags(stored []string) []string {
	out := slices.Clone(stored)
	for _, op := range e.ops {
		i := slices.IndexFunc(out, func(f string) bool { return equalFold(f, op.flag) })
		switch {
		case op.add && i < 0:
			out = append(out, op.flag)
		case !op.add && i >= 0:
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}

// HasFlag reports whether flags holds flag, compared as IMAP compares flags.
func HasFlag(flags []string, flag string) bool {
	return slices.ContainsFunc(flags, func(f string) bool { return equalFold(f, flag) })
}

// ApplyDelta is stored with add added and remove removed: a message's flags after a flags action.
func ApplyDelta(stored, add, remove []string) []string {
	e := Effect{}
	for _, f := range add {
		e.ops = append(e.ops, flagOp{flag: f, add: true})
	}
	for _, f := range remove {
		e.ops = append(e.ops, flagOp{flag: f})
	}
	return e.Flags(stored)
}

// equalFold compares ASCII case-insensitively (flags are atoms: ASCII).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
