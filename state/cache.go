package state

// Cache is a partition's working set: the committed values its folds read most, held in memory
// in front of the store, so that hot readers and books are not read from the store for every
// event. Commits go to the store as before and then into the cache (Apply), so the cache never
// holds what the store does not, and dropping any of it at any time is safe. It keeps two
// generations: lookups that hit the older one move the key to the newer, and when the newer
// outgrows half the budget the older is dropped; what is read again within a generation stays.
// A Cache serves one partition's folds and is not safe for concurrent use.
type Cache struct {
	base     Reader
	budget   int
	young    map[string]cached
	old      map[string]cached
	youngLen int
}

// cached is a value, or the store's answer that the key has none.
type cached struct {
	value  []byte
	absent bool
}

// cacheEntryOverhead approximates a map entry's bytes besides its key and value.
const cacheEntryOverhead = 64

// NewCache returns a cache of base using about budget bytes.
func NewCache(base Reader, budget int) *Cache {
	return &Cache{base: base, budget: budget, young: map[string]cached{}}
}

// Get implements Reader.
func (c *Cache) Get(key []byte) ([]byte, bool, error) {
	if e, ok := c.young[string(key)]; ok {
		return e.value, !e.absent, nil
	}
	if e, ok := c.old[string(key)]; ok {
		c.keep(string(key), e)
		return e.value, !e.absent, nil
	}
	v, ok, err := c.base.Get(key)
	if err != nil {
		return nil, false, err
	}
	c.keep(string(key), cached{value: v, absent: !ok})
	return v, ok, nil
}

// Scan implements Reader; scans go to the store, which holds everything committed.
func (c *Cache) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	return c.base.Scan(lower, upper, fn)
}

// Apply records committed writes. Values are copied, since the writer may reuse w.
func (c *Cache) Apply(w *Writes) {
	_ = w.Each(func(k string, v []byte, del bool) error {
		c.keep(k, cached{value: append([]byte(nil), v...), absent: del})
		return nil
	})
}

func (c *Cache) keep(k string, e cached) {
	if c.youngLen > c.budget/2 {
		c.old, c.young, c.youngLen = c.young, make(map[string]cached, len(c.young)), 0
	}
	if prev, ok := c.young[k]; ok {
		c.youngLen -= len(k) + len(prev.value) + cacheEntryOverhead
	}
	c.young[k] = e
	c.youngLen += len(k) + len(e.value) + cacheEntryOverhead
}
