package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/dogear-dev/dogear/internal/httpjson"
)

// Gate is what every way in (POST /v1/events, the Segment routes, kosync) passes before its
// events reach the log, so that none is cheaper to abuse than another: an in-flight slot, body
// bytes from one shared budget, a minimum transfer rate for bodies, the per-request event limit
// and the caller's rate limit.
type Gate struct {
	cfg   Config
	slots chan struct{}
	held  atomic.Int64 // decompressed body bytes held by requests in flight
}

// NewGate returns the gate all ingest routes of one process share.
func NewGate(cfg Config) *Gate {
	return &Gate{cfg: cfg, slots: make(chan struct{}, max(1, cfg.MaxInFlight))}
}

// Busy reports whether requests are in flight: acknowledgements are waiting.
func (g *Gate) Busy() bool { return len(g.slots) > 0 }

// Config returns the limits the gate enforces.
func (g *Gate) Config() Config { return g.cfg }

// Refused is the gate's answer instead of letting a request through.
type Refused struct {
	Status     int
	RetryAfter time.Duration // 0: no Retry-After header
	Msg        string
}

func (r *Refused) Error() string { return r.Msg }

// Write sends the refusal and returns its status.
func (r *Refused) Write(w http.ResponseWriter) int {
	if r.RetryAfter > 0 {
		w.Header().Set("Retry-After", RetryAfter(r.RetryAfter))
	}
	return httpjson.Fail(w, r.Status, httpjson.Error{Error: r.Msg})
}

// RetryAfter renders a wait as whole seconds for the Retry-After header (at least 1).
func RetryAfter(d time.Duration) string {
	return fmt.Sprint(max(1, int64((d+time.Second-1)/time.Second)))
}

var errBudget = errors.New("ingest body budget exhausted")

// Enter takes an in-flight slot and reads the request's body (at most limit bytes, compressed
// and decompressed each) at no less than the configured transfer rate, counting it against the
// shared body budget. The caller must call done when it no longer holds the body.
func (g *Gate) Enter(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, done func(), refused *Refused) {
	select {
	case g.slots <- struct{}{}:
	default:
		// Refusing at once keeps memory bounded; clients back off and retry the same batch,
		// which dedup by event id makes safe.
		return nil, nil, &Refused{http.StatusTooManyRequests, time.Second, "server busy: too many ingest requests in flight; retry after 1 second"}
	}
	var held int64
	done = func() {
		g.held.Add(-held)
		<-g.slots
	}
	pb := &paced{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(),
		grace: g.cfg.BodyGrace, rate: g.cfg.MinBodyRate, limit: g.cfg.MaxBodyTime}
	body, status, msg := readBody(w, r, pb, limit, func(n int) error {
		held += int64(n)
		if g.held.Add(int64(n)) > g.cfg.MaxInFlightBytes && g.cfg.MaxInFlightBytes > 0 {
			return errBudget
		}
		return nil
	})
	if status != 0 {
		// Closed before it was read to its end, the body is not drained after the answer (as
		// net/http otherwise does, at the client's pace): the connection closes instead.
		r.Body.Close()
		done()
		ref := &Refused{Status: status, Msg: msg}
		if status == http.StatusServiceUnavailable {
			ref.RetryAfter = time.Second
		}
		return nil, nil, ref
	}
	if pb.rate > 0 && !pb.deadlineUnsettable {
		// The body is in: lift the pace deadline, or net/http's background read of the idle
		// connection would time out and cancel the request while its events are appended.
		pb.rc.SetReadDeadline(time.Time{})
	}
	return body, done, nil
}

// Admit checks n events against the per-request limit and the caller's rate limit.
func (g *Gate) Admit(ctx context.Context, n int) *Refused {
	if n > g.cfg.MaxEvents {
		return &Refused{Status: http.StatusRequestEntityTooLarge,
			Msg: fmt.Sprintf("%d events in one request; at most %d allowed: split the batch", n, g.cfg.MaxEvents)}
	}
	if g.cfg.Limit == nil || n == 0 {
		return nil
	}
	ok, wait, err := g.cfg.Limit(ctx, n)
	if err != nil {
		return &Refused{Status: http.StatusRequestEntityTooLarge, Msg: err.Error()}
	}
	if !ok {
		return &Refused{Status: http.StatusTooManyRequests, RetryAfter: wait,
			Msg: fmt.Sprintf("rate limit of this write key reached: retry after %v; nothing from this request was stored", wait.Round(time.Millisecond))}
	}
	return nil
}

// paced is a request body that must arrive at a minimum rate: after a grace period the client
// must have sent rate bytes for every second since the request began, and the whole body within
// limit. A client that trickles is cut off (408) and its slot freed, so slow clients cannot hold
// every slot.
type paced struct {
	io.ReadCloser
	rc                 *http.ResponseController
	start              time.Time
	grace, limit       time.Duration
	rate               int64 // bytes per second; 0: no minimum
	read               int64
	deadlineUnsettable bool
	deadlineSet        time.Duration // the allowance last set, after start
}

// deadlineStep: the deadline is moved only once the allowance grew by this much, so a fast body
// read in many small chunks does not reset the connection's timer on every read.
const deadlineStep = 100 * time.Millisecond

func (p *paced) Read(b []byte) (int, error) {
	if p.rate > 0 && !p.deadlineUnsettable {
		allowed := p.grace + time.Duration(float64(p.read)/float64(p.rate)*float64(time.Second))
		if p.limit > 0 {
			allowed = min(allowed, p.limit)
		}
		// Not every connection can take a deadline (HTTP/2 through some proxies, tests'
		// recorders); those keep the server's overall read timeout.
		if p.deadlineSet == 0 || allowed >= p.deadlineSet+deadlineStep || (allowed == p.limit && p.deadlineSet != p.limit) {
			p.deadlineUnsettable = p.rc.SetReadDeadline(p.start.Add(allowed)) != nil
			p.deadlineSet = allowed
		}
	}
	n, err := p.ReadCloser.Read(b)
	p.read += int64(n)
	return n, err
}
