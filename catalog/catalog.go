// Package catalog holds book metadata (titles, authors, year, covers) imported from CSV, so that
// recommendations show real books and readers with no history still get catalog-based picks.
package catalog

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dogear-dev/dogear/internal/atomicfile"
)

// Book is one catalog entry.
type Book struct {
	ID            string   `json:"id"`
	Title         string   `json:"title"`
	Authors       []string `json:"authors,omitempty"`
	Year          int      `json:"year,omitempty"`
	Language      string   `json:"language,omitempty"`
	ISBN          string   `json:"isbn,omitempty"`
	Cover         string   `json:"cover_url,omitempty"`
	AverageRating float64  `json:"average_rating,omitempty"`
	Ratings       int64    `json:"ratings_count,omitempty"`
}

// Catalog is the set of known books, read-only once loaded.
type Catalog struct {
	books    map[string]*Book
	byAuthor map[string][]string // author -> book ids, most rated first
	popular  []string            // book ids by a damped average rating, best first
	byTitle  map[string]string   // folded title -> book id (the most rated book with that title)
}

// New indexes books.
func New(books []Book) *Catalog {
	c := &Catalog{books: map[string]*Book{}, byAuthor: map[string][]string{}, byTitle: map[string]string{}}
	for i := range books {
		b := &books[i]
		c.books[b.ID] = b
		if b.ISBN != "" {
			if _, taken := c.books[b.ISBN]; !taken {
				c.books[b.ISBN] = b // events may name a book by ISBN-10 (= its ASIN on Kindle)
			}
		}
		c.popular = append(c.popular, b.ID)
		for _, a := range b.Authors {
			c.byAuthor[a] = append(c.byAuthor[a], b.ID)
		}
	}
	// A damped mean (an average pulled towards 3.5 by 1000 phantom ratings) ranks a 4.4 with two
	// million ratings above a 4.9 with ten.
	score := func(id string) float64 {
		b := c.books[id]
		return (b.AverageRating*float64(b.Ratings) + 3.5*1000) / (float64(b.Ratings) + 1000)
	}
	sort.SliceStable(c.popular, func(i, j int) bool { return score(c.popular[i]) > score(c.popular[j]) })
	for _, id := range c.popular {
		b := c.books[id]
		for _, t := range []string{foldTitle(b.Title), foldTitle(stripSeries(b.Title))} {
			if _, taken := c.byTitle[t]; !taken && t != "" {
				c.byTitle[t] = id
			}
		}
	}
	for a, ids := range c.byAuthor {
		sort.SliceStable(ids, func(i, j int) bool { return c.books[ids[i]].Ratings > c.books[ids[j]].Ratings })
		c.byAuthor[a] = ids
	}
	return c
}

// Book returns the entry for an id or ISBN.
func (c *Catalog) Book(id string) (*Book, bool) {
	if c == nil {
		return nil, false
	}
	b, ok := c.books[id]
	return b, ok
}

// FindTitle finds a book by its title, ignoring case, spacing and a trailing series note such
// as "(The Hunger Games, #1)".
func (c *Catalog) FindTitle(title string) (string, bool) {
	if c == nil {
		return "", false
	}
	for _, t := range []string{foldTitle(title), foldTitle(stripSeries(title))} {
		if id, ok := c.byTitle[t]; ok {
			return id, true
		}
	}
	return "", false
}

func foldTitle(t string) string { return strings.Join(strings.Fields(strings.ToLower(t)), " ") }

func stripSeries(t string) string {
	if i := strings.LastIndex(t, " ("); i > 0 && strings.HasSuffix(t, ")") {
		return t[:i]
	}
	return t
}

// Title is the book's title, or its id when the catalog does not know it.
func (c *Catalog) Title(id string) string {
	if b, ok := c.Book(id); ok && b.Title != "" {
		return b.Title
	}
	return id
}

// Popular lists catalog books, best-rated with many ratings first.
func (c *Catalog) Popular() []string {
	if c == nil {
		return nil
	}
	return c.popular
}

// ByAuthor lists an author's books, most rated first.
func (c *Catalog) ByAuthor(author string) []string {
	if c == nil {
		return nil
	}
	return c.byAuthor[author]
}

// Len is the number of books.
func (c *Catalog) Len() int {
	if c == nil {
		return 0
	}
	return len(c.popular)
}

// Report says what an import read and skipped, by reason.
type Report struct {
	Rows    int            `json:"rows"`
	Books   int            `json:"books"`
	Skipped map[string]int `json:"skipped"`
}

// ReadGoodbooks reads a goodbooks-10k style books.csv by header name (column order does not
// matter). Rows without a book_id or title are skipped and counted, never fatal.
func ReadGoodbooks(r io.Reader) ([]Book, Report, error) {
	rep := Report{Skipped: map[string]int{}}
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, rep, fmt.Errorf("reading the header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimPrefix(strings.TrimSpace(h), "\ufeff")] = i
	}
	for _, need := range []string{"book_id", "title"} {
		if _, ok := col[need]; !ok {
			return nil, rep, fmt.Errorf("header has no %q column (have %s)", need, strings.Join(header, ","))
		}
	}
	get := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	var books []Book
	seen := map[string]bool{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		rep.Rows++
		if err != nil {
			rep.Skipped["malformed CSV row"]++
			continue
		}
		b := Book{ID: get(rec, "book_id"), Title: get(rec, "title"), Language: get(rec, "language_code"), Cover: get(rec, "image_url")}
		switch {
		case b.ID == "":
			rep.Skipped["no book_id"]++
			continue
		case b.Title == "":
			rep.Skipped["no title"]++
			continue
		case seen[b.ID]:
			rep.Skipped["duplicate book_id"]++
			continue
		}
		seen[b.ID] = true
		for _, a := range strings.Split(get(rec, "authors"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				b.Authors = append(b.Authors, a)
			}
		}
		if y, err := strconv.ParseFloat(get(rec, "original_publication_year"), 64); err == nil && !math.IsNaN(y) {
			b.Year = int(y)
		}
		if isbn := get(rec, "isbn"); isbn != "" && len(isbn) <= 10 {
			// Spreadsheets drop ISBN-10's leading zeros; restore them.
			b.ISBN = strings.Repeat("0", 10-len(isbn)) + isbn
		}
		b.AverageRating, _ = strconv.ParseFloat(get(rec, "average_rating"), 64)
		b.Ratings, _ = strconv.ParseInt(get(rec, "ratings_count"), 10, 64)
		books = append(books, b)
	}
	rep.Books = len(books)
	return books, rep, nil
}

// FileName is the catalog's file in a data directory: JSON lines, one book each.
const FileName = "catalog.jsonl"

// Save writes books to the data directory atomically (a crash leaves the old catalog or the new).
func Save(dataDir string, books []Book) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range books {
		if err := enc.Encode(&books[i]); err != nil {
			return err
		}
	}
	return atomicfile.Write(filepath.Join(dataDir, FileName), buf.Bytes(), 0o644)
}

// Load reads the catalog of a data directory; a directory without one has an empty catalog.
func Load(dataDir string) (*Catalog, error) {
	f, err := os.Open(filepath.Join(dataDir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return New(nil), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var books []Book
	dec := json.NewDecoder(bufio.NewReader(f))
	for line := 1; ; line++ {
		var b Book
		if err := dec.Decode(&b); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", FileName, line, err)
		}
		books = append(books, b)
	}
	return New(books), nil
}
