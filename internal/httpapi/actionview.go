package httpapi

import "mailsync/internal/action"

// ActionView is the action as the API shows it, for the commands that print one (mailsync flag,
// move, send --json): the same JSON as GET /api/actions/{id}.
func ActionView(a action.Action) ActionJSON { return actionJSON(a) }
