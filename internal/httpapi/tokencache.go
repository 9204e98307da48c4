package httpapi

import (
	"sync"
	"time"

	"mailsync/internal/store"
)

// tokenCache remembers, for a short time, which user a token hash belongs to. Every API request
// carries a token, and looking it up cost as much as the request's own work; with the cache a
// polled task costs one database read. The price is that a change made elsewhere (a token
// revoked by the CLI or another instance, a user's changed admin flag) takes effect up to the TTL
// later; a revocation through this server's API forgets the entries at once. Only successful
// lookups are cached.
type tokenCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]tokenEntry
}

type tokenEntry struct {
	user    store.User
	expires time.Time
}

// maxTokenEntries bounds the cache; when full it starts over, which only costs lookups.
const maxTokenEntries = 10000

func newTokenCache(ttl time.Duration) *tokenCache {
	return &tokenCache{ttl: ttl, now: time.Now, entries: make(map[string]tokenEntry)}
}

func (c *tokenCache) get(hash string) (store.User, bool) {
	if c.ttl <= 0 {
		return store.User{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || !c.now().Before(e.expires) {
		return store.User{}, false
	}
	return e.user, true
}

func (c *tokenCache) put(hash string, u store.User) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxTokenEntries {
		clear(c.entries)
	}
	c.entries[hash] = tokenEntry{user: u, expires: c.now().Add(c.ttl)}
}

// forget drops one token's entry: it was revoked through this server.
func (c *tokenCache) forget(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, hash)
}

// forgetUser drops every entry of the user: their tokens were revoked, their password changed or
// the user deleted.
func (c *tokenCache) forgetUser(userID int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.entries {
		if e.user.ID == userID {
			delete(c.entries, h)
		}
	}
}
