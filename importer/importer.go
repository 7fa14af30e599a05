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
	"sort"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/ingest"
)

// Summary is what an import read, wrote and skipped (by reason).
type Summary struct {
	Rows    int            `json:"rows_read"`
	Events  int            `json:"events_written"`
	Skipped map[string]int `json:"rows_skipped"`
}

func newSummary() *Summary { return &Summary{Skipped: map[string]int{}} }

func (s *Summary) skip(reason string) { s.Skipped[reason]++ }

// String renders the summary for the terminal, reasons most frequent first.
func (s *Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows read, %d events written", s.Rows, s.Events)
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

// Sink receives imported events.
type Sink interface {
	Write(ctx context.Context, events []event.Event) error
	Close() error
}

// builder validates each event with the same rules as POST /v1/events before it reaches a sink,
// and batches them.
type builder struct {
	reader  string
	sink    Sink
	sum     *Summary
	pending []event.Event
	now     time.Time
}

// add validates an event given as JSON fields; an invalid one is skipped with the reason.
func (b *builder) add(ctx context.Context, fields map[string]any) error {
	fields["reader"] = b.reader
	raw, _ := json.Marshal(fields)
	e, ferr := event.Parse(raw, b.now)
	if ferr != nil {
		b.sum.skip("invalid event: " + ferr.Error())
		return nil
	}
	b.pending = append(b.pending, e)
	if len(b.pending) >= 5000 {
		return b.flush(ctx)
	}
	return nil
}

func (b *builder) flush(ctx context.Context) error {
	if len(b.pending) == 0 {
		return nil
	}
	if err := b.sink.Write(ctx, b.pending); err != nil {
		return err
	}
	b.sum.Events += len(b.pending)
	b.pending = b.pending[:0]
	return nil
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

// FileSink writes events as NDJSON.
type FileSink struct {
	w io.WriteCloser
	b *bufio.Writer
}

// NewFileSink writes to path ("-" for stdout).
func NewFileSink(path string) (*FileSink, error) {
	var w io.WriteCloser = os.Stdout
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		w = f
	}
	return &FileSink{w: w, b: bufio.NewWriter(w)}, nil
}

// Write implements Sink.
func (s *FileSink) Write(_ context.Context, events []event.Event) error {
	for i := range events {
		s.b.Write(events[i].Marshal())
		s.b.WriteByte('\n')
	}
	return nil
}

// Close implements Sink.
func (s *FileSink) Close() error {
	if err := s.b.Flush(); err != nil {
		return err
	}
	if s.w == os.Stdout {
		return nil
	}
	return s.w.Close()
}

// HTTPSink posts events to a dogear ingest URL (ingest.Client: write key, retries).
type HTTPSink struct{ ingest.Client }

// Write implements Sink.
func (s *HTTPSink) Write(ctx context.Context, events []event.Event) error {
	var body bytes.Buffer
	for i := range events {
		body.Write(events[i].Marshal())
		body.WriteByte('\n')
	}
	_, err := s.Send(ctx, body.Bytes())
	return err
}

// Close implements Sink.
func (s *HTTPSink) Close() error { return nil }
