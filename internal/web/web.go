// Package web is mailsync's browser UI: plain HTML, CSS and JavaScript modules embedded in the
// binary, so the UI works offline, needs no build step and loads nothing from elsewhere.
//
// The UI is a single page. Its routes live in the URL fragment (#/accounts, #/messages/7), so the
// server serves one document at "/" and its assets under /static/; everything the page shows
// comes from the JSON API (package httpapi) on the same origin.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentSecurityPolicy allows nothing but this origin: no inline script or style, no frames,
// no third-party anything. Styles set from scripts through the CSSOM (a progress bar's width)
// are not inline styles and stay allowed.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// asset is one embedded file, read once.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the UI: the page at "/" (and "/index.html"), its assets under "/static/".
// Every answer carries a strict Content-Security-Policy. Assets are revalidated on every load
// (Cache-Control: no-cache) against a content hash, so a new binary is never hidden behind a
// stale cache and an unchanged one costs a 304.
func Handler() http.Handler {
	assets, err := load(static)
	if err != nil {
		// The files are compiled in: failing here means the binary itself is broken.
		panic(fmt.Sprintf("web: %v", err))
	}
	return &handler{assets: assets}
}

func load(fsys fs.FS) (map[string]asset, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		assets["/"+p] = asset{body: body, contentType: ct,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load embedded assets: %w", err)
	}
	if _, ok := assets["/static/index.html"]; !ok {
		return nil, fmt.Errorf("load embedded assets: no static/index.html")
	}
	return assets, nil
}

type handler struct {
	assets map[string]asset
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("X-Frame-Options", "DENY")

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" || p == "/index.html" {
		p = "/static/index.html"
	}
	a, ok := h.assets[p]
	if !ok || strings.HasSuffix(p, "/") {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304, and serves HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
