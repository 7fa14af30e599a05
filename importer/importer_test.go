package importer_test

import (
	"archive/zip"
	"context"
	"database/sql"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/dogear-dev/dogear/importer"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/servertest"
)

type bookRow struct {
	Book           string  `json:"book"`
	ReadingMinutes float64 `json:"reading_minutes"`
	PagesRead      int64   `json:"pages_read"`
	Highlights     int64   `json:"highlights"`
	Finished       *string `json:"finished"`
}

func books(t *testing.T, url, reader string) map[string]bookRow {
	var out struct {
		Books []bookRow `json:"books"`
	}
	if s := servertest.GetJSON(t, url+"/v1/readers/"+reader+"/books", &out); s != 200 {
		t.Fatalf("books of %s: %d", reader, s)
	}
	m := map[string]bookRow{}
	for _, b := range out.Books {
		m[b.Book] = b
	}
	return m
}

func write(t *testing.T, path, content string) {
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kindleExport writes a Kindle export in the real formats: UTF-8 BOM, ISO-8601 UTC timestamps
// ending in Z, "Not Available" for missing values, and columns in an order of our choosing.
func kindleExport(t *testing.T, dir string) {
	write(t, filepath.Join(dir, "Kindle.Devices.ReadingSession", "Kindle.Devices.ReadingSession.csv"), "\ufeff"+
		"ASIN,start_timestamp,end_timestamp,purchased_marketplace,preferred_marketplace,device_family,device_serial_number,device_software_version,content_type,total_reading_millis,number_of_page_flips\n"+
		"B000FA5SHK,2026-10-01T20:00:00Z,2026-10-01T20:30:00Z,US,US,Kindle Paperwhite,G000XX,5.16,EBOK,1800000,42\n"+
		"B000FA5SHK,2026-10-02T20:00:00.000Z,2026-10-02T20:45:00.000Z,US,US,Kindle Paperwhite,G000XX,5.16,EBOK,Not Available,Not Available\n"+
		"Not Available,2026-10-03T20:00:00Z,2026-10-03T20:10:00Z,US,US,Kindle,G000XX,5.16,EBOK,600000,3\n"+
		"B07XYZ,Not Available,Not Available,US,US,Kindle,G000XX,5.16,EBOK,Not Available,0\n")
	write(t, filepath.Join(dir, "Kindle.Devices.kindleHighlightActions", "Kindle.Devices.kindleHighlightActions_v1.csv"), "\ufeff"+
		"action,created_timestamp,ASIN,customer_context,highlight_color,is_starred,show_options_after_highlighting,number_of_words_in_highlight,device_family,country,preferred_marketplace\n"+
		"Create,2026-10-01T20:10:00Z,B000FA5SHK,Not Available,yellow,false,true,12,Kindle,US,US\n"+
		"Delete,2026-10-01T20:11:00Z,B000FA5SHK,Not Available,Not Applicable,false,true,12,Kindle,US,US\n")
	write(t, filepath.Join(dir, "Kindle.ReadingInsights", "datasets", "Kindle.UserUniqueTitlesCompleted", "Kindle.UserUniqueTitlesCompleted.csv"), "\ufeff"+
		"product_name,asin_date_and_content_type,personal_document_id\n"+
		"Moby Dick,B000FA5SHK_2026-10-05_AUTOMATIC,Not Available\n"+
		"Broken,garbage,Not Available\n")
}

func TestKindleImport(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	dir := t.TempDir()
	kindleExport(t, dir)
	sink := &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}
	sum, err := importer.Kindle(context.Background(), dir, "ann", sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 8 || sum.Events != 4 || sum.Skipped["reading session without ASIN"] != 1 ||
		sum.Skipped["reading session with unreadable start_timestamp"] != 1 ||
		sum.Skipped["highlight action Delete (not a new highlight)"] != 1 ||
		sum.Skipped["completed title with unreadable asin_date_and_content_type"] != 1 {
		t.Fatalf("summary:\n%s", sum)
	}
	servertest.WaitProcessed(t, srv)
	moby := books(t, url, "ann")["B000FA5SHK"]
	// 30 minutes, plus 45 from end − start where total_reading_millis is Not Available.
	if moby.ReadingMinutes != 75 || moby.Highlights != 1 || moby.Finished == nil || *moby.Finished != "2026-10-05T12:00:00Z" {
		t.Fatalf("after import: %+v", moby)
	}

	// The same export as a zip, imported again: the same ids, so nothing changes.
	zipPath := filepath.Join(t.TempDir(), "Kindle.zip")
	zipDir(t, dir, zipPath)
	sum, err = importer.Kindle(context.Background(), zipPath, "ann", sink, nil)
	if err != nil || sum.Events != 4 {
		t.Fatalf("zip import: %v\n%s", err, sum)
	}
	servertest.WaitProcessed(t, srv)
	if again := books(t, url, "ann")["B000FA5SHK"]; again.ReadingMinutes != moby.ReadingMinutes || again.Highlights != moby.Highlights {
		t.Fatalf("re-import changed the insights: %+v, was %+v", again, moby)
	}
	var stats struct {
		Totals struct{ Events int } `json:"totals"`
	}
	servertest.GetJSON(t, url+"/v1/stats", &stats)
	if stats.Totals.Events != 4 {
		t.Fatalf("%d events after importing the same export twice, want 4", stats.Totals.Events)
	}
}

func zipDir(t *testing.T, dir, out string) {
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		w, _ := zw.Create(filepath.Join("Kindle", rel))
		b, _ := os.ReadFile(p)
		w.Write(b)
		return nil
	})
	zw.Close()
	f.Close()
}

// koreaderDB builds a statistics.sqlite3 with KOReader's schema (version 20221111) and its
// page_stat view, with layout changes so rescaling matters.
func koreaderDB(t *testing.T, path string) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{
		`CREATE TABLE book (id integer PRIMARY KEY autoincrement, title text, authors text, notes integer, last_open integer,
			highlights integer, pages integer, series text, language text, md5 text, total_read_time integer, total_read_pages integer)`,
		`CREATE TABLE page_stat_data (id_book integer, page integer NOT NULL DEFAULT 0, start_time integer NOT NULL DEFAULT 0,
			duration integer NOT NULL DEFAULT 0, total_pages integer NOT NULL DEFAULT 0, UNIQUE (id_book, page, start_time),
			FOREIGN KEY(id_book) REFERENCES book(id))`,
		`CREATE TABLE numbers (idx INTEGER PRIMARY KEY)`,
		`WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 1000) INSERT INTO numbers SELECT n FROM c`,
		`CREATE VIEW page_stat AS
			SELECT id_book, first_page + idx - 1 AS page, start_time, duration / (last_page - first_page + 1) AS duration
			FROM (SELECT id_book, page, total_pages, pages, start_time, duration,
					((page - 1) * pages) / total_pages + 1 AS first_page,
					max(((page - 1) * pages) / total_pages + 1, (page * pages) / total_pages) AS last_page
				FROM page_stat_data JOIN book ON book.id = id_book)
			JOIN numbers ON idx <= (last_page - first_page + 1)`,
		`INSERT INTO book (id, title, authors, pages, md5) VALUES (1, 'Dune', 'Frank Herbert', 412, 'aaaa1111'), (2, 'Emma', 'Jane Austen', 180, 'bbbb2222')`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	at := time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC).Unix()
	// Dune read on three layouts (412 pages now; 300 and 650 earlier), Emma on one, with rereads.
	for _, layout := range []struct{ book, total, from, to int }{{1, 300, 1, 120}, {1, 650, 200, 420}, {1, 412, 260, 300}, {2, 180, 1, 90}, {2, 180, 40, 60}} {
		for p := layout.from; p <= layout.to; p++ {
			at += int64(20 + rng.IntN(100))
			if _, err := db.Exec(`INSERT INTO page_stat_data VALUES (?, ?, ?, ?, ?)`, layout.book, p, at, 5+rng.IntN(170), layout.total); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Exec(`INSERT INTO page_stat_data VALUES (3, 1, ?, 10, 100)`, at+1)   // a book missing from book
	db.Exec(`INSERT INTO page_stat_data VALUES (2, 500, ?, 10, 180)`, at+2) // a page beyond the book, which KOReader counts
}

func TestKOReaderImportMatchesKOReaderStatistics(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	path := filepath.Join(t.TempDir(), "statistics.sqlite3")
	koreaderDB(t, path)
	sum, err := importer.KOReader(context.Background(), path, "bob", &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped["page_stat_data row of a book not in the book table"] != 1 {
		t.Fatalf("summary:\n%s", sum)
	}
	servertest.WaitProcessed(t, srv)
	got := books(t, url, "bob")

	// What KOReader's own statistics say, from its page_stat view over the same file.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, b := range []struct {
		id  int
		md5 string
	}{{1, "aaaa1111"}, {2, "bbbb2222"}} {
		var seconds, pages int64
		if err := db.QueryRow(`SELECT sum(duration), count(DISTINCT page) FROM page_stat WHERE id_book = ?`, b.id).Scan(&seconds, &pages); err != nil {
			t.Fatal(err)
		}
		g := got[b.md5]
		if g.PagesRead != pages || g.ReadingMinutes != math.Round(float64(seconds)/60*100)/100 {
			t.Fatalf("book %s: dogear %v min, %d pages; KOReader %d s, %d pages", b.md5, g.ReadingMinutes, g.PagesRead, seconds, pages)
		}
	}
	// Importing the same file again changes nothing.
	if _, err := importer.KOReader(context.Background(), path, "bob", &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.WaitProcessed(t, srv)
	if again := books(t, url, "bob"); again["aaaa1111"] != got["aaaa1111"] || again["bbbb2222"] != got["bbbb2222"] {
		t.Fatalf("re-import changed the books: %+v vs %+v", again, got)
	}
}

func TestKOReaderRefusesOtherDatabases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.sqlite3")
	db, _ := sql.Open("sqlite", path)
	db.Exec(`CREATE TABLE book (id integer)`)
	db.Close()
	_, err := importer.KOReader(context.Background(), path, "bob", &importer.HTTPSink{Client: ingest.Client{URL: "http://127.0.0.1:1"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no page_stat_data table") {
		t.Fatalf("err = %v", err)
	}
}
