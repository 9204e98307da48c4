package dovecot

import "fmt"

// config is the whole dovecot.conf: nothing comes from /etc/dovecot, so the machine's own
// Dovecot setup, if any, changes nothing.
func (s *Server) config() string {
	mechs, oauthPassdb := "", ""
	if s.oauth != "" {
		mechs = " xoauth2 oauthbearer"
		oauthPassdb = fmt.Sprintf("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s\n}\n", s.oauthConfPath())
	}
	return fmt.Sprintf(`# Written by mailsync: a private, plain-text, loopback-only IMAP server.
protocols = imap
listen = 127.0.0.1
base_dir = %[1]s
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login%[7]s
auth_failure_delay = 0
mail_uid = %[3]d
mail_gid = %[4]d
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_location = maildir:~/Maildir
# Nobody's mail is at stake, and fsyncs would make tests and timings about the disk.
mail_fsync = never
protocol imap {
  mail_max_userip_connections = %[6]d
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[5]d
  }
  inet_listener imaps {
    port = 0
  }
}
# No growing delay after failed logins (auth penalty): tests fail logins on purpose.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
%[8]spassdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[2]s/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[2]s/passwd
}
`, s.runDir, s.dir, s.uid, s.gid, s.port, s.conns, mechs, oauthPassdb)
}

// oauthConfig is the oauth2 passdb's settings: every token is introspected (no local
// validation, no cache), so a revoked one is refused at the next login.
func (s *Server) oauthConfig() string {
	return fmt.Sprintf(`introspection_mode = post
introspection_url = %s
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
`, s.oauth)
}
