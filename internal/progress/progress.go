// Package progress draws a one-line progress bar on a terminal for long work (training,
// evaluation, imports): the phase, a bar, a percentage and the time spent.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bar draws to a writer; a nil *Bar or one without a writer draws nothing.
type Bar struct {
	w     io.Writer
	mu    sync.Mutex
	start time.Time
	label string
}

// New returns a bar drawing to w (nil: silent).
func New(w io.Writer) *Bar { return &Bar{w: w} }

// Phase starts a named phase and returns the callback that reports done of total for it
// (nil when the bar is silent, which callers accept as "no progress reporting").
func (b *Bar) Phase(label string) func(done, total int) {
	if b == nil || b.w == nil {
		return nil
	}
	b.mu.Lock()
	b.label, b.start = label, time.Now()
	b.mu.Unlock()
	return func(done, total int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		frac := float64(done) / float64(max(total, 1))
		n := min(30, int(frac*30))
		fmt.Fprintf(b.w, "\r%-48s [%s%s] %3.0f%% %6.1fs", b.label, strings.Repeat("=", n), strings.Repeat(" ", 30-n), frac*100, time.Since(b.start).Seconds())
	}
}

// Done ends the bar's line.
func (b *Bar) Done() {
	if b != nil && b.w != nil {
		fmt.Fprintln(b.w)
	}
}
