package eventlog_test

import "sync/atomic"

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add(d int64) int64 { return c.n.Add(d) - d }
