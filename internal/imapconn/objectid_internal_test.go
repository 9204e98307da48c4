package imapconn

import "testing"

func TestMailboxIDFrom(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"select answer", "* 0 EXISTS\r\n* OK [UIDVALIDITY 17] Ok\r\n* OK [MAILBOXID (up7u7ah2qdgf48nqns6hlahn)] Ok\r\nA1 OK [READ-ONLY] Completed\r\n", "up7u7ah2qdgf48nqns6hlahn"},
		{"lower case", "* ok [mailboxid (F2212ea87-6097_4256)] Ok\r\n", "F2212ea87-6097_4256"},
		{"none", "* OK [UIDNEXT 4] Ok\r\nA1 OK Completed\r\n", ""},
		{"the last one wins", "* OK [MAILBOXID (first)] Ok\r\n* OK [MAILBOXID (second)] Ok\r\n", "second"},
		{"not at a line start", "A1 SELECT \"* OK [MAILBOXID (forged)] x\"\r\n", ""},
		{"in our own command", "A1 EXAMINE foo\r\n", ""},
		{"bytes that are no objectid", "* OK [MAILBOXID (\xb6\x34\xd0)] Ok\r\n", ""},
		{"a space inside", "* OK [MAILBOXID (a b)] Ok\r\n", ""},
		{"empty", "* OK [MAILBOXID ()] Ok\r\n", ""},
		{"unterminated", "* OK [MAILBOXID (abc", ""},
		{"no closing bracket", "* OK [MAILBOXID (abc) Ok\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mailboxIDFrom([]byte(tc.data)); got != tc.want {
				t.Errorf("mailboxIDFrom(%q) = %q, want %q", tc.data, got, tc.want)
			}
		})
	}
}

func FuzzMailboxIDFrom(f *testing.F) {
	f.Add([]byte("* OK [MAILBOXID (abc-1_2)] Ok\r\n"))
	f.Add([]byte("* OK [MAILBOXID ("))
	f.Fuzz(func(t *testing.T, data []byte) {
		id := mailboxIDFrom(data)
		if id != "" && (len(id) > 255 || !objectID([]byte(id))) {
			t.Fatalf("mailboxIDFrom(%q) = %q: not an objectid", data, id)
		}
	})
}

func TestIDTapKeepsOnlyWhileArmed(t *testing.T) {
	var tap idTap
	_, _ = tap.Write([]byte("* OK [MAILBOXID (before)] Ok\r\n"))
	tap.arm()
	_, _ = tap.Write([]byte("* OK [MAILBOXID (during)] Ok\r\n"))
	if got := tap.take(); got != "during" {
		t.Errorf("armed tap saw %q, want during", got)
	}
	_, _ = tap.Write([]byte("* OK [MAILBOXID (after)] Ok\r\n"))
	if len(tap.buf) != 0 {
		t.Errorf("disarmed tap kept %q", tap.buf)
	}
	tap.arm()
	big := make([]byte, maxTapped+1)
	_, _ = tap.Write(big)
	if len(tap.buf) != 0 {
		t.Errorf("tap kept %d bytes, more than its bound %d", len(tap.buf), maxTapped)
	}
}
