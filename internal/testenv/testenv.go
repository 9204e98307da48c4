// Package testenv decides what a test does when a service it needs (Dovecot, Cyrus, PostgreSQL,
// Chromium, root) is missing on this machine: skip with one line naming the service, what is
// missing and how to get it, so that `go test ./...` passes quickly on a machine with only Go;
// or, under MAILSYNC_TEST_STRICT=1 (set by scripts/test.sh, the full run), fail with the same
// line, so that the full run proves everything and a skip cannot hide a broken provisioning.
//
// It never installs, starts or creates anything: host changes belong to scripts/provision.sh.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// StrictEnv names the variable that turns every Skip into a failure.
const StrictEnv = "MAILSYNC_TEST_STRICT"

// SlowEnv names the variable that runs the slow tier (see Slow).
const SlowEnv = "MAILSYNC_TEST_SLOW"

// Strict reports whether MAILSYNC_TEST_STRICT asks for every test to run: any true value of
// strconv.ParseBool ("1", "true", ...).
func Strict() bool { return flag(StrictEnv) }

func flag(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}

// Skip skips tb because service is unavailable, with the one line "service: reason"; under
// MAILSYNC_TEST_STRICT it fails tb with that line instead. reason should say what is missing
// and how to provide it.
func Skip(tb testing.TB, service, reason string) {
	tb.Helper()
	line := service + ": " + reason
	if Strict() {
		tb.Fatalf("%s (%s=1: the full run skips nothing)", line, StrictEnv)
	}
	tb.Skip(line)
}

// Skipf is Skip with a formatted reason.
func Skipf(tb testing.TB, service, format string, args ...any) {
	tb.Helper()
	Skip(tb, service, fmt.Sprintf(format, args...))
}

// Root skips tb (see Skip) unless the process runs as root: what needs it, for example mounting
// a size-limited tmpfs, is named by what.
func Root(tb testing.TB, what string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skipf(tb, "root", "needed to %s; run the tests as root (make test-all in a container)", what)
	}
}

// Slow skips tb unless MAILSYNC_TEST_SLOW or MAILSYNC_TEST_STRICT is set: the tier of tests
// that need no service but take minutes (a subprocess memory measurement), which would keep
// `go test ./...` from being quick. The full run (scripts/test.sh, strict) always runs them.
func Slow(tb testing.TB, why string) {
	tb.Helper()
	if !Strict() && !flag(SlowEnv) {
		tb.Skipf("slow: %s (set %s=1, or make test-all)", why, SlowEnv)
	}
}

// ChromiumEnv names the variable that points the browser tests at a Chromium binary.
const ChromiumEnv = "MAILSYNC_CHROMIUM"

// chromiumNames are the names a Chromium goes by on PATH, tried in order.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium returns the Chromium the browser tests drive: MAILSYNC_CHROMIUM when set (a path or a
// name on PATH), else the first of chromium, chromium-browser, google-chrome found on PATH. It
// skips tb (see Skip) when there is none.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if v := os.Getenv(ChromiumEnv); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			Skipf(tb, "chromium", "%s=%s: %v", ChromiumEnv, v, err)
		}
		return p
	}
	for _, name := range chromiumNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Skipf(tb, "chromium", "not found on PATH (chromium, chromium-browser, google-chrome) nor in %s; run scripts/provision.sh or make test-all", ChromiumEnv)
	return ""
}
