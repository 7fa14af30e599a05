// Package importer turns readers' existing data — Amazon's Kindle data export and KOReader's
// statistics database — into dogear events, with deterministic ids so re-imports change nothing.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/ingest"
)

// Summary is what an import read, sent and skipped (by reason).
type Summary struct {
	Rows       int            `json:"rows_read"`
	Events     int            `json:"events"`     // valid events built from the rows
	Duplicates int            `json:"duplicates"` // of those, how many the server already had
	Skipped    map[string]int `json:"rows_skipped"`
	TimeZone   string         `json:"time_zone"` // the zone the events carry, and why
	Titles     int            `json:"titles"`    // books named in the catalog (Kindle)
}

func newSummary() *Summary { return &Summary{Skipped: map[string]int{}} }

func (s *Summary) skip(reason string) { s.Skipped[reason]++ }

// String renders the summary for the terminal, reasons most frequent first.
func (s *Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows read, %d events: %d new, %d already stored", s.Rows, s.Events, s.Events-s.Duplicates, s.Duplicates)
	if s.TimeZone != "" {
		fmt.Fprintf(&b, "; time zone %s", s.TimeZone)
	}
	if s.Titles > 0 {
		fmt.Fprintf(&b, "; %d titles for the catalog", s.Titles)
	}
	reasons := make([]string, 0, len(s.Skipped))
	n := 0
	for r, c := range s.Skipped {
		reasons = append(reasons, r)
		n += c
	}
	sort.Slice(reasons, func(i, j int) bool { return s.Skipped[reasons[i]] > s.Skipped[reasons[j]] })
	fmt.Fprintf(&b, ", %d rows skipped", n)
	for _, r := range reasons {
		fmt.Fprintf(&b, "\n  %6d  %s", s.Skipped[r], r)
	}
	return b.String()
}

// Options are what every import is told besides its file.
type Options struct {
	Reader string
	// TZ is the IANA zone the events carry, which buckets the reader's days; "" for none.
	TZ string
}

// Sink receives an import's events, all of them at once: nothing is sent before the whole file
// was read and checked.
type Sink interface {
	// Write stores the events and says how many were already stored.
	Write(ctx context.Context, events []event.Event) (duplicates int, err error)
	Close() error
}

// builder validates each event with the same rules as POST /v1/events and keeps it until the
// whole source was read.
type builder struct {
	opts   Options
	sum    *Summary
	events []event.Event
	now    time.Time
}

func newBuilder(opts Options) *builder {
	return &builder{opts: opts, sum: newSummary(), now: time.Now()}
}

// add validates an event given as JSON fields; an invalid one is skipped with the reason.
func (b *builder) add(fields map[string]any) {
	fields["reader"] = b.opts.Reader
	if b.opts.TZ != "" {
		fields["tz"] = b.opts.TZ
	}
	raw, _ := json.Marshal(fields)
	e, ferr := event.Parse(raw, b.now)
	if ferr != nil {
		b.sum.skip("invalid event: " + ferr.Error())
		return
	}
	b.events = append(b.events, e)
}

// send writes every event to the sink, in batches, and closes it.
func (b *builder) send(ctx context.Context, sink Sink) (*Summary, error) {
	b.sum.Events = len(b.events)
	for i := 0; i < len(b.events); i += 5000 {
		dups, err := sink.Write(ctx, b.events[i:min(i+5000, len(b.events))])
		if err != nil {
			return b.sum, fmt.Errorf("%w (events are deduplicated by id: running the same import again completes it)", err)
		}
		b.sum.Duplicates += dups
	}
	return b.sum, sink.Close()
}

// stableID derives an event id from everything that identifies the source row, so importing the
// same file twice yields the same ids and dogear's dedup drops the second copy.
func stableID(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + "-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// FileSink writes events as NDJSON, to a temporary file that takes the file's name only when
// complete, so a failed import never leaves a cut file behind.
type FileSink struct {
	path string
	w    io.Writer
	tmp  *os.File
	b    *bufio.Writer
}

// NewFileSink writes to path ("-" for stdout).
func NewFileSink(path string) (*FileSink, error) {
	s := &FileSink{path: path, w: os.Stdout}
	if path != "-" {
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
		if err != nil {
			return nil, err
		}
		s.tmp, s.w = f, f
	}
	s.b = bufio.NewWriter(s.w)
	return s, nil
}

// Write implements Sink.
func (s *FileSink) Write(_ context.Context, events []event.Event) (int, error) {
	for i := range events {
		s.b.Write(events[i].Marshal())
		s.b.WriteByte('\n')
	}
	return 0, nil
}

// Close implements Sink: the file appears whole, or not at all.
func (s *FileSink) Close() error {
	err := s.b.Flush()
	if s.tmp == nil {
		return err
	}
	if err == nil {
		err = s.tmp.Sync()
	}
	if cerr := s.tmp.Close(); err == nil {
		err = cerr
	}
	name := s.tmp.Name()
	s.tmp = nil // closed: Abort has nothing left to drop
	if err == nil {
		return os.Rename(name, s.path)
	}
	os.Remove(name)
	return err
}

// Abort drops what was written, unless Close already ended the sink.
func (s *FileSink) Abort() {
	if s.tmp != nil {
		s.tmp.Close()
		os.Remove(s.tmp.Name())
	}
}

// HTTPSink posts events to a dogear ingest URL (ingest.Client: write key, retries).
type HTTPSink struct{ ingest.Client }

// Write implements Sink.
func (s *HTTPSink) Write(ctx context.Context, events []event.Event) (int, error) {
	var body bytes.Buffer
	for i := range events {
		body.Write(events[i].Marshal())
		body.WriteByte('\n')
	}
	resp, err := s.Send(ctx, body.Bytes())
	if err != nil {
		return 0, err
	}
	return resp.Duplicates, nil
}

// Close implements Sink.
func (s *HTTPSink) Close() error { return nil }
