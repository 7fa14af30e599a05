package importer

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"time"

	_ "modernc.org/sqlite" // pure Go: the binary needs no cgo

	"github.com/dogear-dev/dogear/internal/progress"
)

// KOReader imports KOReader's statistics database (statistics.sqlite3, schema 20221111) as the
// reader's page events. Each page_stat_data row covers one page of the layout at the time
// (total_pages pages); like KOReader's own page_stat view, it is rescaled to the book's current
// page count: pages first..last, where first = ((page-1)·pages)/total_pages + 1 and
// last = max(first, (page·pages)/total_pages), each with duration/(last-first+1) seconds
// (integer arithmetic, as SQLite does). So a book's reading time and distinct pages read in dogear
// equal what KOReader's statistics compute from the same file.
func KOReader(ctx context.Context, path, reader string, sink Sink, bar *progress.Bar) (*Summary, error) {
	db, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for _, table := range []string{"book", "page_stat_data"} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?", table).Scan(&n); err != nil {
			return nil, fmt.Errorf("%s is not a readable SQLite database: %w", path, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%s has no %s table: is it KOReader's statistics.sqlite3?", path, table)
		}
	}
	type book struct {
		md5, title string
		pages      int64
	}
	books := map[int64]book{}
	rows, err := db.QueryContext(ctx, "SELECT id, coalesce(title, ''), coalesce(md5, ''), coalesce(pages, 0) FROM book")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		var bk book
		if err := rows.Scan(&id, &bk.title, &bk.md5, &bk.pages); err != nil {
			rows.Close()
			return nil, err
		}
		books[id] = bk
	}
	rows.Close()
	var total int
	db.QueryRowContext(ctx, "SELECT count(*) FROM page_stat_data").Scan(&total)
	report := bar.Phase("page_stat_data")

	b := &builder{reader: reader, sink: sink, sum: newSummary(), now: time.Now()}
	rows, err = db.QueryContext(ctx, "SELECT id_book, page, start_time, duration, total_pages FROM page_stat_data ORDER BY id_book, start_time, page")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var idBook, page, start, duration, totalPages sql.NullInt64
		if err := rows.Scan(&idBook, &page, &start, &duration, &totalPages); err != nil {
			return b.sum, err
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
		case page.Int64 < 1:
			b.sum.skip("page_stat_data row with page < 1")
			continue
		}
		bookID := bk.md5
		if bookID == "" {
			bookID = "koreader-" + strconv.FormatInt(idBook.Int64, 10)
		}
		first := (page.Int64-1)*bk.pages/totalPages.Int64 + 1
		last := max(first, page.Int64*bk.pages/totalPages.Int64)
		per := duration.Int64 / (last - first + 1)
		at := time.Unix(start.Int64, 0).UTC().Format(time.RFC3339)
		for p := first; p <= last; p++ {
			fields := map[string]any{
				"id":   stableID("koreader", b.reader, bookID, strconv.FormatInt(start.Int64, 10), strconv.FormatInt(page.Int64, 10), strconv.FormatInt(p, 10)),
				"type": "page", "book": bookID, "time": at, "page": p, "duration_ms": per * 1000,
				"device": "koreader", "props": map[string]any{"source": "koreader-statistics", "title": bk.title},
			}
			// KOReader counts a page beyond the book's length too (a stale layout); so do we,
			// without the page count that would make it an impossible position.
			if p <= bk.pages {
				fields["pages"] = bk.pages
			}
			err := b.add(ctx, fields)
			if err != nil {
				return b.sum, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return b.sum, err
	}
	if report != nil {
		report(total, total)
	}
	bar.Done()
	if err := b.flush(ctx); err != nil {
		return b.sum, err
	}
	return b.sum, sink.Close()
}
