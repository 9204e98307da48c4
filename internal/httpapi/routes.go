package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// routes is the whole API, one line per route.
func (s *Server) routes() {
	const get, post, put, patch, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete

	// Sign-in.
	register(s, public, op(post, "/api/login", "login", "Sign in with email and password; sets the session cookie",
		withClientAddr), s.login)
	register(s, public, op(post, "/api/logout", "logout", "Sign out: ends the session on the server and clears its cookie"), s.logout)
	register(s, member, op(get, "/api/me", "me", "The signed-in user"), s.me)

	// Accounts.
	register(s, member, op(post, "/api/accounts", "create-account", "Add an IMAP account (its login is tested first)").status(201), s.createAccount)
	register(s, member, op(get, "/api/accounts", "list-accounts", "The user's accounts, each with its live or latest task"), s.listAccounts)
	register(s, member, op(get, "/api/accounts/{id}", "get-account", "One account"), s.getAccount)
	register(s, member, op(patch, "/api/accounts/{id}", "update-account", "Change an account; a new server, login or password is tested first"), s.patchAccount)
	register(s, member, op(del, "/api/accounts/{id}", "delete-account", "Remove an account and everything stored for it").status(204), s.deleteAccount)

	// OAuth2 sign-in (Google, Microsoft, the operator's providers).
	register(s, member, op(get, "/api/oauth/providers", "list-oauth-providers", "The OAuth2 providers accounts can sign in with"), s.listProviders)
	s.mux.HandleFunc("POST /api/oauth/start", s.requirePlain(member, s.oauthStart)) // needs the session cookie itself
	s.mux.HandleFunc("GET /oauth/callback", s.oauthCallback)

	// Sync tasks.
	register(s, member, op(post, "/api/accounts/{id}/sync", "start-sync", "Sync now: the live task of the account, or a new one").status(202).errors(http.StatusConflict, http.StatusServiceUnavailable), s.startSync)
	register(s, member, op(get, "/api/accounts/{id}/sync", "account-sync", "The account's live task, else its latest"), s.accountSync)
	register(s, member, op(get, "/api/sync/tasks/{id}", "get-task", "One sync task"), s.getTask)
	register(s, member, op(post, "/api/sync/tasks/{id}/cancel", "cancel-task", "Cancel a task: at once when queued, at its next heartbeat when running").errors(http.StatusServiceUnavailable), s.cancelTask)
	s.plain(member, get, "/api/sync/tasks/{id}/events", "task-events", "Server-sent events of a task: snapshot, progress, one terminal event", "text/event-stream", s.capStreams(s.taskEvents))

	// Stored mail.
	register(s, member, op(get, "/api/accounts/{id}/folders", "list-folders", "The account's folders and their checkpoints"), s.listFolders)
	register(s, member, op(get, "/api/accounts/{id}/messages", "list-messages", "A page of messages, newest first, optionally searched"), s.listMessages)
	register(s, member, op(get, "/api/messages/{id}", "get-message", "One message with its text"), s.getMessage)
	s.plain(member, get, "/api/messages/{id}/raw", "get-message-raw", "The exact bytes the IMAP server sent", "message/rfc822", s.rawMessage)

	// Actions on mail (docs/actions.md): stored, answered 202, applied by the account's task.
	register(s, member, op(post, "/api/messages/{id}/flags", "message-flags", "Add and remove flags of a message (as deltas)").status(202), s.messageFlags)
	register(s, member, op(post, "/api/messages/{id}/move", "message-move", "Move a message to another folder").status(202), s.messageMove)
	register(s, member, op(del, "/api/messages/{id}", "message-delete", "Delete a message: to Trash, or expunged when in Trash or ?permanent=true").status(202), s.messageDelete)
	register(s, member, op(post, "/api/accounts/{id}/messages/flags", "bulk-flags", "Add and remove flags of many messages").status(202), s.bulkFlags)
	register(s, member, op(post, "/api/accounts/{id}/messages/move", "bulk-move", "Move many messages to a folder").status(202), s.bulkMove)
	register(s, member, op(post, "/api/accounts/{id}/messages/delete", "bulk-delete", "Delete many messages").status(202), s.bulkDelete)
	register(s, member, op(post, "/api/accounts/{id}/send", "send", "Compose and send a message over the account's SMTP server; a copy goes to Sent").status(202).maxBody(maxComposed).errors(http.StatusConflict), s.send)
	register(s, member, op(post, "/api/accounts/{id}/drafts", "save-draft", "Compose a message and save it in Drafts, replacing an older draft").status(202).maxBody(maxComposed), s.saveDraft)
	register(s, member, op(get, "/api/accounts/{id}/smtp", "get-smtp", "Where the account submits mail"), s.getSMTP)
	register(s, member, op(put, "/api/accounts/{id}/smtp", "set-smtp", "Set where the account submits mail (its login is tested first)"), s.putSMTP)
	register(s, member, op(get, "/api/actions/{id}", "get-action", "One action with its state"), s.getAction)
	register(s, member, op(post, "/api/actions/{id}/retry", "retry-action", "Queue a failed, conflicting or unknown action again").status(202).errors(http.StatusConflict), s.retryAction)
	register(s, member, op(del, "/api/actions/{id}", "cancel-action", "Cancel a pending action").errors(http.StatusConflict), s.cancelAction)
	register(s, member, op(get, "/api/accounts/{id}/actions", "account-actions", "The account's actions, newest first"), s.accountActions)

	// The change feed (docs/changes.md).
	register(s, member, op(get, "/api/accounts/{id}/changes", "account-changes", "A page of the account's change log, in order, after a seq").errors(http.StatusGone), s.accountChanges)
	register(s, member, op(get, "/api/changes", "list-changes", "A page of the change logs of your accounts, after a cursor").errors(http.StatusBadRequest, http.StatusGone), s.allChanges)
	s.plain(member, get, "/api/changes/stream", "change-stream", "Server-sent events of your accounts' changes as they commit, resuming after Last-Event-ID", "text/event-stream", s.changeStream,
		&huma.Param{Name: "accounts", In: "query", Description: "Only these accounts (comma-separated ids); default: every account of yours, including those added later.", Schema: &huma.Schema{Type: "string"}},
		&huma.Param{Name: "after", In: "query", Description: "The cursor to start after when there is no Last-Event-ID; default: every account's first change.", Schema: &huma.Schema{Type: "string"}},
		&huma.Param{Name: "Last-Event-ID", In: "header", Description: "The id of the last event received: the stream resumes just after it.", Schema: &huma.Schema{Type: "string"}})
	// Webhooks.
	register(s, member, op(post, "/api/webhooks", "create-webhook", "Add a webhook endpoint; the answer shows its signing secret, once").status(201), s.createWebhook)
	register(s, member, op(get, "/api/webhooks", "list-webhooks", "The user's webhook endpoints with their state (?all=true: every user's, administrators only)").errors(http.StatusForbidden), s.listWebhooks)
	register(s, member, op(get, "/api/webhooks/{id}", "get-webhook", "One webhook endpoint with its state"), s.getWebhook)
	register(s, member, op(patch, "/api/webhooks/{id}", "update-webhook", "Change an endpoint; enabled: true resumes a disabled one where it stopped"), s.patchWebhook)
	register(s, member, op(del, "/api/webhooks/{id}", "delete-webhook", "Remove an endpoint with its cursors and history").status(204), s.deleteWebhook)
	register(s, member, op(post, "/api/webhooks/{id}/rotate-secret", "rotate-webhook-secret", "Replace the signing secret; the answer shows the new one, once"), s.rotateSecret)
	register(s, member, op(get, "/api/webhooks/{id}/deliveries", "webhook-deliveries", "The endpoint's latest delivery attempts, newest first"), s.webhookDeliveries)
	register(s, member, op(post, "/api/webhooks/{id}/test", "test-webhook", "Send a test event now and answer what the receiver said"), s.testWebhook)

	// Operators.
	register(s, member, op(get, "/api/health/sync", "sync-health", "Sync tasks: active, dead, oldest heartbeat age"), s.syncHealth)
	register(s, admin, op(post, "/api/health/sync/cleanup", "sync-cleanup", "Reap every dead task now and list what changed"), s.cleanup)
	register(s, admin, op(get, "/api/health/sync/detailed", "sync-detailed", "Every account's sync state"), s.syncDetailed)
	register(s, admin, op(get, "/api/health/system", "system-health", "CPU, memory, disk, goroutines, database round trip, uptime, version"), s.systemHealth)

	// Users and their credentials (administrators).
	register(s, admin, op(get, "/api/users", "list-users", "Every user"), s.listUsers)
	register(s, admin, op(del, "/api/users/{id}", "delete-user", "Remove a user with their sessions, tokens, accounts and mail").status(204), s.deleteUser)
	register(s, admin, op(put, "/api/users/{id}/password", "set-password", "Set a user's password; ends every session and token of theirs"), s.setPassword)
	register(s, admin, op(del, "/api/users/{id}/sessions", "revoke-user", "End every session and token of a user"), s.revokeUser)
	register(s, admin, op(get, "/api/users/{id}/tokens", "list-tokens", "A user's API tokens (never the tokens themselves)"), s.listTokens)
	register(s, admin, op(del, "/api/users/{id}/tokens/{token_id}", "revoke-token", "Revoke one API token").status(204), s.revokeToken)

	s.mux.HandleFunc("GET /livez", s.livez)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if !s.cfg.MetricsElsewhere {
		s.mux.Handle("GET /metrics", s.MetricsHandler())
	}

	s.methodNotAllowed()

	// Anything else under /api/ is a problem document, not the mux's plain-text 404.
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path)
	})
}

// operation is a huma.Operation under construction.
type operation huma.Operation

func op(method, path, id, summary string, middlewares ...func(huma.Context, func(huma.Context))) operation {
	return operation{Method: method, Path: path, OperationID: id, Summary: summary, Middlewares: middlewares}
}

func (o operation) status(code int) operation {
	o.DefaultStatus = code
	return o
}

// maxBody raises the request body limit (huma's default is 1 MiB).
func (o operation) maxBody(n int64) operation {
	o.MaxBodyBytes = n
	return o
}

// errors declares error statuses the handler answers besides those of its access check.
func (o operation) errors(codes ...int) operation {
	o.Errors = append(o.Errors, codes...)
	return o
}

// register adds a huma operation behind the access check.
func register[I, O any](s *Server, acc access, o operation, h func(context.Context, *I) (*O, error)) {
	hop := huma.Operation(o)
	// The access check runs first, before the input is even parsed.
	hop.Middlewares = append(huma.Middlewares{s.requireHuma(acc)}, hop.Middlewares...)
	if acc != public {
		hop.Security = []map[string][]string{{"bearer": {}}, {"session": {}}}
		hop.Errors = append(hop.Errors, http.StatusUnauthorized)
	}
	if acc == admin {
		hop.Errors = append(hop.Errors, http.StatusForbidden)
	}
	huma.Register(s.api, hop, h)
}

// plain adds a handler that huma does not serve (a stream, raw bytes) behind the access check,
// and describes it in the OpenAPI document all the same, with the path's {id} and params.
func (s *Server) plain(acc access, method, path, id, summary, contentType string, h http.HandlerFunc, params ...*huma.Param) {
	s.mux.HandleFunc(method+" "+path, s.requirePlain(acc, h))
	if strings.Contains(path, "{id}") {
		params = append([]*huma.Param{{Name: "id", In: "path", Required: true, Schema: &huma.Schema{Type: "string"}}}, params...)
	}
	s.api.OpenAPI().AddOperation(&huma.Operation{
		Method: method, Path: path, OperationID: id, Summary: summary,
		Security:   []map[string][]string{{"bearer": {}}, {"session": {}}},
		Parameters: params,
		Responses: map[string]*huma.Response{
			"200": {Description: summary, Content: map[string]*huma.MediaType{contentType: {}}},
		},
	})
}

// methodNotAllowed answers a known path asked with a method it does not serve with a 405 problem
// document and its Allow header, instead of the mux's plain-text 405. The paths and methods are
// read from the OpenAPI document, which every route above is in.
func (s *Server) methodNotAllowed() {
	for path, item := range s.api.OpenAPI().Paths {
		var allow []string
		for method, op := range map[string]*huma.Operation{
			http.MethodGet: item.Get, http.MethodPost: item.Post, http.MethodPut: item.Put,
			http.MethodPatch: item.Patch, http.MethodDelete: item.Delete,
		} {
			if op != nil {
				allow = append(allow, method)
			}
		}
		slices.Sort(allow)
		allowed := strings.Join(allow, ", ")
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allowed)
			writeProblem(w, http.StatusMethodNotAllowed, r.Method+" is not served at "+r.URL.Path+"; allowed: "+allowed)
		})
	}
}
