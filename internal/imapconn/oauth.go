package imapconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"mailsync/internal/bearer"
)

// Mechanism names of OAuth2 logins.
const (
	MechXOAuth2     = bearer.XOAuth2
	MechOAuthBearer = bearer.OAuthBearer
)

// tokenError carries an error of Config.OAuthToken out of login unchanged: it is the token
// keeper's (reauth_required, a provider down), not the IMAP server's.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }

// authenticate logs in with an OAuth2 token: AUTHENTICATE OAUTHBEARER or XOAUTH2. A refused token
// is handed back to Config.OAuthToken once; if that gives another token (it was stale, and is now
// refreshed), the login is tried again with it on the same connection.
func (c *Conn) authenticate(ctx context.Context, g *guard) error {
	mech := strings.ToUpper(c.cfg.OAuthMechanism)
	if mech == "" {
		// Before login the capabilities come from the greeting or a CAPABILITY command.
		caps := c.client.Caps()
		switch {
		case caps.Has(imap.Cap("AUTH=" + MechOAuthBearer)):
			mech = MechOAuthBearer
		case caps.Has(imap.Cap("AUTH=" + MechXOAuth2)):
			mech = MechXOAuth2
		default:
			return &Error{Op: "OAuth2 login to " + c.addr, Class: ClassPermanent,
				Err: errors.New("the server advertises neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2")}
		}
	}
	refused := ""
	for try := 0; ; try++ {
		g.pause() // the token source may refresh: its wait is not the server's
		token, err := c.cfg.OAuthToken(ctx, refused)
		g.progress()
		if err != nil {
			return &tokenError{err: err}
		}
		if token == refused {
			return c.lastRefusal
		}
		c.cfg.Password = token
		cl := newOAuthClient(mech, c.cfg.Login, token, c.cfg.Host, c.cfg.Port)
		c.blobs = append(c.blobs, string(cl.ir))
		err = c.client.Authenticate(cl)
		if err == nil {
			return nil
		}
		var se *imap.Error
		if !errors.As(err, &se) || se.Type != imap.StatusResponseTypeNo || try == 1 || isThrottle(se) {
			return err
		}
		c.log.Debug("imap: OAuth2 token refused; asking for a fresh one", "mechanism", mech, "status", cl.status)
		c.lastRefusal, refused = err, token
	}
}

// oauthClient is a SASL client for OAUTHBEARER and XOAUTH2. On an error challenge (the JSON
// status the server sends before its NO) it records the status and answers %x01, as RFC 7628
// §3.2.3 prescribes for OAUTHBEARER, so the server ends the exchange with its NO instead of the
// connection being left mid-exchange (go-sasl's client returns an error there, which leaves it
// so). XOAUTH2 asks for an empty response, but go-imap can only send an empty one as "=", which
// Dovecot refuses as invalid base64 (BAD); %x01 gets the NO from it as well.
type oauthClient struct {
	mech   string
	ir     []byte
	status string
}

func newOAuthClient(mech, user, token, host string, port int) *oauthClient {
	return &oauthClient{mech: mech, ir: bearer.InitialResponse(mech, user, token, host, port)}
}

func (cl *oauthClient) Start() (string, []byte, error) { return cl.mech, cl.ir, nil }

func (cl *oauthClient) Next(challenge []byte) ([]byte, error) {
	var e sasl.OAuthBearerError
	if json.Unmarshal(challenge, &e) == nil {
		cl.status = e.Status
	} else {
		cl.status = fmt.Sprintf("unreadable challenge of %d bytes", len(challenge))
	}
	return []byte{0x01}, nil
}
