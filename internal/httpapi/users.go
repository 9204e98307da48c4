package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/auth"
	"mailsync/internal/store"
)

// The operator's routes over users and their credentials: the API's side of `mailsync user` and
// `mailsync token`. Every change here is forgotten by this server's token cache at once; other
// instances follow within their cache's TTL (sessions are checked against the database on every
// request, everywhere).

// minUserPasswordLen is the shortest password accepted for a user (the CLI's rule too).
const minUserPasswordLen = 8

// AdminUserJSON is a user as an administrator sees it.
type AdminUserJSON struct {
	UserJSON
	CreatedAt time.Time `json:"created_at"`
}

type usersOutput struct{ Body []AdminUserJSON }

func (s *Server) listUsers(ctx context.Context, _ *struct{}) (*usersOutput, error) {
	users, err := s.store.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AdminUserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, AdminUserJSON{UserJSON: userJSON(u), CreatedAt: u.CreatedAt})
	}
	return &usersOutput{Body: out}, nil
}

type userIDInput struct {
	ID int64 `path:"id" minimum:"1" doc:"The user's id."`
}

func userNotFound(id int64) error { return huma.Error404NotFound(fmt.Sprintf("user %d not found", id)) }

func (s *Server) deleteUser(ctx context.Context, in *userIDInput) (*struct{}, error) {
	if in.ID == userFrom(ctx).ID {
		return nil, huma.Error409Conflict("you cannot delete yourself; another administrator or `mailsync user delete` can")
	}
	err := s.store.DeleteUser(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, userNotFound(in.ID)
	}
	if err != nil {
		return nil, err
	}
	s.tokens.forgetUser(in.ID)
	s.log.Info("httpapi: user deleted with their accounts and data", "user", in.ID, "by", userFrom(ctx).ID)
	return nil, nil
}

// RevokedJSON counts what a revocation ended.
type RevokedJSON struct {
	Sessions int64 `json:"sessions_ended"`
	Tokens   int64 `json:"tokens_deleted"`
}

type revokedOutput struct{ Body RevokedJSON }

type passwordInput struct {
	ID   int64 `path:"id" minimum:"1" doc:"The user's id."`
	Body struct {
		Password string `json:"password" minLength:"8" maxLength:"1024" writeOnly:"true" doc:"The new password (8 characters at least)."`
	}
}

// setPassword replaces a user's password and ends every session and token of theirs: whoever
// knew the old one may have made them.
func (s *Server) setPassword(ctx context.Context, in *passwordInput) (*revokedOutput, error) {
	if len(in.Body.Password) < minUserPasswordLen {
		return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("the password must have at least %d characters", minUserPasswordLen))
	}
	// Hashing costs what a login's check costs: it takes a slot of the same gate, so no route
	// runs more argon2id at once than the memory allows.
	release, err := s.gate.Enter(ctx)
	if errors.Is(err, auth.ErrBusy) {
		return nil, huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("too many password checks at once; try again in a moment"),
			http.Header{"Retry-After": {retryAfter(s.gate.Wait())}})
	}
	if err != nil {
		return nil, err
	}
	hash, err := auth.HashPassword(in.Body.Password, s.cfg.PasswordParams)
	release()
	if err != nil {
		return nil, err
	}
	r, err := s.store.SetPassword(ctx, in.ID, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, userNotFound(in.ID)
	}
	if err != nil {
		return nil, err
	}
	s.tokens.forgetUser(in.ID)
	s.log.Info("httpapi: password changed; sessions and tokens ended", "user", in.ID, "by", userFrom(ctx).ID,
		"sessions", r.Sessions, "tokens", r.Tokens)
	return &revokedOutput{Body: RevokedJSON{Sessions: r.Sessions, Tokens: r.Tokens}}, nil
}

// revokeUser ends every session and token of a user without changing the password.
func (s *Server) revokeUser(ctx context.Context, in *userIDInput) (*revokedOutput, error) {
	r, err := s.store.RevokeUser(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, userNotFound(in.ID)
	}
	if err != nil {
		return nil, err
	}
	s.tokens.forgetUser(in.ID)
	s.log.Info("httpapi: sessions and tokens ended", "user", in.ID, "by", userFrom(ctx).ID,
		"sessions", r.Sessions, "tokens", r.Tokens)
	return &revokedOutput{Body: RevokedJSON{Sessions: r.Sessions, Tokens: r.Tokens}}, nil
}

// TokenJSON is an API token as listed: never the token, which is shown once when made.
type TokenJSON struct {
	ID         int64      `json:"id"`
	UserID     int64      `json:"user_id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at" nullable:"true" doc:"Null: never used. Recorded at most once a minute."`
}

type tokensOutput struct{ Body []TokenJSON }

func (s *Server) listTokens(ctx context.Context, in *userIDInput) (*tokensOutput, error) {
	if _, err := s.store.UserByID(ctx, in.ID); errors.Is(err, store.ErrNotFound) {
		return nil, userNotFound(in.ID)
	} else if err != nil {
		return nil, err
	}
	toks, err := s.store.Tokens(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	out := make([]TokenJSON, 0, len(toks))
	for _, t := range toks {
		out = append(out, TokenJSON{ID: t.ID, UserID: t.UserID, Name: t.Name, CreatedAt: t.CreatedAt, LastUsedAt: nullTime(t.LastUsedAt)})
	}
	return &tokensOutput{Body: out}, nil
}

type tokenIDInput struct {
	ID      int64 `path:"id" minimum:"1" doc:"The user's id."`
	TokenID int64 `path:"token_id" minimum:"1" doc:"The token's id."`
}

func (s *Server) revokeToken(ctx context.Context, in *tokenIDInput) (*struct{}, error) {
	hash, err := s.store.RevokeToken(ctx, in.ID, in.TokenID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("user %d has no token %d", in.ID, in.TokenID))
	}
	if err != nil {
		return nil, err
	}
	s.tokens.forget(hash)
	s.log.Info("httpapi: token revoked", "user", in.ID, "token", in.TokenID, "by", userFrom(ctx).ID)
	return nil, nil
}
