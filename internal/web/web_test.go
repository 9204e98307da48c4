package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServes(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path string
		status       int
		contentType  string // prefix
		contains     string
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="/static/js/app.js">`},
		{"GET", "/index.html", 200, "text/html", "<title>mailsync</title>"},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/static/app.css", 200, "text/css", ".bar"},
		{"GET", "/static/js/app.js", 200, "text/javascript", "import"},
		{"GET", "/static/js/sync.js", 200, "text/javascript", "es.close()"},
		{"GET", "/static/", 404, "text/plain", ""},
		{"GET", "/static/js/nope.js", 404, "text/plain", ""},
		{"GET", "/accounts", 404, "text/plain", ""},
		{"GET", "/../web.go", 404, "text/plain", ""},
		{"POST", "/", 405, "text/plain", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp := serve(t, h, tt.method, tt.path)
			b := body(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %.200q", resp.StatusCode, tt.status, b)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s...", ct, tt.contentType)
			}
			if !strings.Contains(b, tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
}

func TestHandlerRevalidatesWithETag(t *testing.T) {
	h := Handler()
	first := serve(t, h, "GET", "/static/js/app.js")
	etag := first.Header.Get("ETag")
	if etag == "" || first.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q: want a content hash and no-cache", etag, first.Header.Get("Cache-Control"))
	}
	again := serve(t, h, "GET", "/static/js/app.js", "If-None-Match", etag)
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: status %d, want 304", again.StatusCode)
	}
	other := serve(t, h, "GET", "/static/app.css")
	if other.Header.Get("ETag") == etag {
		t.Fatal("two different files share an ETag")
	}
}

// The UI must work offline and under its own Content-Security-Policy: every module it imports
// is embedded, nothing is loaded from another origin, and no markup carries inline script or
// style.
func TestAssetsAreSelfContained(t *testing.T) {
	importRE := regexp.MustCompile(`(?m)^import\s.*?from\s+'([^']+)'|^import\s+'([^']+)'`)
	srcRE := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)
	remoteRE := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		text := string(data)
		if m := remoteRE.FindString(text); m != "" {
			t.Errorf("%s refers to another origin: %q", p, m)
		}
		switch {
		case strings.HasSuffix(p, ".js"):
			dir := p[:strings.LastIndex(p, "/")]
			for _, m := range importRE.FindAllStringSubmatch(text, -1) {
				spec := m[1] + m[2]
				if !strings.HasPrefix(spec, "./") {
					t.Errorf("%s imports %q: only relative imports of embedded modules", p, spec)
					continue
				}
				if _, err := fs.Stat(static, dir+"/"+strings.TrimPrefix(spec, "./")); err != nil {
					t.Errorf("%s imports %q, which is not embedded", p, spec)
				}
			}
			if strings.Contains(text, "innerHTML") || strings.Contains(text, "insertAdjacentHTML") {
				t.Errorf("%s parses strings as HTML; build elements and set text instead", p)
			}
		case strings.HasSuffix(p, ".html"):
			for _, m := range srcRE.FindAllStringSubmatch(text, -1) {
				if _, err := fs.Stat(static, "static"+strings.TrimPrefix(m[1], "/static")); err != nil {
					t.Errorf("%s refers to %q, which is not embedded", p, m[1])
				}
			}
			if regexp.MustCompile(`<script>|<style|\sstyle="|\son[a-z]+="`).MatchString(text) {
				t.Errorf("%s has inline script or style, which the Content-Security-Policy blocks", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
