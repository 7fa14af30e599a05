package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/dogear-dev/dogear/catalog"
)

// Server is a running dogear that imports talk to besides sending events: its catalog and what
// it knows of a reader. Token is an admin token when the server requires auth.
type Server struct {
	Base  string // http://host:port
	Token string
}

// ServerOf is the server an ingest URL (http://host:port/v1/events) belongs to.
func ServerOf(ingestURL, token string) Server {
	return Server{Base: strings.TrimSuffix(strings.TrimSuffix(ingestURL, "/"), "/v1/events"), Token: token}
}

// ErrNoServer: nothing listens at the server's address.
var ErrNoServer = errors.New("no dogear server is listening there")

func (s Server) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.Base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: %w", s.Base, ErrNoServer)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<20)) // a catalog of a million books fits
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s%s: status %d: %.300s", method, s.Base, path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// CatalogResult is what the server did with a catalog upload.
type CatalogResult struct {
	Books    int `json:"books"`
	Added    int `json:"added"`
	Replaced int `json:"replaced"`
}

// PostCatalog merges books into the server's catalog, in use at once (POST /v1/catalog). With
// replace unset, books the catalog has are kept.
func (s Server) PostCatalog(ctx context.Context, books []catalog.Book, replace bool) (CatalogResult, error) {
	body, _ := json.Marshal(books)
	var res CatalogResult
	err := s.do(ctx, http.MethodPost, fmt.Sprintf("/v1/catalog?replace=%t", replace), body, &res)
	return res, err
}

// Catalog lists the server's books (GET /v1/catalog).
func (s Server) Catalog(ctx context.Context) ([]catalog.Book, error) {
	var res struct {
		Books []catalog.Book `json:"books"`
	}
	err := s.do(ctx, http.MethodGet, "/v1/catalog", nil, &res)
	return res.Books, err
}

// ReaderZone is the time zone the server holds for the reader ("" when it has none, or no events
// of theirs).
func (s Server) ReaderZone(ctx context.Context, reader string) (string, error) {
	var ins struct {
		TZ string `json:"time_zone"`
	}
	err := s.do(ctx, http.MethodGet, "/v1/readers/"+url.PathEscape(reader)+"/insights?days=1", nil, &ins)
	if err != nil && strings.Contains(err.Error(), "status 404") {
		return "", nil
	}
	return ins.TZ, err
}
