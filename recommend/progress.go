package recommend

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5bd1e995)) }

// bar draws a one-line progress bar on a terminal: the phase, a bar, a percentage and the time
// spent in the phase.
type bar struct {
	w     io.Writer
	mu    sync.Mutex
	start time.Time
	label string
}

func newBar(w io.Writer) *bar { return &bar{w: w} }

// phase starts a named phase and returns the progress callback for it (nil without a writer).
func (b *bar) phase(label string) func(done, total int) {
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
		n := int(frac * 30)
		fmt.Fprintf(b.w, "\r%-48s [%s%s] %3.0f%% %6.1fs", b.label, strings.Repeat("=", n), strings.Repeat(" ", 30-n), frac*100, time.Since(b.start).Seconds())
	}
}

func (b *bar) done() {
	if b != nil && b.w != nil {
		fmt.Fprintln(b.w)
	}
}
