package main

import (
	"net/http"
	"testing"
	"time"

	"mailsync/internal/store/storetest"
)

// TestMetricsOnTheirOwnAddress runs `mailsync serve --metrics-addr`: the metrics are served
// there, behind the token from the environment, and not on the API's address.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	t.Setenv("MAILSYNC_METRICS_TOKEN", "scrape-me")
	startServer(t, "--db", storetest.DSN(t, "sqlite"), "--data-dir", t.TempDir(),
		"serve", "--addr", addr, "--metrics-addr", metricsAddr, "--http-idle-timeout", "5s")
	apiClient{base: "http://" + addr}.waitReady(t)

	get := func(url, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		what, url, token string
		want             int
	}{
		{"the metrics address with the token", "http://" + metricsAddr + "/metrics", "scrape-me", 200},
		{"the metrics address without it", "http://" + metricsAddr + "/metrics", "", 401},
		{"the metrics address, another path", "http://" + metricsAddr + "/api/me", "scrape-me", 404},
		{"the API's address", "http://" + addr + "/metrics", "scrape-me", 404},
	} {
		if got := get(c.url, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}
}
