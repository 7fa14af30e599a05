package insights

import (
	"bytes"
	"encoding/binary"

	"github.com/dogear-dev/dogear/state"
)

// Erase removes everything state holds about a reader — their records, their share of book
// statistics, trending and activity, and their part of the partition's counters — so that state
// equals what folding the log without that reader gives. It must run in the goroutine that owns
// the reader's partition, between batches, and that partition's Folder must then Forget what it
// holds. It reports whether state held anything of the reader.
func Erase(src state.Reader, w *state.Writes, partition int, reader string) (bool, error) {
	f := NewFolder(state.Overlay{Base: src, Writes: w}, partition)
	counts, err := f.partitionCounts()
	if err != nil {
		return false, err
	}
	prefix := readerPrefix(reader)
	found := false
	days := map[string]int64{} // active days: their key's string and their day number
	var meta ReaderMeta
	var books []ReaderBook
	err = state.ScanPrefix(src, prefix, func(k, v []byte) error {
		found = true
		w.Delete(k)
		rest := k[len(prefix):]
		switch {
		case len(rest) == 1 && rest[0] == 'm':
			if err := decodeRecord(v, &meta); err != nil {
				return err
			}
			counts.Events -= meta.Events
			counts.Readers--
		case bytes.HasPrefix(rest, []byte("b"+sep)):
			var rb ReaderBook
			if err := decodeRecord(v, &rb); err != nil {
				return err
			}
			books = append(books, rb)
		case bytes.HasPrefix(rest, []byte("d"+sep)) && len(rest) == 10:
			var d daySlots
			if err := decodeRecord(v, &d); err != nil {
				return err
			}
			for _, s := range d.slots {
				counts.ReadingEvents -= s.Events
			}
			ms := int64(binary.BigEndian.Uint64(rest[2:])) * 86_400_000
			days[dayString(ms)] = dayNumber(ms)
		case bytes.HasPrefix(rest, []byte("t"+sep)) && len(rest) == 10:
			var s Slot
			if err := decodeRecord(v, &s); err != nil {
				return err
			}
			counts.ReadingEvents -= s.Events
			ms := int64(binary.BigEndian.Uint64(rest[2:])) * slotSeconds * 1000
			days[dayString(ms)] = dayNumber(ms)
		}
		return nil
	})
	if err != nil || !found {
		return false, err
	}
	for _, rb := range books {
		counts.ReaderBooks--
		w.Delete(bookReaderKey(rb.Book, reader))
		if err := f.moveBookShare(reader, &rb, nil); err != nil {
			return false, err
		}
		if rb.First != 0 {
			w.Delete(startKey(rb.First/3_600_000, rb.Book, reader))
			if err := f.addStart(rb.Book, rb.First/3_600_000, -1); err != nil {
				return false, err
			}
		}
		if rb.Highlights > 0 {
			hp := highlightsPrefix(rb.Book)
			suffix := []byte(sep + reader)
			err := state.ScanPrefix(src, hp, func(k, v []byte) error {
				if bytes.HasSuffix(k, suffix) && len(k) == len(hp)+16+len(suffix) {
					w.Delete(k)
					return movePassage(f.tx, partition, rb.Book, string(k[len(hp):len(hp)+16]), string(v), "")
				}
				return nil
			})
			if err != nil {
				return false, err
			}
		}
	}
	for day, n := range days {
		w.Delete(activeKey(day, reader))
		if err := f.addDaily(dailyActive, n, -1); err != nil {
			return false, err
		}
	}
	if meta.LastActive > 0 {
		if err := f.addDaily(dailyLast, meta.LastActive-1, -1); err != nil {
			return false, err
		}
	}
	f.Flush()
	return true, nil
}

// FindReader returns the first reader (in id order) for whom match is true, visiting each reader
// once by skipping past their records: an erasure agreed by the hash of an id (the configuration
// ledger never holds ids) finds the id this way.
func FindReader(src state.Reader, match func(reader string) bool) (string, bool, error) {
	lower, upper := []byte("r"+sep), state.PrefixEnd([]byte("r"+sep))
	for {
		var reader string
		err := src.Scan(lower, upper, func(k, _ []byte) error {
			id, _, _ := bytes.Cut(k[len("r"+sep):], []byte(sep))
			reader = string(id)
			return state.ErrStop
		})
		if err != nil || reader == "" {
			return "", false, err
		}
		if match(reader) {
			return reader, true, nil
		}
		lower = state.PrefixEnd(readerPrefix(reader))
	}
}
