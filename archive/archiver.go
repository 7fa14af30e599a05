// Package archive writes the event log, by hour, to Parquet files in an object store (a folder or
// S3), tracking what it archived so a crash neither loses nor duplicates rows.
package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/objstore"
)

// Row is one event in the archive; docs/archive.md documents the schema. Optional numbers are
// nullable so that "absent" and 0 stay different for analytics engines.
type Row struct {
	ID         string    `parquet:"id"`
	Type       string    `parquet:"type,dict"`
	Reader     string    `parquet:"reader"`
	Book       string    `parquet:"book,dict"`
	Time       time.Time `parquet:"time,timestamp(millisecond)"`
	Device     string    `parquet:"device,dict,optional"`
	Session    string    `parquet:"session,optional"`
	Position   *float64  `parquet:"position,optional"`
	Page       *int32    `parquet:"page,optional"`
	Pages      *int32    `parquet:"pages,optional"`
	DurationMS *int64    `parquet:"duration_ms,optional"`
	PageTurns  *int32    `parquet:"page_turns,optional"`
	Rating     *int32    `parquet:"rating,optional"`
	Text       string    `parquet:"text,optional"`
	TZ         string    `parquet:"tz,dict,optional"`
	Props      string    `parquet:"props,optional"` // JSON object
	Partition  int32     `parquet:"log_partition"`
	Offset     int64     `parquet:"log_offset"`
}

func rowOf(e *event.Event, p int, off int64) Row {
	r := Row{ID: e.ID, Type: string(e.Type), Reader: e.Reader, Book: e.Book, Time: e.Time, Device: e.Device,
		Session: e.Session, Position: e.Position, Text: e.Text, TZ: e.TZ, Partition: int32(p), Offset: off}
	i32 := func(v int) *int32 {
		if v == 0 {
			return nil
		}
		x := int32(v)
		return &x
	}
	r.Page, r.Pages, r.PageTurns, r.Rating = i32(e.Page), i32(e.Pages), i32(e.PageTurns), i32(e.Rating)
	if e.DurationMS != 0 {
		d := e.DurationMS
		r.DurationMS = &d
	}
	if len(e.Props) > 0 {
		b, _ := json.Marshal(e.Props)
		r.Props = string(b)
	}
	return r
}

// Encode writes rows as a zstd-compressed Parquet file.
func Encode(rows []Row) ([]byte, error) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[Row](&buf, parquet.Compression(&parquet.Zstd))
	if _, err := w.Write(rows); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode reads a Parquet file written by Encode.
func Decode(data []byte) ([]Row, error) {
	return parquet.Read[Row](bytes.NewReader(data), int64(len(data)))
}

// Archiver copies the log into hourly Parquet files: dt=YYYY-MM-DD/hour=HH/ by event time (UTC).
//
// Exactly once, across crashes: each partition is archived in chunks of ChunkSize offsets
// starting at its cursor. A chunk's rows go to one file per hour named after the partition and
// the chunk's first offset, and only after every file is written does the cursor move past the
// chunk. A crash in between means the chunk is written again on restart under the same names:
// the files are replaced, never added to, so no row is lost or duplicated.
type Archiver struct {
	Log       eventlog.Log
	Store     objstore.Store
	ChunkSize int
	Logger    *slog.Logger
}

func cursorKey(p int) string { return fmt.Sprintf("_cursors/p%05d", p) }

func fileKey(hour time.Time, p int, start int64) string {
	return fmt.Sprintf("dt=%s/hour=%02d/p%05d-o%012d.parquet", hour.Format("2006-01-02"), hour.Hour(), p, start)
}

func (a *Archiver) cursor(ctx context.Context, p int) (int64, error) {
	b, err := a.Store.Get(ctx, cursorKey(p))
	if errors.Is(err, objstore.ErrNotFound) {
		return 0, nil
	}
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("archive cursor of partition %d: %v", p, err)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// RunOnce archives everything in the log up to now, and returns how many rows it wrote.
func (a *Archiver) RunOnce(ctx context.Context) (int, error) {
	total := 0
	for p := 0; p < a.Log.Partitions(); p++ {
		for {
			n, more, err := a.chunk(ctx, p)
			total += n
			if err != nil {
				return total, err
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

// chunk archives one chunk of partition p; more reports whether another may follow.
func (a *Archiver) chunk(ctx context.Context, p int) (int, bool, error) {
	start, err := a.cursor(ctx, p)
	if err != nil {
		return 0, false, err
	}
	end, err := a.Log.End(p)
	if err != nil || start >= end {
		return 0, false, err
	}
	limit := start + int64(a.ChunkSize)
	byHour := map[time.Time][]Row{}
	next := start
	for next < min(end, limit) {
		recs, err := a.Log.Read(ctx, p, next, int(min(end, limit)-next))
		if err != nil {
			return 0, false, err
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			if rec.Offset >= limit {
				break
			}
			next = rec.Offset + 1
			e, err := event.Decode(rec.Value)
			if err != nil {
				a.Logger.Error("archive: skipping undecodable record", "partition", p, "offset", rec.Offset)
				continue
			}
			h := e.Time.UTC().Truncate(time.Hour)
			byHour[h] = append(byHour[h], rowOf(&e, p, rec.Offset))
		}
	}
	if next == start {
		return 0, false, nil
	}
	hours := make([]time.Time, 0, len(byHour))
	for h := range byHour {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
	rows := 0
	for _, h := range hours {
		data, err := Encode(byHour[h])
		if err != nil {
			return rows, false, err
		}
		if err := a.Store.Put(ctx, fileKey(h, p, start), data); err != nil {
			return rows, false, err
		}
		rows += len(byHour[h])
	}
	var cur [8]byte
	binary.BigEndian.PutUint64(cur[:], uint64(next))
	if err := a.Store.Put(ctx, cursorKey(p), cur[:]); err != nil {
		return rows, false, err
	}
	return rows, next < end, nil
}

// Run archives every interval until ctx ends, and then once more (for at most FinalPass), so a
// clean shutdown leaves the archive up to date with what was acknowledged.
func (a *Archiver) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := a.RunOnce(ctx); err != nil && ctx.Err() == nil {
			a.Logger.Error("archiving failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), FinalPass)
			defer cancel()
			if _, err := a.RunOnce(final); err != nil {
				a.Logger.Warn("the final archive pass at shutdown did not finish; the rest is archived at the next start", "err", err)
			}
			return
		case <-t.C:
		}
	}
}

// FinalPass bounds the archive pass at shutdown.
const FinalPass = 30 * time.Second

// EraseReader rewrites every archive file of the reader's partition without their rows (a file
// left empty is deleted). Cursors are untouched: archived offsets stay archived.
func (a *Archiver) EraseReader(ctx context.Context, reader string) (int, error) {
	suffix := fmt.Sprintf("/p%05d-", eventlog.PartitionFor(reader, a.Log.Partitions()))
	keys, err := a.Store.List(ctx, "dt=")
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, k := range keys {
		if !strings.Contains(k, suffix) {
			continue
		}
		data, err := a.Store.Get(ctx, k)
		if err != nil {
			return changed, err
		}
		rows, err := Decode(data)
		if err != nil {
			return changed, fmt.Errorf("%s: %w", k, err)
		}
		kept := rows[:0]
		for _, r := range rows {
			if r.Reader != reader {
				kept = append(kept, r)
			}
		}
		switch {
		case len(kept) == len(rows):
			continue
		case len(kept) == 0:
			err = a.Store.Delete(ctx, k)
		default:
			data, err = Encode(kept)
			if err == nil {
				err = a.Store.Put(ctx, k, data)
			}
		}
		if err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}
