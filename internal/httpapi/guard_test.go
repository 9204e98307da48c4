package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"mailsync/internal/store/storetest"
)

// TestInventedMethodsLeaveMetricsSmall: 2,000 requests with invented 50 kB methods once grew
// /metrics by 100 MB, for good; they now count as method "other". The methods here are 2 kB
// and there are 500 of them (1 MB of series before the fix), which keeps the test quick: any
// number above zero grew the output.
func TestInventedMethodsLeaveMetricsSmall(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		before := len(e.request(user{}, "GET", "/metrics", nil).want(t, 200).body)

		const requests, size = 500, 2000
		var wg sync.WaitGroup
		errs := make(chan error, requests)
		for w := range 8 {
			wg.Go(func() {
				padding := strings.Repeat("X", size-8)
				for i := w; i < requests; i += 8 {
					method := fmt.Sprintf("M%07d", i) + padding // each one distinct
					req, err := http.NewRequest(method, e.ts.URL+"/api/accounts", nil)
					if err != nil {
						errs <- err
						return
					}
					resp, err := e.ts.Client().Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode < 400 {
						errs <- fmt.Errorf("an invented method answered %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		after := e.request(user{}, "GET", "/metrics", nil).want(t, 200).body
		if grown := len(after) - before; grown > 4096 {
			t.Fatalf("/metrics grew by %d bytes after %d invented methods (from %d)", grown, requests, before)
		}
		if !strings.Contains(string(after), `method="other"`) {
			t.Fatal(`/metrics does not count the invented methods as "other"`)
		}
	})
}
