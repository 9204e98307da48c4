package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"mailsync/internal/secret"
)

// TokenSet is what an OAuth2 account keeps, sealed under the server key in its secret_enc: the
// access token, the refresh token, and when the access token was issued and expires (its
// lifetime sets how early it is refreshed).
type TokenSet struct {
	Access  string    `json:"access"`
	Refresh string    `json:"refresh"`
	Issued  time.Time `json:"issued"`
	Expiry  time.Time `json:"expiry"`
}

// FromOAuth2 is the token set of a provider's answer issued at now. A refresh answer without a
// refresh token (providers that do not rotate) keeps refresh, the one it was asked with.
func FromOAuth2(tok *oauth2.Token, refresh string, now time.Time) TokenSet {
	ts := TokenSet{Access: tok.AccessToken, Refresh: tok.RefreshToken, Issued: now, Expiry: tok.Expiry}
	if ts.Refresh == "" {
		ts.Refresh = refresh
	}
	return ts
}

// Context is the associated data an account's token set is sealed with: the mailbox address it
// is for and the IMAP host, so a sealed token set copied onto another row does not open, and a
// sealed password never opens as a token set (or the other way round).
func Context(login, host string) []byte {
	return []byte("oauth2:" + login + "@" + host)
}

// Seal seals ts for the account with that login and host.
func (ts TokenSet) Seal(box *secret.Box, login, host string) []byte {
	plain, _ := json.Marshal(ts) // strings and times: cannot fail
	return box.Seal(plain, Context(login, host))
}

// Open opens a token set Seal sealed.
func Open(box *secret.Box, sealed []byte, login, host string) (TokenSet, error) {
	plain, err := box.Open(sealed, Context(login, host))
	if err != nil {
		return TokenSet{}, fmt.Errorf("oauth: token of %s: %w", login, err)
	}
	var ts TokenSet
	if err := json.Unmarshal(plain, &ts); err != nil {
		return TokenSet{}, fmt.Errorf("oauth: token of %s: %w", login, err)
	}
	return ts, nil
}

// Lifetime is how long the access token lived when issued (zero: unknown).
func (ts TokenSet) Lifetime() time.Duration {
	if ts.Issued.IsZero() || ts.Expiry.IsZero() {
		return 0
	}
	return ts.Expiry.Sub(ts.Issued)
}

// ErrReauthRequired says the provider refused the account's refresh token for good
// (invalid_grant: revoked, expired, consent withdrawn): only a new sign-in helps. Errors of this
// kind leave an account in the reauth_required state.
var ErrReauthRequired = errors.New("sign in again: the provider no longer accepts this account's authorization")

// Error is a failed token request, classed like IMAP errors: "auth" (sign in again),
// "transient" (network, 5xx, 429: retried), "permanent" (the operator's client configuration).
// Its message holds the provider's error code and the HTTP status, never a token.
type Error struct {
	Class string
	Op    string
	Code  string // the provider's OAuth2 error code (invalid_grant...), when it sent one
	Err   error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("oauth: %s: %s error", e.Op, e.Class)
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrReauthRequired) true for the auth class.
func (e *Error) Is(target error) bool { return target == ErrReauthRequired && e.Class == "auth" }

// classify turns an error of golang.org/x/oauth2 into an *Error. The provider's answer body is
// not kept: only its error code and status.
func classify(op string, err error) *Error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return &Error{Class: "transient", Op: op, Err: err}
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	e := &Error{Op: op, Code: re.ErrorCode, Err: fmt.Errorf("HTTP %d", status)}
	switch {
	case re.ErrorCode == "invalid_grant":
		e.Class, e.Err = "auth", ErrReauthRequired
	case status >= 500 || status == http.StatusTooManyRequests || re.ErrorCode == "temporarily_unavailable":
		e.Class = "transient"
	default:
		e.Class = "permanent"
	}
	return e
}
