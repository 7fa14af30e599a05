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
	"sync"
	"sync/atomic"

	"github.com/dogear-dev/dogear/internal/atomicfile"
)

// Book is one catalog entry.
type Book struct {
	ID            string   `json:"id"`
	Title         string   `json:"title"`
	Authors       []string `json:"authors,omitempty"`
	Year          int      `json:"year,omitempty"`
	Language      string   `json:"language,omitempty"`
	ISBN          string   `json:"isbn,omitempty"` // ISBN-10, which is also the Kindle ASIN of a printed book
	ISBN13        string   `json:"isbn13,omitempty"`
	Cover         string   `json:"cover_url,omitempty"`
	AverageRating float64  `json:"average_rating,omitempty"`
	Ratings       int64    `json:"ratings_count,omitempty"`
}

// Catalog is the set of known books. Merge changes it while the server runs; every reader sees
// one whole version or the next, never a part.
type Catalog struct {
	idx atomic.Pointer[index]
	mu  sync.Mutex // serialises Merge
	dir string     // data directory Merge saves to; "" keeps it in memory
}

// index is one version of the catalog, read-only once built.
type index struct {
	list     []Book
	books    map[string]*Book    // by id, and by every alias (ISBN-10, ISBN-13) not itself an id
	byAuthor map[string][]string // author -> book ids, most rated first
	popular  []string            // book ids by a damped average rating, best first
	byTitle  map[string]string   // folded title -> book id (the most rated book with that title)
}

// New indexes books.
func New(books []Book) *Catalog {
	c := &Catalog{}
	c.idx.Store(build(books))
	return c
}

func (c *Catalog) index() *index {
	if c == nil {
		return build(nil)
	}
	return c.idx.Load()
}

func build(books []Book) *index {
	x := &index{list: books, books: map[string]*Book{}, byAuthor: map[string][]string{}, byTitle: map[string]string{}}
	for i := range books {
		b := &books[i]
		x.books[b.ID] = b
		x.popular = append(x.popular, b.ID)
		for _, a := range b.Authors {
			x.byAuthor[a] = append(x.byAuthor[a], b.ID)
		}
	}
	// Events may name a book by ISBN-10 (= its ASIN on Kindle) or ISBN-13: aliases of its id,
	// unless another book has that id.
	for i := range books {
		for _, alias := range books[i].aliases() {
			if _, taken := x.books[alias]; !taken {
				x.books[alias] = &books[i]
			}
		}
	}
	// A damped mean (an average pulled towards 3.5 by 1000 phantom ratings) ranks a 4.4 with two
	// million ratings above a 4.9 with ten.
	score := func(id string) float64 {
		b := x.books[id]
		return (b.AverageRating*float64(b.Ratings) + 3.5*1000) / (float64(b.Ratings) + 1000)
	}
	sort.SliceStable(x.popular, func(i, j int) bool { return score(x.popular[i]) > score(x.popular[j]) })
	for _, id := range x.popular {
		b := x.books[id]
		for _, t := range []string{foldTitle(b.Title), foldTitle(stripSeries(b.Title))} {
			if _, taken := x.byTitle[t]; !taken && t != "" {
				x.byTitle[t] = id
			}
		}
	}
	for a, ids := range x.byAuthor {
		sort.SliceStable(ids, func(i, j int) bool { return x.books[ids[i]].Ratings > x.books[ids[j]].Ratings })
		x.byAuthor[a] = ids
	}
	return x
}

// aliases are the other names events may give the book.
func (b *Book) aliases() []string {
	var out []string
	isbn13 := b.ISBN13
	if isbn13 == "" {
		isbn13 = ISBN13(b.ISBN)
	}
	for _, a := range []string{b.ISBN, isbn13} {
		if a != "" && a != b.ID {
			out = append(out, a)
		}
	}
	return out
}

// Book returns the entry for an id or an alias (ISBN-10, ISBN-13, written with or without
// hyphens and spaces).
func (c *Catalog) Book(id string) (*Book, bool) {
	x := c.index()
	if b, ok := x.books[id]; ok {
		return b, true
	}
	if n := normalizeISBN(id); n != id {
		b, ok := x.books[n]
		return b, ok
	}
	return nil, false
}

// Canonical is the catalog id of the book an event names by id or alias, or the name itself when
// the catalog does not know it. Processors fold events under it, so that a book named by its
// ISBN and by its catalog id is one book.
func (c *Catalog) Canonical(id string) string {
	if b, ok := c.Book(id); ok {
		return b.ID
	}
	return id
}

// ISBN13 is the ISBN-13 of an ISBN-10 (978, its first nine digits, a new check digit), or ""
// when isbn10 is not one.
func ISBN13(isbn10 string) string {
	isbn10 = normalizeISBN(isbn10)
	if len(isbn10) != 10 || strings.Trim(isbn10[:9], "0123456789") != "" {
		return ""
	}
	digits := "978" + isbn10[:9]
	sum := 0
	for i, d := range digits {
		w := 1
		if i%2 == 1 {
			w = 3
		}
		sum += int(d-'0') * w
	}
	return digits + strconv.Itoa((10-sum%10)%10)
}

// isbnSeparators drops the separators ISBNs are printed with; built once.
var isbnSeparators = strings.NewReplacer("-", "", " ", "")

// normalizeISBN drops the hyphens and spaces ISBNs are often written with, and upper-cases the
// check digit X. Only a string of those and digits can be an ISBN; any other is returned as it
// is, without an allocation, since every folded event's book id passes through here.
func normalizeISBN(s string) string {
	separated := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '-' || c == ' ' || c == 'x':
			separated = true
		case c >= '0' && c <= '9' || c == 'X':
		default:
			return s
		}
	}
	if !separated {
		return s
	}
	return strings.ToUpper(isbnSeparators.Replace(s))
}

// Merge adds books to the catalog, saves it when it has a data directory, and makes it the one
// every reader sees. A book whose id the catalog has is replaced when replace is set and kept
// otherwise; one whose id is another book's alias is left out when replace is not set (a Kindle
// ASIN that is an ISBN the catalog knows already names that book).
func (c *Catalog) Merge(books []Book, replace bool) (added, replaced int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.index()
	pos := make(map[string]int, len(cur.list))
	list := append(make([]Book, 0, len(cur.list)+len(books)), cur.list...)
	for i, b := range list {
		pos[b.ID] = i
	}
	for _, b := range books {
		i, known := pos[b.ID]
		_, alias := cur.books[b.ID]
		switch {
		case known && replace:
			list[i] = b
			replaced++
		case known || alias:
		default:
			pos[b.ID] = len(list)
			list = append(list, b)
			added++
		}
	}
	if added+replaced == 0 {
		return 0, 0, nil
	}
	if c.dir != "" {
		if err := Save(c.dir, list); err != nil {
			return 0, 0, err
		}
	}
	c.idx.Store(build(list))
	return added, replaced, nil
}

// Books lists every book.
func (c *Catalog) Books() []Book { return c.index().list }

// FindTitle finds a book by its title, ignoring case, spacing and a trailing series note such
// as "(The Hunger Games, #1)".
func (c *Catalog) FindTitle(title string) (string, bool) {
	x := c.index()
	for _, t := range []string{foldTitle(title), foldTitle(stripSeries(title))} {
		if id, ok := x.byTitle[t]; ok {
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
func (c *Catalog) Popular() []string { return c.index().popular }

// ByAuthor lists an author's books, most rated first.
func (c *Catalog) ByAuthor(author string) []string { return c.index().byAuthor[author] }

// Len is the number of books.
func (c *Catalog) Len() int { return len(c.index().list) }

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
		// goodbooks writes isbn13 as a float (9.78043902348e+12) that has lost its last digits;
		// an ISBN-13 written whole is taken, else it is derived from the ISBN-10.
		if isbn13 := get(rec, "isbn13"); len(isbn13) == 13 && strings.Trim(isbn13, "0123456789") == "" {
			b.ISBN13 = isbn13
		} else {
			b.ISBN13 = ISBN13(b.ISBN)
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
// Merges are saved there.
func Load(dataDir string) (*Catalog, error) {
	books, err := readFile(dataDir)
	if err != nil {
		return nil, err
	}
	c := New(books)
	c.dir = dataDir
	return c, nil
}

func readFile(dataDir string) ([]Book, error) {
	f, err := os.Open(filepath.Join(dataDir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
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
	return books, nil
}
