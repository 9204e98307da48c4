package httpapi

import (
	"fmt"
	"net/http"
	"sync"
)

// streamCaps counts the event streams open on this instance, per user and per task, so that one
// user cannot hold thousands of them (each is a goroutine, a subscription and a re-read of its
// task every PollInterval).
type streamCaps struct {
	perUser, perTask int // <= 0: no cap

	mu    sync.Mutex
	users map[int64]int
	tasks map[string]int
}

func newStreamCaps(perUser, perTask int) *streamCaps {
	return &streamCaps{perUser: perUser, perTask: perTask, users: make(map[int64]int), tasks: make(map[string]int)}
}

// open counts one more stream of user on task, or says which cap it would exceed. A stream of
// no task (task ""; the change stream) counts against the user's cap only.
func (c *streamCaps) open(user int64, task string) (release func(), refused string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.perUser > 0 && c.users[user] >= c.perUser:
		return nil, fmt.Sprintf("too many event streams open: at most %d per user; close one first", c.perUser)
	case task != "" && c.perTask > 0 && c.tasks[task] >= c.perTask:
		return nil, fmt.Sprintf("too many event streams open on this task: at most %d; close one first", c.perTask)
	}
	c.users[user]++
	if task != "" {
		c.tasks[task]++
	}
	var once sync.Once
	return func() { once.Do(func() { c.close(user, task) }) }, ""
}

func (c *streamCaps) close(user int64, task string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users[user]--; c.users[user] <= 0 {
		delete(c.users, user)
	}
	if task == "" {
		return
	}
	if c.tasks[task]--; c.tasks[task] <= 0 {
		delete(c.tasks, task)
	}
}

// count is how many streams of user are open.
func (c *streamCaps) count(user int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users[user]
}

// capStreams admits a task's event stream within the caps, else answers 429. It runs after the
// access check, so the user is known; the task's id is the route's.
func (s *Server) capStreams(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		release, refused := s.streams.open(userFrom(r.Context()).ID, r.PathValue("id"))
		if refused != "" {
			w.Header().Set("Retry-After", "5")
			writeProblem(w, http.StatusTooManyRequests, refused)
			return
		}
		defer release()
		h(w, r)
	}
}
