package eventlog

import (
	"encoding/binary"
	"errors"
)

// The embedded log stores the events one group commit writes to a partition as one Pebble value,
// as Kafka stores a record batch: one key and one memtable insert per partition and batch
// instead of one per event. Offsets stay per event. The key holds the partition and the offset
// of the first event written in the batch; erasure can later remove events from a batch, so
// offsets inside one need not be contiguous, and the key's offset may precede its first event.
//
//	value  = version(1) uvarint(count) event*
//	event  = uvarint(offset - key offset) field(id) field(reader) field(value)
//	field  = uvarint(len) bytes
//
// reader is the entry's PartitionBy, else its Key: the reader whose erasure removes the event.
const batchVersion = 1

// maxBatchEvents caps the events of one stored batch, so that a read from an offset in the
// middle of a batch copies and decodes little it does not return.
const maxBatchEvents = 512

type batchEvent struct {
	offset            int64
	id, reader, value []byte
}

func appendBatchHeader(b []byte, count int) []byte {
	return binary.AppendUvarint(append(b, batchVersion), uint64(count))
}

func appendBatchEvent(b []byte, delta int64, id, reader string, value []byte) []byte {
	b = binary.AppendUvarint(b, uint64(delta))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(reader)))
	b = append(b, reader...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

var errBadBatch = errors.New("eventlog: damaged batch record")

// eachBatchEvent calls fn for every event of a stored batch whose key offset is first, in offset
// order, until fn returns false. The slices point into b.
func eachBatchEvent(b []byte, first int64, fn func(batchEvent) bool) error {
	if len(b) == 0 || b[0] != batchVersion {
		return errBadBatch
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return errBadBatch
	}
	b = b[n:]
	field := func() ([]byte, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return nil, false
		}
		f := b[n : n+int(l)]
		b = b[n+int(l):]
		return f, true
	}
	for range count {
		delta, n := binary.Uvarint(b)
		if n <= 0 {
			return errBadBatch
		}
		b = b[n:]
		e := batchEvent{offset: first + int64(delta)}
		var idOK, readerOK, valueOK bool
		e.id, idOK = field()
		e.reader, readerOK = field()
		e.value, valueOK = field()
		if !idOK || !readerOK || !valueOK {
			return errBadBatch
		}
		if !fn(e) {
			return nil
		}
	}
	return nil
}
