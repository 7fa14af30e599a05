package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/server"
)

var potter = []catalog.Book{
	{ID: "3", Title: "Harry Potter and the Sorcerer's Stone (Harry Potter, #1)", Authors: []string{"J.K. Rowling"}, ISBN: "0439554934", AverageRating: 4.44, Ratings: 4_602_479},
	{ID: "1", Title: "The Hunger Games (The Hunger Games, #1)", Authors: []string{"Suzanne Collins"}, ISBN: "0439023483", AverageRating: 4.34, Ratings: 4_780_653},
	{ID: "5", Title: "The Great Gatsby", Authors: []string{"F. Scott Fitzgerald"}, ISBN: "0743273567", AverageRating: 3.89, Ratings: 2_683_664},
}

func postCatalog(t *testing.T, url string, books []catalog.Book) {
	t.Helper()
	b, _ := json.Marshal(books)
	resp, err := http.Post(url+"/v1/catalog", "application/json", strings.NewReader(string(b)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /v1/catalog: %v %v", err, resp.Status)
	}
	resp.Body.Close()
}

// A book named by its ISBN-10 or ISBN-13 (with hyphens, as people write them) is the catalog's
// book: folded into it, and never recommended to the reader who is reading it, whether the
// catalog was loaded before the events or after them (loaded through the API, no restart).
func TestISBNIsTheCatalogBook(t *testing.T) {
	for _, order := range []string{"catalog first", "events first"} {
		t.Run(order, func(t *testing.T) {
			srv, url := start(t, func(c *server.Config) {})
			events := `{"id":"h1","type":"progress","reader":"ann","book":"0439554934","time":"2026-11-20T10:00:00Z","position":0.6}
{"id":"h2","type":"progress","reader":"bob","book":"978-0-439-55493-0","time":"2026-11-20T10:00:00Z","position":0.2}`
			if order == "catalog first" {
				postCatalog(t, url, potter)
			}
			if r := post(t, url, []byte(events), nil); r.status != 200 {
				t.Fatalf("events: %d %v", r.status, r.body)
			}
			waitProcessed(t, srv)
			if order == "events first" {
				postCatalog(t, url, potter)
			} else {
				var stats struct {
					Readers int `json:"readers_started"`
				}
				if get(t, url+"/v1/books/3/stats", &stats); stats.Readers != 2 {
					t.Fatalf("ISBN-10 and ISBN-13 events are not folded into book 3: %+v", stats)
				}
			}
			for _, reader := range []string{"ann", "bob"} {
				var recs struct {
					Items []struct {
						Book  string `json:"book"`
						Title string `json:"title"`
					} `json:"items"`
				}
				get(t, url+"/v1/readers/"+reader+"/recommendations?n=10", &recs)
				if len(recs.Items) == 0 {
					t.Fatalf("%s: no recommendations at all: the test would prove nothing", reader)
				}
				for _, it := range recs.Items {
					if it.Book == "3" || strings.HasPrefix(it.Title, "Harry Potter") {
						t.Fatalf("%s is reading the book by its ISBN and is recommended it: %+v", reader, recs.Items)
					}
				}
			}
		})
	}
}
