package imapconn

// Test knobs: they make a Conn behave as if the server lacked a capability, to reach the paths
// real servers rarely take.

// WithoutMove makes c move messages as a server without MOVE needs (COPY, STORE, UID EXPUNGE).
func WithoutMove(c *Conn) { c.caps.Move = false }

// WithoutUIDPlus makes c act as if the server had no UIDPLUS.
func WithoutUIDPlus(c *Conn) { c.caps.UIDPlus = false }
