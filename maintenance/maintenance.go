// Package maintenance holds what operators and readers ask of stored data rather than of the live
// pipeline: rebuild and verify state from the log, dump the log, export and erase one reader.
package maintenance

import (
	"context"

	"github.com/dogear-dev/dogear/eventlog"
)

// eachRecord calls fn for every record of a partition, in offset order, up to its end as of the
// call.
func eachRecord(ctx context.Context, log eventlog.Log, p int, fn func(eventlog.Record) error) error {
	end, err := log.End(p)
	if err != nil {
		return err
	}
	for off := int64(0); off < end; {
		recs, err := log.Read(ctx, p, off, 10_000)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		off = recs[len(recs)-1].Offset + 1
	}
	return nil
}
