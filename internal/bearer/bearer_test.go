package bearer_test

import (
	"testing"

	"mailsync/internal/bearer"
)

func TestInitialResponse(t *testing.T) {
	for _, tc := range []struct {
		mech, want string
	}{
		{bearer.XOAuth2, "user=bob@example.org\x01auth=Bearer tok\x01\x01"},
		{bearer.OAuthBearer, "n,a=bob@example.org,\x01host=imap.example.org\x01port=993\x01auth=Bearer tok\x01\x01"},
	} {
		if got := string(bearer.InitialResponse(tc.mech, "bob@example.org", "tok", "imap.example.org", 993)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.mech, got, tc.want)
		}
	}
}
