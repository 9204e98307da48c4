package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"mailsync/internal/secret"
	"mailsync/internal/store"
)

// TokenStore is what Tokens needs of the database.
type TokenStore interface {
	Account(ctx context.Context, id int64) (store.Account, error)
	ClaimTokenRefresh(ctx context.Context, id, version int64, owner string, lease time.Duration) (bool, error)
	StoreRefreshedToken(ctx context.Context, id, version int64, owner string, sealed []byte, expiry time.Time) error
	ReleaseTokenRefresh(ctx context.Context, id int64, owner string) error
	MarkReauthRequired(ctx context.Context, id, version int64, reason string) (bool, error)
}

// Options tune Tokens; the zero value is usable.
type Options struct {
	// Margin is how long before its expiry an access token is refreshed, at most: a token that
	// lives less than four margins is refreshed when a quarter of its life is left. Default 2 min.
	Margin time.Duration
	// Lease bounds how long a refresher may hold an account's refresh before another may take
	// it over (a refresher that died). Default 1 min.
	Lease time.Duration
	// Poll is how often a refresher that lost the claim re-reads the account. Default 50 ms.
	Poll time.Duration
	// Attempts and Backoff: a refresh that fails for a transient reason (network, 5xx, 429) is
	// tried Attempts times in all, Backoff before the second, doubling. Defaults 3 and 500 ms.
	Attempts int
	Backoff  time.Duration
	// HTTPClient talks to the providers; default a client with a 20 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Refreshed, when set, is told the result of every refresh asked of a provider (ok, auth,
	// transient, permanent); ReauthRequired of every account this process put in the
	// reauth_required state. Metrics count them.
	Refreshed      func(result string)
	ReauthRequired func()
}

// Tokens hands out the access tokens of OAuth2 accounts, refreshing them in one place: ahead of
// their expiry, and once more when a server refused one. A refresh is a fenced single-writer
// operation on the account's row (store.ClaimTokenRefresh), so concurrent syncs, IDLE watchers
// and instances wanting a new token get the one refresh's result; a refused refresh token puts
// the account in reauth_required.
type Tokens struct {
	store     TokenStore
	box       *secret.Box
	providers *Providers
	opts      Options
	now       func() time.Time
}

// NewTokens returns the token keeper over st, opening token sets with box.
func NewTokens(st TokenStore, box *secret.Box, providers *Providers, opts Options) *Tokens {
	if opts.Margin <= 0 {
		opts.Margin = 2 * time.Minute
	}
	if opts.Lease <= 0 {
		opts.Lease = time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 20 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tokens{store: st, box: box, providers: providers, opts: opts, now: time.Now}
}

// Providers returns the configured providers.
func (t *Tokens) Providers() *Providers { return t.providers }

// HTTPClient is the client that talks to the providers.
func (t *Tokens) HTTPClient() *http.Client { return t.opts.HTTPClient }

// Access is an access token and when to stop using it.
type Access struct {
	Token string
	// Expiry is when the token expires (zero: unknown); RefreshAt when Tokens would refresh it.
	Expiry, RefreshAt time.Time
}

// refreshAt is when a token set is due for refresh.
func (t *Tokens) refreshAt(ts TokenSet) time.Time {
	if ts.Expiry.IsZero() {
		return time.Time{}
	}
	margin := t.opts.Margin
	if life := ts.Lifetime(); life > 0 && life/4 < margin {
		margin = life / 4
	}
	return ts.Expiry.Add(-margin)
}

// Token returns a usable access token of the account: the stored one while it is not due for
// refresh, else a new one. refused, when not empty, is a token a server has just refused: if it
// is still the stored one, it is refreshed now whatever its expiry says (once: the caller tries
// the new one and gives up if that is refused too). The error is an *Error; its auth class
// (errors.Is ErrReauthRequired) means the account is now reauth_required.
func (t *Tokens) Token(ctx context.Context, accountID int64, refused string) (Access, error) {
	for {
		acct, err := t.store.Account(ctx, accountID)
		if err != nil {
			return Access{}, fmt.Errorf("oauth: %w", err)
		}
		if !acct.IsOAuth2() {
			return Access{}, &Error{Class: "permanent", Op: "token", Err: fmt.Errorf("account %d does not sign in with OAuth2", accountID)}
		}
		if acct.ReauthRequired() {
			return Access{}, &Error{Class: "auth", Op: "token", Err: ErrReauthRequired}
		}
		ts, err := Open(t.box, acct.SecretEnc, acct.Login, acct.IMAPHost)
		if err != nil {
			return Access{}, &Error{Class: "permanent", Op: "token", Err: err}
		}
		due := t.refreshAt(ts)
		if ts.Access != "" && ts.Access != refused && (due.IsZero() || t.now().Before(due)) {
			return Access{Token: ts.Access, Expiry: ts.Expiry, RefreshAt: due}, nil
		}
		owner := uuid.NewString()
		won, err := t.store.ClaimTokenRefresh(ctx, acct.ID, acct.TokenVersion, owner, t.opts.Lease)
		if err != nil {
			return Access{}, fmt.Errorf("oauth: %w", err)
		}
		if !won {
			// Another refresher holds the lease (or has just stored a new version): wait for its
			// token rather than spending the same refresh token a second time.
			if err := sleep(ctx, t.opts.Poll); err != nil {
				return Access{}, err
			}
			continue
		}
		a, err := t.refresh(ctx, acct, ts, owner)
		if errors.Is(err, store.ErrConflict) {
			continue // our lease expired under us and someone else stored: read theirs
		}
		var e *Error
		if errors.As(err, &e) && e.Class == "transient" && refused == "" && ts.Access != "" && t.now().Before(ts.Expiry) {
			// The provider is away, but the token it gave last still works: use it until it
			// expires rather than fail what it is needed for. The next call tries again.
			t.opts.Logger.Warn("oauth: token refresh failed; using the current token until it expires",
				"account", acct.ID, "expiry", ts.Expiry, "err", err)
			return Access{Token: ts.Access, Expiry: ts.Expiry, RefreshAt: due}, nil
		}
		return a, err
	}
}

// refresh asks the provider for a new token set while holding the account's lease, and stores it.
func (t *Tokens) refresh(ctx context.Context, acct store.Account, ts TokenSet, owner string) (Access, error) {
	log := t.opts.Logger.With("account", acct.ID, "provider", acct.OAuthProvider)
	release := func() {
		// A fresh context: the lease must end even when ctx did.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := t.store.ReleaseTokenRefresh(rctx, acct.ID, owner); err != nil {
			log.Warn("oauth: cannot release the refresh lease", "err", err)
		}
	}
	p := t.providers.Get(acct.OAuthProvider)
	if p == nil {
		release()
		return Access{}, &Error{Class: "permanent", Op: "refresh", Err: fmt.Errorf("provider %q is not configured on this server", acct.OAuthProvider)}
	}
	if ts.Refresh == "" {
		release()
		return Access{}, t.reauth(ctx, acct, &Error{Class: "auth", Op: "refresh", Err: ErrReauthRequired}, log)
	}
	var (
		tok *oauth2.Token
		err error
	)
	wait := t.opts.Backoff
	for attempt := 1; ; attempt++ {
		tok, err = p.OAuth2("").TokenSource(context.WithValue(ctx, oauth2.HTTPClient, t.opts.HTTPClient),
			&oauth2.Token{RefreshToken: ts.Refresh}).Token()
		if err == nil {
			break
		}
		e := classify("refresh", err)
		if ctx.Err() != nil {
			release()
			return Access{}, context.Cause(ctx)
		}
		t.count(e.Class)
		if e.Class == "auth" {
			return Access{}, t.reauth(ctx, acct, e, log)
		}
		if e.Class != "transient" || attempt == t.opts.Attempts {
			release()
			return Access{}, e
		}
		log.Warn("oauth: token refresh failed, trying again", "attempt", attempt, "in", wait, "err", e)
		if err := sleep(ctx, wait); err != nil {
			release()
			return Access{}, err
		}
		wait *= 2
	}
	t.count("ok")
	next := FromOAuth2(tok, ts.Refresh, t.now())
	if err := t.store.StoreRefreshedToken(ctx, acct.ID, acct.TokenVersion, owner, next.Seal(t.box, acct.Login, acct.IMAPHost), next.Expiry); err != nil {
		// ErrConflict: the lease expired and another refresher stored first. Its token stands;
		// ours, if the provider rotated, replaced it there: nothing better can be done now.
		return Access{}, fmt.Errorf("oauth: %w", err)
	}
	log.Debug("oauth: token refreshed", "expiry", next.Expiry)
	return Access{Token: next.Access, Expiry: next.Expiry, RefreshAt: t.refreshAt(next)}, nil
}

// reauth puts the account in reauth_required and returns e.
func (t *Tokens) reauth(ctx context.Context, acct store.Account, e *Error, log *slog.Logger) error {
	reason := "sign in again: the provider refused this account's authorization"
	if e.Code != "" {
		reason += " (" + e.Code + ")"
	}
	changed, err := t.store.MarkReauthRequired(context.WithoutCancel(ctx), acct.ID, acct.TokenVersion, reason)
	if err != nil {
		return fmt.Errorf("%w; %v", e, err)
	}
	if changed {
		log.Warn("oauth: account needs its owner to sign in again", "code", e.Code)
		if t.opts.ReauthRequired != nil {
			t.opts.ReauthRequired()
		}
	}
	return e
}

func (t *Tokens) count(result string) {
	if t.opts.Refreshed != nil {
		t.opts.Refreshed(result)
	}
}

// Keep keeps the account's access token fresh while ctx lives: it refreshes it ahead of every
// expiry, so that a long sync always has a current token to dial again with, and so that a
// revoked authorization is noticed within one token lifetime instead of at the next sync. It
// returns nil when ctx ends, or the error that should end the sync: the account became
// reauth_required, or refreshes kept failing until the token expired.
//
// While the provider is away, Token hands out the current token until it expires; Keep then
// asks again with a growing backoff instead of at once.
func (t *Tokens) Keep(ctx context.Context, accountID int64) error {
	wait := t.opts.Backoff
	for {
		a, err := t.Token(ctx, accountID, "")
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if a.RefreshAt.IsZero() {
			<-ctx.Done()
			return nil
		}
		next := time.Until(a.RefreshAt)
		if next <= 0 { // due, and not refreshed: the provider failed; the token still works
			next, wait = min(wait, max(time.Until(a.Expiry), time.Millisecond)), min(2*wait, 30*time.Second)
		} else {
			wait = t.opts.Backoff
		}
		if err := sleep(ctx, next); err != nil {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-timer.C:
		return nil
	}
}
