package importer_test

import (
	"archive/zip"
	"context"
	"database/sql"
	"math"
	"math/rand/v2"
	"net/http"
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
	sum, _, err := importer.Kindle(context.Background(), dir, importer.Options{Reader: "ann"}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 8 || sum.Events != 4 || sum.Duplicates != 0 || sum.Skipped["reading session without ASIN"] != 1 ||
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
	sum, _, err = importer.Kindle(context.Background(), zipPath, importer.Options{Reader: "ann"}, sink, nil)
	if err != nil || sum.Events != 4 || sum.Duplicates != 4 || !strings.Contains(sum.String(), "0 new, 4 already stored") {
		t.Fatalf("zip import, a repeat of the first: %v\n%s", err, sum)
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
	// Page 0, as real files hold: on a layout of the book's own length, and of another; and a
	// book read only on page 0.
	db.Exec(`INSERT INTO page_stat_data VALUES (1, 0, ?, 95, 412)`, at+3)
	db.Exec(`INSERT INTO page_stat_data VALUES (1, 0, ?, 41, 650)`, at+4)
	db.Exec(`INSERT INTO book (id, title, authors, pages, md5) VALUES (4, 'Ulysses', 'James Joyce', 730, 'cccc3333')`)
	db.Exec(`INSERT INTO page_stat_data VALUES (4, 0, ?, 300, 730)`, at+5)
}

func TestKOReaderImportMatchesKOReaderStatistics(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	path := filepath.Join(t.TempDir(), "statistics.sqlite3")
	koreaderDB(t, path)
	sink := &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}
	sum, err := importer.KOReader(context.Background(), path, importer.Options{Reader: "bob"}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped["page_stat_data row of a book not in the book table"] != 1 {
		t.Fatalf("summary:\n%s", sum)
	}
	servertest.WaitProcessed(t, srv)
	got := books(t, url, "bob")

	// What KOReader holds in the same file: every second of page_stat_data, and the distinct
	// pages of its page_stat view (page 0, which names no page, aside).
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, b := range []struct {
		id  int
		md5 string
	}{{1, "aaaa1111"}, {2, "bbbb2222"}, {4, "cccc3333"}} {
		var seconds, pages int64
		if err := db.QueryRow(`SELECT sum(duration) FROM page_stat_data WHERE id_book = ?`, b.id).Scan(&seconds); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`SELECT count(DISTINCT page) FROM page_stat WHERE id_book = ? AND page >= 1`, b.id).Scan(&pages); err != nil {
			t.Fatal(err)
		}
		g := got[b.md5]
		if g.PagesRead != pages || g.ReadingMinutes != math.Round(float64(seconds)/60*100)/100 {
			t.Fatalf("book %s: dogear %v min, %d pages; KOReader %d s, %d pages", b.md5, g.ReadingMinutes, g.PagesRead, seconds, pages)
		}
	}
	// And per day, every second too.
	daily, err := db.Query(`SELECT date(start_time, 'unixepoch'), sum(duration) FROM page_stat_data WHERE id_book IN (1, 2, 4) GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	perDay := map[string]float64{}
	for daily.Next() {
		var day string
		var seconds float64
		daily.Scan(&day, &seconds)
		perDay[day] = seconds / 60
	}
	daily.Close()
	var ins struct {
		Days []struct {
			Date    string  `json:"date"`
			Minutes float64 `json:"minutes"`
		} `json:"reading_by_day"`
	}
	servertest.GetJSON(t, url+"/v1/readers/bob/insights?days=30&as_of=2026-09-20T00:00:00Z", &ins)
	for _, d := range ins.Days {
		if math.Abs(d.Minutes-perDay[d.Date]) > 0.01 {
			t.Fatalf("%s: dogear %v min, KOReader %v min", d.Date, d.Minutes, perDay[d.Date])
		}
		delete(perDay, d.Date)
	}
	if len(perDay) > 0 {
		t.Fatalf("days KOReader has and dogear does not show: %v", perDay)
	}
	// Importing the same file again changes nothing.
	if _, err := importer.KOReader(context.Background(), path, importer.Options{Reader: "bob"}, sink, nil); err != nil {
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
	_, err := importer.KOReader(context.Background(), path, importer.Options{Reader: "bob"}, &importer.HTTPSink{Client: ingest.Client{URL: "http://127.0.0.1:1"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no page_stat_data table") {
		t.Fatalf("err = %v", err)
	}
}

// A database with a damaged page imports nothing, names the file, and leaves no --out file.
func TestKOReaderDamagedFileImportsNothing(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	path := filepath.Join(t.TempDir(), "statistics.sqlite3")
	koreaderDB(t, path)
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 8*4096 {
		t.Fatalf("fixture too small to damage a middle page: %d bytes, %v", len(b), err)
	}
	for i := 5 * 4096; i < 6*4096; i++ {
		b[i] = 0xA5
	}
	os.WriteFile(path, b, 0o644)

	_, err = importer.KOReader(context.Background(), path, importer.Options{Reader: "bob"}, &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("err = %v, want the file named and the damage said", err)
	}
	servertest.WaitProcessed(t, srv)
	var stats struct {
		Totals struct{ Events int } `json:"totals"`
	}
	servertest.GetJSON(t, url+"/v1/stats", &stats)
	if stats.Totals.Events != 0 {
		t.Fatalf("%d events were sent from a damaged file", stats.Totals.Events)
	}
	out := filepath.Join(t.TempDir(), "events.ndjson")
	sink, _ := importer.NewFileSink(out)
	if _, err := importer.KOReader(context.Background(), path, importer.Options{Reader: "bob"}, sink, nil); err == nil {
		t.Fatal("no error writing a damaged file to --out")
	}
	sink.Abort()
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("a failed import left %v behind", entries[0].Name())
	}
}

// --tz puts imported history in the reader's zone: a session at 23:30 UTC is on the next day in
// Berlin.
func TestImportTimeZone(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "Kindle.Devices.ReadingSession", "Kindle.Devices.ReadingSession.csv"),
		"ASIN,start_timestamp,end_timestamp,total_reading_millis\nB000FA5SHK,2026-10-01T23:30:00Z,2026-10-01T23:50:00Z,1200000\n")
	sink := &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}
	if _, _, err := importer.Kindle(context.Background(), dir, importer.Options{Reader: "ann", TZ: "Europe/Berlin"}, sink, nil); err != nil {
		t.Fatal(err)
	}
	servertest.WaitProcessed(t, srv)
	var ins struct {
		TZ   string `json:"time_zone"`
		Days []struct {
			Date    string  `json:"date"`
			Minutes float64 `json:"minutes"`
		} `json:"reading_by_day"`
	}
	servertest.GetJSON(t, url+"/v1/readers/ann/insights?days=3&as_of=2026-10-03T12:00:00Z", &ins)
	if ins.TZ != "Europe/Berlin" || len(ins.Days) != 3 || ins.Days[1].Date != "2026-10-02" || ins.Days[1].Minutes != 20 {
		t.Fatalf("insights after an import with --tz Europe/Berlin: %+v", ins)
	}
	zone, err := importer.ServerOf(url+"/v1/events", "").ReaderZone(context.Background(), "ann")
	if err != nil || zone != "Europe/Berlin" {
		t.Fatalf("the zone a later import defaults to: %q %v", zone, err)
	}
}

// A Kindle export's Digital Items.csv names its books: the titles reach the catalog of the
// running server and the recommendations response, with no restart.
func TestKindleTitlesReachRecommendations(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	dir := t.TempDir()
	kindleExport(t, dir)
	write(t, filepath.Join(dir, "Your Orders", "Digital-Ordering.1", "Digital Items.csv"), "\ufeff"+
		"ASIN,ProductName,OrderId,Title,Authors\n"+
		"B000FA5SHK,Moby Dick,D01-1,Moby-Dick; or The Whale,Herman Melville\n"+
		"B0OTHER001,The Old Man and the Sea,D01-2,The Old Man and the Sea,Ernest Hemingway\n")
	sink := &importer.HTTPSink{Client: ingest.Client{URL: url + "/v1/events"}}
	sum, titles, err := importer.Kindle(context.Background(), dir, importer.Options{Reader: "ann"}, sink, nil)
	if err != nil || sum.Titles != 2 || len(titles) != 2 {
		t.Fatalf("titles: %v %+v\n%s", err, titles, sum)
	}
	res, err := importer.ServerOf(url+"/v1/events", "").PostCatalog(context.Background(), titles, false)
	if err != nil || res.Added != 2 {
		t.Fatalf("catalog: %+v %v", res, err)
	}
	// Another reader read both books, so ann is recommended the one she has not read.
	var b strings.Builder
	for i, book := range []string{"B000FA5SHK", "B0OTHER001"} {
		b.WriteString(`{"id":"o` + string(rune('0'+i)) + `","type":"finish","reader":"cy","book":"` + book + `","time":"2026-10-01T10:00:00Z"}` + "\n")
	}
	resp, err := http.Post(url+"/v1/events", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("other reader: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	servertest.WaitProcessed(t, srv)
	if _, err := srv.Trainer().TrainOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	var recs struct {
		Items []struct {
			Book  string `json:"book"`
			Title string `json:"title"`
		} `json:"items"`
	}
	servertest.GetJSON(t, url+"/v1/readers/ann/recommendations?n=5", &recs)
	for _, it := range recs.Items {
		if it.Book == "B0OTHER001" && it.Title == "The Old Man and the Sea" {
			return
		}
	}
	t.Fatalf("the export's title is not in ann's recommendations: %+v", recs)
}
