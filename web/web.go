// Package web serves dogear's pages: each reader's own reading page at /readers/{id} and the
// platform dashboard at /, with their scripts, styles and charts embedded in the binary.
package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/klauspost/compress/gzhttp"
)

//go:embed dashboard.html reader.html assets
var files embed.FS

// csp keeps the pages to their own origin: no inline script, no external request of any kind.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"

// Register adds the pages and their assets to mux. The pages are static shells that call the
// JSON API with the token the viewer gives them, so serving them needs no credentials.
func Register(mux *http.ServeMux) {
	assets, _ := fs.Sub(files, "assets")
	mux.Handle("GET /assets/", gzhttp.GzipHandler(http.StripPrefix("/assets/", cached(http.FileServerFS(assets)))))
	mux.Handle("GET /{$}", page("dashboard.html"))
	mux.Handle("GET /readers/{id}", page("reader.html"))
	// Browsers ask for /favicon.ico whatever the page links; the icon is an SVG.
	mux.Handle("GET /favicon.ico", http.RedirectHandler("/assets/icon.svg", http.StatusMovedPermanently))
}

func page(name string) http.Handler {
	body, err := files.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return gzhttp.GzipHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer") // a reader's token may be in the page's fragment
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		w.Write(body)
	}))
}

// cached lets browsers keep assets for an hour: they change only with the binary.
func cached(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
