package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	cmtlog "github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/light"
	"github.com/cometbft/cometbft/light/provider"
	lightdb "github.com/cometbft/cometbft/light/store/db"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
)

// Follower follows the ledger from one cluster: it reads the committed state from a validator,
// checks it against an app hash in a header that CometBFT's light client verified (signed by
// more than 2/3 of the voting power, cross-checked with witness validators), and applies it. It
// trusts no single validator, its primary included.
type Follower struct {
	ChainID   string
	Primary   string   // RPC (http://host:port) of the validator it reads from
	Witnesses []string // RPCs of other validators, which catch a primary that lies
	// TrustHeight and TrustHash name a header trusted out of band (from the genesis ceremony or
	// another party): verification starts there. TrustPeriod bounds how old it may be.
	TrustHeight int64
	TrustHash   []byte
	TrustPeriod time.Duration
	// ClockDrift and BlockLag bound how far validators' clocks and heights may differ (CometBFT's
	// light client waits 2×ClockDrift+BlockLag for a witness behind the primary); zero keeps
	// CometBFT's defaults of 10 s each.
	ClockDrift time.Duration
	BlockLag   time.Duration
	Interval   time.Duration
	Apply      func(context.Context, Snapshot) error
	Logger     *slog.Logger

	mu     sync.Mutex
	status FollowerStatus
}

// FollowerStatus is what a follower applied last: the height and app hash people compare
// across clusters.
type FollowerStatus struct {
	Height    int64             `json:"height"`
	AppHash   cmtbytes.HexBytes `json:"app_hash"`
	AppliedAt time.Time         `json:"applied_at,omitzero"`
	Error     string            `json:"error,omitempty"`
}

// Status returns what was applied last.
func (f *Follower) Status() FollowerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Run follows until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	opts := []light.Option{light.Logger(cmtlog.NewNopLogger())}
	if f.ClockDrift > 0 {
		opts = append(opts, light.MaxClockDrift(f.ClockDrift))
	}
	if f.BlockLag > 0 {
		opts = append(opts, light.MaxBlockLag(f.BlockLag))
	}
	lc, err := light.NewHTTPClient(ctx, f.ChainID, light.TrustOptions{Period: f.TrustPeriod, Height: f.TrustHeight, Hash: f.TrustHash},
		f.Primary, f.Witnesses, lightdb.New(dbm.NewMemDB(), "follower"), opts...)
	if err != nil {
		return fmt.Errorf("light client from the trusted header %d: %w", f.TrustHeight, err)
	}
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		if err := f.step(ctx, lc); err != nil && ctx.Err() == nil {
			f.mu.Lock()
			f.status.Error = err.Error()
			f.mu.Unlock()
			f.Logger.Warn("ledger follower", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// step reads the primary's state at its latest height h, verifies header h+1 (whose app hash is
// the state after block h) and applies the state if it is newer than the last applied.
func (f *Follower) step(ctx context.Context, lc *light.Client) error {
	h, leaves, err := ReadLeaves(ctx, f.Primary)
	if err != nil {
		return err
	}
	if h <= f.Status().Height {
		return nil
	}
	// The state was read at the tip, so header h+1 is usually still being agreed: wait for it,
	// and for the witnesses to have it too, or the light client would wait for them far longer.
	f.awaitWitnesses(ctx, h+1)
	lb, err := lc.VerifyLightBlockAtHeight(ctx, h+1, time.Now())
	for deadline := time.Now().Add(time.Minute); errors.Is(err, provider.ErrHeightTooHigh) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		lb, err = lc.VerifyLightBlockAtHeight(ctx, h+1, time.Now())
	}
	if err != nil {
		return fmt.Errorf("verifying header %d: %w", h+1, err)
	}
	snap, err := VerifyLeaves(h, leaves, lb.AppHash)
	if err != nil {
		return err
	}
	if err := f.Apply(ctx, snap); err != nil {
		return fmt.Errorf("applying height %d: %w", h, err)
	}
	f.mu.Lock()
	f.status = FollowerStatus{Height: h, AppHash: snap.AppHash, AppliedAt: time.Now()}
	f.mu.Unlock()
	return nil
}

// awaitWitnesses returns once every witness that answers has committed height h, or after a
// few seconds: a witness that is down or far behind is the light client's to judge.
func (f *Follower) awaitWitnesses(ctx context.Context, h int64) {
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range f.Witnesses {
		c, err := rpchttp.New(w)
		if err != nil {
			continue
		}
		for time.Now().Before(deadline) {
			st, err := c.Status(ctx)
			if err != nil || st.SyncInfo.LatestBlockHeight >= h {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// ServeApplier applies the ledger to a running embedded `dogear serve`: the model the ledger
// pins (config "model.pin") is promoted, and every agreed erasure is carried out by the hash of
// the reader's id. Other entries are the business of other consumers and are left alone.
type ServeApplier struct {
	URL    string // the server's base URL
	Token  string // an admin token, when the server checks them
	Client *http.Client

	pinned string
	erased map[string]bool
}

// Apply implements Follower.Apply.
func (a *ServeApplier) Apply(ctx context.Context, s Snapshot) error {
	if a.erased == nil {
		a.erased = map[string]bool{}
	}
	// Erasures first: a pin that cannot apply must not hold them up.
	for hash := range s.Erasures {
		if a.erased[hash] {
			continue
		}
		if err := a.call(ctx, http.MethodDelete, "/v1/readers/sha256:"+hash); err != nil {
			return fmt.Errorf("erasure %s: %w", hash, err)
		}
		a.erased[hash] = true
	}
	if v := s.Config["model.pin"]; v != "" && v != a.pinned {
		if err := a.call(ctx, http.MethodPost, "/v1/models/"+v+"/promote"); err != nil {
			return fmt.Errorf("pinning model %s: %w", v, err)
		}
		a.pinned = v
	}
	return nil
}

func (a *ServeApplier) call(ctx context.Context, method, path string) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.URL, "/")+path, nil)
	if err != nil {
		return err
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// ServeStatus serves the follower's status at GET /status as JSON.
func (f *Follower) ServeStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(f.Status())
}
