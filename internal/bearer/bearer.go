// Package bearer is what IMAP and SMTP share of signing in with an OAuth2 access token: the SASL
// mechanisms' names and their initial responses (RFC 7628 OAUTHBEARER, and Google's and
// Microsoft's XOAUTH2). Each protocol's client answers the server's error challenge in its own
// way (imapconn, smtpsend); what it sends first is the same.
package bearer

import "github.com/emersion/go-sasl"

// The mechanisms.
const (
	XOAuth2     = "XOAUTH2"
	OAuthBearer = sasl.OAuthBearer
)

// InitialResponse is the first message of mech for user with token: an OAUTHBEARER GS2 header and
// key-values (host and port bind it to the server), or XOAUTH2's
// "user=...^Aauth=Bearer ...^A^A".
func InitialResponse(mech, user, token, host string, port int) []byte {
	if mech == OAuthBearer {
		_, ir, _ := sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token, Host: host, Port: port}).Start()
		return ir
	}
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}
