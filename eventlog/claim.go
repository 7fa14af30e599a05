package eventlog

import (
	"context"
	"errors"
	"sync"
)

// FoldFunc folds one claimed partition until its context ends (the partition was taken away or
// the process stops) and then returns. An error other than the context's ends every claim.
type FoldFunc func(ctx context.Context, partition int) error

// claims runs one FoldFunc per claimed partition and stops them on revocation: a partition goes to
// another member only once stop has seen its fold return, so two members never fold it at once.
type claims struct {
	fold   FoldFunc
	ctx    context.Context
	fail   context.CancelCauseFunc
	after  func(partition int) // run once a fold returned (the Kafka log drops its reader)
	mu     sync.Mutex
	active map[int]claim
}

type claim struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// foldError is the cause of a claims context ended by a failing fold.
type foldError struct{ err error }

func (e foldError) Error() string { return e.err.Error() }
func (e foldError) Unwrap() error { return e.err }

func newClaims(ctx context.Context, fold FoldFunc, after func(int)) (*claims, context.Context) {
	ctx, fail := context.WithCancelCause(ctx)
	return &claims{fold: fold, ctx: ctx, fail: fail, after: after, active: map[int]claim{}}, ctx
}

func (c *claims) start(partition int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.active[partition]; ok {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	cl := claim{cancel: cancel, done: make(chan struct{})}
	c.active[partition] = cl
	go func() {
		defer close(cl.done)
		err := c.fold(ctx, partition)
		if c.after != nil {
			c.after(partition)
		}
		if err != nil && ctx.Err() == nil {
			c.fail(foldError{err})
		}
	}()
}

// stop ends the folds of partitions and waits for them to return.
func (c *claims) stop(partitions ...int) {
	c.mu.Lock()
	var stopping []claim
	for _, p := range partitions {
		if cl, ok := c.active[p]; ok {
			cl.cancel()
			stopping = append(stopping, cl)
			delete(c.active, p)
		}
	}
	c.mu.Unlock()
	for _, cl := range stopping {
		<-cl.done
	}
}

// stopAll ends every fold and returns the error of a failed one, if any.
func (c *claims) stopAll() error {
	c.mu.Lock()
	all := make([]int, 0, len(c.active))
	for p := range c.active {
		all = append(all, p)
	}
	c.mu.Unlock()
	c.stop(all...)
	var failed foldError
	if errors.As(context.Cause(c.ctx), &failed) {
		return failed.err
	}
	return nil
}
