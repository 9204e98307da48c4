package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// NewState returns a one-time state value for an authorization request.
func NewState() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewVerifier returns a PKCE code verifier (RFC 7636).
func NewVerifier() string { return oauth2.GenerateVerifier() }

// Exchange trades an authorization code for a token set, proving the request with verifier.
func (p *Provider) Exchange(ctx context.Context, client *http.Client, redirectURL, code, verifier string) (TokenSet, *oauth2.Token, error) {
	tok, err := p.OAuth2(redirectURL).Exchange(clientContext(ctx, client), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return TokenSet{}, nil, classify("authorization code", err)
	}
	return FromOAuth2(tok, "", time.Now()), tok, nil
}

func clientContext(ctx context.Context, client *http.Client) context.Context {
	if client == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, client)
}

// Address is the mailbox address a token answer names in its OpenID Connect id_token (email,
// else preferred_username: Microsoft's sign-in name), or "". The id_token came straight from the
// token endpoint over the provider's TLS, so its signature need not be checked (OpenID Connect
// Core §3.1.3.7); it only names the mailbox, which the IMAP login then proves.
func Address(tok *oauth2.Token) string {
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Email             string `json:"email"`
		PreferredUsername string `json:"preferred_username"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	if claims.Email != "" {
		return claims.Email
	}
	if strings.Contains(claims.PreferredUsername, "@") {
		return claims.PreferredUsername
	}
	return ""
}

// DeviceFlow is the device authorization grant (RFC 8628) for a headless sign-in: show tells the
// user where to go and which code to enter; it then waits (polling at the provider's interval)
// until they have approved or denied, or ctx ends.
func (p *Provider) DeviceFlow(ctx context.Context, client *http.Client, show func(verificationURI, userCode string)) (TokenSet, *oauth2.Token, error) {
	cfg := p.OAuth2("")
	cctx := clientContext(ctx, client)
	da, err := cfg.DeviceAuth(cctx)
	if err != nil {
		return TokenSet{}, nil, classify("device authorization", err)
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	show(uri, da.UserCode)
	tok, err := cfg.DeviceAccessToken(cctx, da)
	if err != nil {
		if ctx.Err() != nil {
			return TokenSet{}, nil, fmt.Errorf("oauth: device sign-in not finished in time: %w", context.Cause(ctx))
		}
		return TokenSet{}, nil, classify("device sign-in", err)
	}
	return FromOAuth2(tok, "", time.Now()), tok, nil
}

// LoopbackFlow is the redirect flow of native apps (RFC 8252 §7.3): a one-shot listener on
// 127.0.0.1 takes the redirect, on port (0: any free one, as RFC 8252 wants; a fixed one for
// clients that register exact redirect URIs, or to forward it over SSH). show is given the
// consent page's address to open; the flow waits for the one redirect carrying its state, or
// ctx's end, and answers the browser in words.
func (p *Provider) LoopbackFlow(ctx context.Context, client *http.Client, port int, loginHint string, show func(url string)) (TokenSet, *oauth2.Token, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return TokenSet{}, nil, fmt.Errorf("oauth: loopback listener: %w", err)
	}
	defer ln.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"
	state, verifier := NewState(), NewVerifier()
	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/callback" || q.Get("state") != state {
			http.Error(w, "not the sign-in this listener waits for", http.StatusBadRequest)
			return
		}
		res := result{code: q.Get("code")}
		if e := q.Get("error"); e != "" {
			res = result{err: &Error{Class: "auth", Op: "sign-in", Code: e, Err: errors.New(describeRefusal(e, q.Get("error_description")))}}
		} else if res.code == "" {
			res = result{err: errors.New("oauth: the redirect carried no code")}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if res.err != nil {
			fmt.Fprintf(w, "<p>Sign-in failed: %s</p><p>You can close this window.</p>", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprint(w, "<p>Signed in. You can close this window and return to the terminal.</p>")
		}
		select {
		case done <- res:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	show(p.AuthCodeURL(redirect, state, verifier, loginHint))
	select {
	case <-ctx.Done():
		return TokenSet{}, nil, fmt.Errorf("oauth: sign-in not finished in time: %w", context.Cause(ctx))
	case res := <-done:
		if res.err != nil {
			return TokenSet{}, nil, res.err
		}
		return p.Exchange(ctx, client, redirect, res.code, verifier)
	}
}

// describeRefusal says in words why the provider sent the user back without a code.
func describeRefusal(code, description string) string {
	var msg string
	switch code {
	case "access_denied":
		msg = "consent was refused: mailsync was not allowed to read the mailbox"
	case "consent_required", "interaction_required":
		msg = "the provider needs the user (or an administrator) to consent first"
	case "unauthorized_client", "invalid_client":
		msg = "the provider does not accept this mailsync's client registration (check the client id, secret and redirect URI)"
	default:
		msg = "the provider refused the sign-in (" + code + ")"
	}
	if description != "" {
		if len(description) > 300 {
			description = description[:300] + "…"
		}
		msg += ": " + description
	}
	return msg
}

// DescribeRefusal is describeRefusal for the web callback.
func DescribeRefusal(code, description string) string { return describeRefusal(code, description) }
