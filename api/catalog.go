package api

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/dogear-dev/dogear/catalog"
)

// MaxCatalogBody bounds a catalog upload (goodbooks-10k's books.csv is 3 MB).
const MaxCatalogBody = 64 << 20

// RegisterCatalog adds GET /v1/catalog (every book) and POST /v1/catalog: books merged into the running server's catalog, saved
// to the data directory, and in use by the next request, with no restart. The body is a
// goodbooks-style CSV (Content-Type text/csv) or a JSON array of books; ?replace=false keeps the
// books the catalog has and only adds new ones (what imports' titles do).
//
// They are apart from Register because the catalog has one writer: the embedded process, whose
// data directory holds it. Distributed api roles read the catalog their data directory was given.
func (a *API) RegisterCatalog(mux *http.ServeMux) {
	cat := a.catalog
	mux.Handle("GET /v1/catalog", a.timed("catalog_list", func(r *http.Request) (any, error) {
		return map[string]any{"books": cat.Books()}, nil
	}))
	mux.Handle("POST /v1/catalog", a.timed("catalog", func(r *http.Request) (any, error) {
		replace := true
		if v := r.URL.Query().Get("replace"); v != "" {
			var err error
			if replace, err = strconv.ParseBool(v); err != nil {
				return nil, &badParam{"replace", "must be true or false"}
			}
		}
		body := http.MaxBytesReader(nil, r.Body, MaxCatalogBody)
		var books []catalog.Book
		report := catalog.Report{Skipped: map[string]int{}}
		ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch ctype {
		case "text/csv":
			var err error
			if books, report, err = catalog.ReadGoodbooks(body); err != nil {
				return nil, &badParam{"body", "CSV: " + err.Error()}
			}
		default:
			if err := json.NewDecoder(body).Decode(&books); err != nil && err != io.EOF {
				return nil, &badParam{"body", "want a JSON array of books ({\"id\",\"title\",\"authors\",...}) or text/csv: " + err.Error()}
			}
			for i, b := range books {
				if b.ID == "" || b.Title == "" {
					return nil, &badParam{fmt.Sprintf("[%d]", i), "every book needs an id and a title"}
				}
			}
			report.Rows, report.Books = len(books), len(books)
		}
		added, replaced, err := cat.Merge(books, replace)
		if err != nil {
			return nil, err
		}
		return map[string]any{"books": cat.Len(), "added": added, "replaced": replaced, "read": report}, nil
	}))
}
