package importer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // pure Go: the binary needs no cgo

	"github.com/dogear-dev/dogear/internal/progress"
)

// KOReader imports KOReader's statistics database (statistics.sqlite3, schema 20221111) as the
// reader's events. Each page_stat_data row covers one page of the layout at the time (total_pages
// pages); like KOReader's own page_stat view, it is rescaled to the book's current page count:
// pages first..last, where first = ((page-1)·pages)/total_pages + 1 and
// last = max(first, (page·pages)/total_pages) (integer division, as SQLite does), so the distinct
// pages read in dogear are the view's. Unlike the view, which gives each page duration/n whole
// seconds and drops the remainder, the row's time is split in milliseconds with nothing dropped,
// so a book's and a day's reading time equal page_stat_data's sums exactly. A row whose rescaled
// page is below 1 (page 0, which real files hold) becomes a session of its duration: KOReader
// counts its time, and it names no page.
//
// The file is checked and read whole before anything is sent: a damaged database imports nothing.
// Every error names the file.
func KOReader(ctx context.Context, path string, opts Options, sink Sink, bar *progress.Bar) (*Summary, error) {
	b := newBuilder(opts)
	if err := readKOReader(ctx, path, b, bar); err != nil {
		return b.sum, fmt.Errorf("%s: %w", path, err)
	}
	return b.send(ctx, sink)
}

func readKOReader(ctx context.Context, path string, b *builder, bar *progress.Bar) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := quickCheck(ctx, db); err != nil {
		return err
	}
	for _, table := range []string{"book", "page_stat_data"} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?", table).Scan(&n); err != nil {
			return fmt.Errorf("not a readable SQLite database: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("no %s table: is it KOReader's statistics.sqlite3?", table)
		}
	}
	type book struct {
		md5, title string
		pages      int64
	}
	books := map[int64]book{}
	rows, err := db.QueryContext(ctx, "SELECT id, coalesce(title, ''), coalesce(md5, ''), coalesce(pages, 0) FROM book")
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var bk book
		if err := rows.Scan(&id, &bk.title, &bk.md5, &bk.pages); err != nil {
			rows.Close()
			return err
		}
		books[id] = bk
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	var total int
	db.QueryRowContext(ctx, "SELECT count(*) FROM page_stat_data").Scan(&total)
	report := bar.Phase("page_stat_data")

	rows, err = db.QueryContext(ctx, "SELECT id_book, page, start_time, duration, total_pages FROM page_stat_data ORDER BY id_book, start_time, page")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var idBook, page, start, duration, totalPages sql.NullInt64
		if err := rows.Scan(&idBook, &page, &start, &duration, &totalPages); err != nil {
			return err
		}
		b.sum.Rows++
		if report != nil && b.sum.Rows%1000 == 0 {
			report(b.sum.Rows, total)
		}
		bk, ok := books[idBook.Int64]
		switch {
		case !ok:
			b.sum.skip("page_stat_data row of a book not in the book table")
			continue
		case !page.Valid || !start.Valid || !duration.Valid || !totalPages.Valid:
			b.sum.skip("page_stat_data row with a NULL column")
			continue
		case totalPages.Int64 <= 0 || bk.pages <= 0:
			b.sum.skip("page_stat_data row without a page count (total_pages or book.pages is 0)")
			continue
		case duration.Int64 <= 0:
			b.sum.skip("page_stat_data row of no time (duration 0)")
			continue
		}
		bookID := bk.md5
		if bookID == "" {
			bookID = "koreader-" + strconv.FormatInt(idBook.Int64, 10)
		}
		first := (page.Int64-1)*bk.pages/totalPages.Int64 + 1
		last := max(first, page.Int64*bk.pages/totalPages.Int64)
		at := time.Unix(start.Int64, 0).UTC().Format(time.RFC3339)
		props := map[string]any{"source": "koreader-statistics", "title": bk.title}
		id := func(p int64) string {
			return stableID("koreader", b.opts.Reader, bookID, strconv.FormatInt(start.Int64, 10), strconv.FormatInt(page.Int64, 10), strconv.FormatInt(p, 10))
		}
		if last < 1 {
			b.add(map[string]any{"id": id(last), "type": "session", "book": bookID, "time": at,
				"duration_ms": duration.Int64 * 1000, "device": "koreader", "props": props})
			continue
		}
		n := last - first + 1
		ms := duration.Int64 * 1000
		for p := first; p <= last; p++ {
			share := ms / n
			if p-first < ms%n { // the remainder, a millisecond to each of the first pages
				share++
			}
			fields := map[string]any{"id": id(p), "type": "page", "book": bookID, "time": at, "page": p,
				"duration_ms": share, "device": "koreader", "props": props}
			// KOReader counts a page beyond the book's length too (a stale layout); so do we,
			// without the page count that would make it an impossible position.
			if p <= bk.pages {
				fields["pages"] = bk.pages
			}
			b.add(fields)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if report != nil {
		report(total, total)
	}
	bar.Done()
	return nil
}

// quickCheck runs SQLite's own consistency check over the whole file, so that a damaged page is
// found before anything is sent rather than in the middle of the rows.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("the database is damaged (SQLite quick_check: %w); nothing was imported", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("the database is damaged (SQLite quick_check: %w); nothing was imported", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("the database is damaged (SQLite quick_check: %w); nothing was imported", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("the database is damaged (SQLite quick_check: %s); nothing was imported", strings.Join(problems[:min(3, len(problems))], "; "))
	}
	return nil
}
