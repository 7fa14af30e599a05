package importer

import (
	"archive/zip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/internal/progress"
)

// The files of Amazon's "Request your data" Kindle export that dogear reads, by base name.
const (
	kindleSessions   = "Kindle.Devices.ReadingSession.csv"
	kindleHighlights = "Kindle.Devices.kindleHighlightActions_v1.csv"
	kindleCompleted  = "Kindle.UserUniqueTitlesCompleted.csv"
	kindleWhisper    = "whispersync.csv"
	// Under Your Orders/Digital-Ordering.1/: every digital item bought, by ASIN, with its title.
	kindleDigitalItems = "Digital Items.csv"
)

// exportFile is one CSV of the export, found in a folder or a zip.
type exportFile struct {
	name string
	size int64
	open func() (io.ReadCloser, error)
}

// findKindleFiles lists the export's CSVs we know, wherever they sit in the tree.
func findKindleFiles(path string) (map[string]exportFile, func() error, error) {
	wanted := map[string]bool{kindleSessions: true, kindleHighlights: true, kindleCompleted: true, kindleWhisper: true, kindleDigitalItems: true}
	found := map[string]exportFile{}
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if info.IsDir() {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !wanted[d.Name()] {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			found[d.Name()] = exportFile{name: p, size: fi.Size(), open: func() (io.ReadCloser, error) { return os.Open(p) }}
			return nil
		})
		return found, func() error { return nil }, err
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is neither a folder nor a zip: %w", path, err)
	}
	for _, f := range zr.File {
		if wanted[filepath.Base(f.Name)] {
			found[filepath.Base(f.Name)] = exportFile{name: f.Name, size: int64(f.UncompressedSize64), open: f.Open}
		}
	}
	return found, zr.Close, nil
}

// notAvailable is how the export writes a missing value.
func notAvailable(s string) bool {
	switch strings.TrimSpace(s) {
	case "", "Not Available", "Not Applicable", "N/A":
		return true
	}
	return false
}

// csvRows calls fn with each row as a map from header name to value (order-independent), after a
// UTF-8 BOM. A malformed row is counted, never fatal.
func csvRows(r io.Reader, sum *Summary, fn func(row map[string]string) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	for i := range header {
		header[i] = strings.TrimSpace(strings.TrimPrefix(header[i], "\ufeff"))
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		sum.Rows++
		if err != nil {
			sum.skip("malformed CSV row")
			continue
		}
		row := make(map[string]string, len(header))
		for i, h := range header {
			if i < len(rec) {
				row[h] = strings.TrimSpace(rec[i])
			}
		}
		if err := fn(row); err != nil {
			return err
		}
	}
}

// parseTime reads the export's ISO-8601 UTC timestamps.
func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// Kindle imports a Kindle data export (folder or .zip) as the reader's events, and returns the
// titles (and authors) that Digital Items.csv gives its ASINs, for the catalog. The export is read
// whole before anything is sent; every error names the file.
func Kindle(ctx context.Context, path string, opts Options, sink Sink, bar *progress.Bar) (*Summary, []catalog.Book, error) {
	b := newBuilder(opts)
	titles, err := readKindle(path, b, bar)
	if err != nil {
		return b.sum, nil, fmt.Errorf("%s: %w", path, err)
	}
	b.sum.Titles = len(titles)
	sum, err := b.send(ctx, sink)
	return sum, titles, err
}

func readKindle(path string, b *builder, bar *progress.Bar) ([]catalog.Book, error) {
	files, closeFiles, err := findKindleFiles(path)
	if err != nil {
		return nil, err
	}
	defer closeFiles()
	if len(files) == 0 {
		return nil, fmt.Errorf("holds none of %s, %s, %s: is it a Kindle data export?", kindleSessions, kindleHighlights, kindleCompleted)
	}
	titles := map[string]catalog.Book{}
	handlers := []struct {
		file string
		row  func(row map[string]string)
	}{
		{kindleSessions, b.kindleSession},
		{kindleHighlights, b.kindleHighlight},
		{kindleCompleted, b.kindleCompleted},
		{kindleWhisper, b.kindleWhispersync},
		{kindleDigitalItems, func(row map[string]string) { kindleTitle(row, titles, b.sum) }},
	}
	for _, h := range handlers {
		f, ok := files[h.file]
		if !ok {
			continue
		}
		rc, err := f.open()
		if err != nil {
			return nil, err
		}
		cr := &countingReader{r: rc, report: bar.Phase(h.file), total: f.size}
		err = csvRows(cr, b.sum, func(row map[string]string) error { h.row(row); return nil })
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	bar.Done()
	out := make([]catalog.Book, 0, len(titles))
	for _, t := range titles {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// kindleTitle reads one row of Digital Items.csv: an ASIN with its title and, where the export
// has them, authors. Column names vary between exports, so each is looked up by a few names.
func kindleTitle(row map[string]string, titles map[string]catalog.Book, sum *Summary) {
	pick := func(names ...string) string {
		for _, n := range names {
			for k, v := range row {
				if strings.EqualFold(strings.ReplaceAll(k, " ", ""), n) && !notAvailable(v) {
					return v
				}
			}
		}
		return ""
	}
	asin, title := pick("ASIN"), pick("Title", "ProductName")
	if asin == "" || title == "" {
		sum.skip("digital item without ASIN or title")
		return
	}
	book := catalog.Book{ID: asin, Title: title}
	for _, a := range strings.Split(pick("Authors", "Author", "Contributors", "Creator"), ";") {
		if a = strings.TrimSpace(a); a != "" {
			book.Authors = append(book.Authors, a)
		}
	}
	titles[asin] = book
}

func (b *builder) kindleSession(row map[string]string) {
	asin := row["ASIN"]
	if notAvailable(asin) {
		b.sum.skip("reading session without ASIN")
		return
	}
	start, ok := parseTime(row["start_timestamp"])
	if !ok {
		b.sum.skip("reading session with unreadable start_timestamp")
		return
	}
	ms, err := strconv.ParseInt(row["total_reading_millis"], 10, 64)
	if err != nil || ms <= 0 {
		end, ok := parseTime(row["end_timestamp"])
		if !ok || !end.After(start) {
			b.sum.skip("reading session without duration (total_reading_millis and end_timestamp missing)")
			return
		}
		ms = end.Sub(start).Milliseconds()
	}
	fields := map[string]any{
		"id":   stableID("kindle", b.opts.Reader, "session", asin, row["start_timestamp"], row["end_timestamp"], row["device_serial_number"]),
		"type": "session", "book": asin, "time": start.Format(time.RFC3339Nano), "duration_ms": ms,
		"props": map[string]any{"source": "kindle-export", "content_type": row["content_type"]},
	}
	if flips, err := strconv.Atoi(row["number_of_page_flips"]); err == nil && flips >= 0 {
		fields["page_turns"] = flips
	}
	if d := row["device_family"]; !notAvailable(d) {
		fields["device"] = d
	}
	b.add(fields)
}

func (b *builder) kindleHighlight(row map[string]string) {
	asin := row["ASIN"]
	if notAvailable(asin) {
		b.sum.skip("highlight without ASIN")
		return
	}
	action := strings.ToLower(row["action"])
	if strings.Contains(action, "delete") || strings.Contains(action, "remove") {
		b.sum.skip("highlight action " + row["action"] + " (not a new highlight)")
		return
	}
	at, ok := parseTime(row["created_timestamp"])
	if !ok {
		b.sum.skip("highlight with unreadable created_timestamp")
		return
	}
	props := map[string]any{"source": "kindle-export", "kindle_action": row["action"]}
	if w, err := strconv.Atoi(row["number_of_words_in_highlight"]); err == nil {
		props["words"] = w
	}
	if c := row["highlight_color"]; !notAvailable(c) {
		props["color"] = c
	}
	// The export does not include the highlighted text: the highlight counts, without a passage.
	b.add(map[string]any{
		"id":   stableID("kindle", b.opts.Reader, "highlight", asin, row["created_timestamp"], row["action"], row["number_of_words_in_highlight"]),
		"type": "highlight", "book": asin, "time": at.Format(time.RFC3339Nano), "props": props,
	})
}

// kindleCompleted reads rows like asin_date_and_content_type = "B00ABC1234_2025-01-01_AUTOMATIC".
func (b *builder) kindleCompleted(row map[string]string) {
	key := row["asin_date_and_content_type"]
	parts := strings.Split(key, "_")
	if len(parts) < 3 {
		b.sum.skip("completed title with unreadable asin_date_and_content_type")
		return
	}
	asin := strings.Join(parts[:len(parts)-2], "_")
	day, err := time.Parse("2006-01-02", parts[len(parts)-2])
	if err != nil || notAvailable(asin) {
		b.sum.skip("completed title with unreadable asin_date_and_content_type")
		return
	}
	// Only the date is known; noon UTC keeps it on that calendar date in most time zones.
	b.add(map[string]any{
		"id": stableID("kindle", b.opts.Reader, "finish", key), "type": "finish", "book": asin,
		"time":  day.Add(12 * time.Hour).Format(time.RFC3339),
		"props": map[string]any{"source": "kindle-export", "completion": parts[len(parts)-1], "title": row["product_name"]},
	})
}

// kindleWhispersync reads Whispersync annotations: highlights and notes become highlights,
// bookmarks bookmarks; reading-position records carry no location dogear can use.
func (b *builder) kindleWhispersync(row map[string]string) {
	asin := row["ASIN"]
	kind := strings.ToLower(row["Annotation Type"])
	var typ string
	switch {
	case strings.Contains(kind, "highlight") || strings.Contains(kind, "note"):
		typ = "highlight"
	case strings.Contains(kind, "bookmark"):
		typ = "bookmark"
	default:
		b.sum.skip("whispersync " + row["Annotation Type"] + " (no location to import)")
		return
	}
	if notAvailable(asin) {
		b.sum.skip("whispersync annotation without ASIN")
		return
	}
	when := row["Customer modified date on device"]
	if notAvailable(when) {
		when = row["Creation Date"]
	}
	at, ok := parseTime(when)
	if !ok {
		b.sum.skip("whispersync annotation with unreadable date")
		return
	}
	b.add(map[string]any{
		"id":   stableID("kindle", b.opts.Reader, "whispersync", asin, kind, when),
		"type": typ, "book": asin, "time": at.Format(time.RFC3339Nano),
		"props": map[string]any{"source": "kindle-export", "annotation_type": row["Annotation Type"]},
	})
}

// countingReader reports how much of a file has been read.
type countingReader struct {
	r      io.Reader
	n      int64
	total  int64
	report func(done, total int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.report != nil {
		c.report(int(c.n), int(c.total))
	}
	return n, err
}
