package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadGoodbooksByHeaderName(t *testing.T) {
	// Columns reordered, a BOM, a 9-digit ISBN (leading zero lost), a row without title, a
	// duplicate id and a malformed row.
	csv := "\ufefftitle,book_id,authors,isbn,average_rating,ratings_count,original_publication_year\n" +
		"The Hobbit,7,J.R.R. Tolkien,618260307,4.25,2071616,1937.0\n" +
		"Untitled,8,Someone,,,,\n" +
		",9,Nobody,,,,\n" +
		"Again,7,X,,,,\n" +
		"\"broken,10\n"
	books, rep, err := ReadGoodbooks(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if len(books) != 2 || rep.Skipped["no title"] != 1 || rep.Skipped["duplicate book_id"] != 1 || rep.Skipped["malformed CSV row"] != 1 {
		t.Fatalf("books %+v report %+v", books, rep)
	}
	h := books[0]
	if h.ID != "7" || h.Title != "The Hobbit" || h.ISBN != "0618260307" || h.Year != 1937 || h.Authors[0] != "J.R.R. Tolkien" || h.Ratings != 2071616 {
		t.Fatalf("hobbit %+v", h)
	}
	c := New(books)
	if b, ok := c.Book("0618260307"); !ok || b.ID != "7" {
		t.Fatal("lookup by ISBN failed")
	}
	if c.Popular()[0] != "7" || c.ByAuthor("J.R.R. Tolkien")[0] != "7" {
		t.Fatalf("popular %v", c.Popular())
	}
	dir := t.TempDir()
	if err := Save(dir, books); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil || back.Len() != 2 || back.Title("7") != "The Hobbit" || back.Title("unknown") != "unknown" {
		t.Fatalf("load: %v %d", err, back.Len())
	}
}

func TestRealGoodbooksCatalog(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "data", "goodbooks", "books.csv")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("goodbooks data not beside the checkout: %v", err)
	}
	defer f.Close()
	books, rep, err := ReadGoodbooks(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(books) != 10000 || rep.Rows != 10000 {
		t.Fatalf("%d books from %d rows (%v); the data README says 10,000", len(books), rep.Rows, rep.Skipped)
	}
	c := New(books)
	if b, _ := c.Book("1"); b.Title != "The Hunger Games (The Hunger Games, #1)" || b.Authors[0] != "Suzanne Collins" {
		t.Fatalf("book 1: %+v", b)
	}
	if len(c.ByAuthor("J.K. Rowling")) < 7 {
		t.Fatalf("Rowling has %d books", len(c.ByAuthor("J.K. Rowling")))
	}
}

func TestMergeKeepsOrReplacesAndSaves(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if added, _, err := c.Merge([]Book{{ID: "3", Title: "Harry Potter", ISBN: "0439554934"}}, true); err != nil || added != 1 {
		t.Fatalf("first merge: %d %v", added, err)
	}
	// An import's titles keep what the catalog has: by id, and by alias (a printed book's ASIN
	// is its ISBN-10).
	added, replaced, err := c.Merge([]Book{{ID: "3", Title: "HP (Kindle)"}, {ID: "0439554934", Title: "HP by ASIN"}, {ID: "B0NEW", Title: "New"}}, false)
	if err != nil || added != 1 || replaced != 0 || c.Title("3") != "Harry Potter" || c.Canonical("0439554934") != "3" {
		t.Fatalf("merge without replace: +%d ~%d %v; title %q", added, replaced, err, c.Title("3"))
	}
	if _, replaced, _ := c.Merge([]Book{{ID: "3", Title: "Harry Potter and the Sorcerer's Stone", ISBN: "0439554934"}}, true); replaced != 1 || c.Title("3") != "Harry Potter and the Sorcerer's Stone" {
		t.Fatalf("merge with replace: %d, %q", replaced, c.Title("3"))
	}
	for _, name := range []string{"978-0-439-55493-0", "9780439554930", "043955493-4"} {
		if c.Canonical(name) != "3" {
			t.Errorf("%s is not book 3", name)
		}
	}
	again, err := Load(dir)
	if err != nil || again.Len() != 2 || again.Title("B0NEW") != "New" || again.Canonical("9780439554930") != "3" {
		t.Fatalf("the merged catalog was not saved: %d books, %v", again.Len(), err)
	}
}
