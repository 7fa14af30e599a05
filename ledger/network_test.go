package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cometbft/cometbft/crypto/tmhash"
	"github.com/cometbft/cometbft/privval"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/dogear-dev/dogear/internal/servertest"
	"github.com/dogear-dev/dogear/ledger"
	"github.com/dogear-dev/dogear/loadgen"
)

var latencyChanges = flag.Int("ledger.changes", 5, "changes whose proposal-to-applied latency TestFourValidators measures")

// nodeEnv carries a validator's options to the test binary run as that validator's process.
const nodeEnv = "DOGEAR_TEST_LEDGER_NODE"

func TestMain(m *testing.M) {
	if opts := os.Getenv(nodeEnv); opts != "" {
		var o ledger.NodeOptions
		json.Unmarshal([]byte(opts), &o)
		o.Log = os.Stderr
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		// The test holds this process's stdin open: if the test dies, the validator goes too.
		go func() { io.Copy(io.Discard, os.Stdin); stop() }()
		if err := ledger.RunNode(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// validator is one validator process of a test network.
type validator struct {
	name string
	home string
	opts ledger.NodeOptions
	rpc  string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func (v *validator) start(t *testing.T) {
	t.Helper()
	b, _ := json.Marshal(v.opts)
	v.cmd = exec.Command(os.Args[0], "-test.run=^$")
	v.cmd.Env = append(os.Environ(), nodeEnv+"="+string(b))
	v.log = &bytes.Buffer{}
	v.cmd.Stderr = v.log
	if _, err := v.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (v *validator) stop() {
	if v.cmd != nil {
		v.cmd.Process.Signal(syscall.SIGTERM)
		v.cmd.Wait()
		v.cmd = nil
	}
}

func (v *validator) client(t *testing.T) *rpchttp.HTTP {
	c, err := rpchttp.New(v.rpc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (v *validator) height(t *testing.T) int64 {
	st, err := v.client(t).Status(context.Background())
	if err != nil {
		return 0
	}
	return st.SyncInfo.LatestBlockHeight
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// network makes four trust domains' validators, each with its own home, from init to a running
// process, as the runbook in docs/ledger.md does with the command line.
func network(t *testing.T) ([]*validator, string) {
	dir := t.TempDir()
	var vals []*validator
	var ids []ledger.Identity
	for _, name := range []string{"cloud", "library", "platform", "publisher"} {
		home := filepath.Join(dir, name)
		id, err := ledger.Init(home, name)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		rpc := freePort(t)
		vals = append(vals, &validator{name: name, home: home, rpc: "http://" + rpc,
			opts: ledger.NodeOptions{Home: home, P2P: freePort(t), RPC: rpc, BlockInterval: 100 * time.Millisecond}})
	}
	if _, err := ledger.Init(vals[0].home, "again"); err == nil {
		t.Fatal("init over an existing validator's keys was not refused")
	}
	doc, err := ledger.MakeGenesis("dogear-test", ids, map[string]int{"config": 3, "erasure": 3, "policy": 3, "operator": 3, "validator": 3})
	if err != nil {
		t.Fatal(err)
	}
	genesis := filepath.Join(dir, "genesis.json")
	if err := doc.SaveAs(genesis); err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		v.opts.Genesis = genesis
		for j, w := range vals {
			if j != i {
				v.opts.Peers = append(v.opts.Peers, ids[j].NodeID+"@"+w.opts.P2P)
			}
		}
		v.start(t)
	}
	t.Cleanup(func() {
		for _, v := range vals {
			v.stop()
			if t.Failed() {
				t.Logf("%s log:\n%s", v.name, v.log)
			}
		}
	})
	return vals, doc.ChainID
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submit proposes or approves as the validator's operator through the validator's RPC, once the
// validator's application has committed height after: it checks a transaction against its own
// state, so an approval sent before it has the proposal's block is refused. A node stores a
// block before its application commits it, so the sign of that is the next block.
func submit(ctx context.Context, t *testing.T, v *validator, tx ledger.Tx, after int64) (int64, string, error) {
	waitFor(t, 20*time.Second, v.name+" did not pass height "+fmt.Sprint(after), func() bool { return after == 0 || v.height(t) > after })
	id, err := ledger.ReadIdentity(filepath.Join(v.home, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ledger.OperatorKey(v.home)
	if err != nil {
		t.Fatal(err)
	}
	tx.Operator = id.Name
	return ledger.Submit(ctx, v.rpc, tx, key)
}

// agree proposes a change as the first validator and has the next need-1 approve it.
func agree(t *testing.T, vals []*validator, need int, id, kind, key, value string) int64 {
	t.Helper()
	var h int64
	for i := range need {
		tx := ledger.Tx{Op: "approve", ID: id}
		if i == 0 {
			tx = ledger.Tx{Op: "propose", ID: id, Kind: kind, Key: key, Value: value}
		}
		var err error
		if h, _, err = submit(context.Background(), t, vals[i], tx, h); err != nil {
			t.Fatalf("%s by %s: %v", tx.Op, vals[i].name, err)
		}
	}
	return h
}

// recorder is a follower's Apply that keeps every snapshot applied and when.
type recorder struct {
	mu    sync.Mutex
	snaps []ledger.Snapshot
	at    []time.Time
}

func (r *recorder) apply(_ context.Context, s ledger.Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps, r.at = append(r.snaps, s), append(r.at, time.Now())
	return nil
}

// appliedAt is when the follower first applied a state with config key=value.
func (r *recorder) appliedAt(key, value string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.snaps {
		if s.Config[key] == value {
			return r.at[i], true
		}
	}
	return time.Time{}, false
}

// follow starts a follower reading from primary and checking with witnesses; it applies what it
// verified with apply, or records it when apply is nil.
func follow(t *testing.T, ctx context.Context, chainID string, primary *validator, witnesses []*validator,
	apply func(context.Context, ledger.Snapshot) error) (*ledger.Follower, *recorder) {
	t.Helper()
	c := primary.client(t)
	one := int64(1)
	var trusted *cmttypes.SignedHeader
	waitFor(t, 20*time.Second, "header 1 from "+primary.name, func() bool {
		r, err := c.Commit(ctx, &one)
		if err == nil {
			trusted = &r.SignedHeader
		}
		return err == nil
	})
	rec := &recorder{}
	f := &ledger.Follower{ChainID: chainID, Primary: primary.rpc, TrustHeight: 1, TrustHash: trusted.Hash(),
		TrustPeriod: time.Hour, ClockDrift: 500 * time.Millisecond, BlockLag: 500 * time.Millisecond, Interval: 50 * time.Millisecond, Apply: apply}
	if apply == nil {
		f.Apply = rec.apply
	}
	for _, w := range witnesses {
		f.Witnesses = append(f.Witnesses, w.rpc)
	}
	go func() {
		if err := f.Run(ctx); err != nil {
			t.Errorf("follower of %s: %v", primary.name, err)
		}
	}()
	return f, rec
}

// TestFourValidators runs four validators as separate processes on loopback and checks what the
// ledger promises: agreed changes commit and every follower applies them; too few approvals do
// not; one validator down does not stop it, two do, without divergence, and the two catch up;
// a double-signing validator is caught with its evidence recorded; every validator has the same
// app hash at every height, across restarts. It also measures proposal-to-applied latency.
func TestFourValidators(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four validator processes")
	}
	vals, chainID := network(t)
	waitFor(t, 60*time.Second, "the network did not reach height 3", func() bool { return vals[0].height(t) >= 3 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Two clusters' followers: each reads from a different validator and checks with the others.
	f1, rec1 := follow(t, ctx, chainID, vals[0], vals[1:], nil)
	f2, rec2 := follow(t, ctx, chainID, vals[3], vals[:3], nil)

	// Enough approvals: committed, and applied by both followers.
	h := agree(t, vals, 3, "retention-1", ledger.KindConfig, "retention.days", "365")
	waitFor(t, 20*time.Second, "the followers did not apply retention.days", func() bool {
		_, ok1 := rec1.appliedAt("retention.days", "365")
		_, ok2 := rec2.appliedAt("retention.days", "365")
		return ok1 && ok2
	})
	if st := f1.Status(); st.Height < h || len(st.AppHash) != 32 {
		t.Fatalf("follower status %+v after a change at height %d", st, h)
	}
	// Too few approvals: the proposal stays open; nothing applies.
	h, log, err := submit(ctx, t, vals[0], ledger.Tx{Op: "propose", ID: "pin-1", Kind: ledger.KindConfig, Key: "model.pin", Value: "7"}, h)
	if err != nil || !strings.Contains(log, "1 of 3") {
		t.Fatalf("proposal: %q %v", log, err)
	}
	if h, log, err = submit(ctx, t, vals[1], ledger.Tx{Op: "approve", ID: "pin-1"}, h); err != nil || !strings.Contains(log, "2 of 3") {
		t.Fatalf("approval: %q %v", log, err)
	}
	if _, _, err := submit(ctx, t, vals[1], ledger.Tx{Op: "approve", ID: "pin-1"}, h); err == nil {
		t.Fatal("a second approval by the same operator was accepted")
	}
	forged := ledger.Tx{Op: "approve", ID: "pin-1", Operator: "publisher"}
	key, _ := ledger.OperatorKey(vals[0].home) // cloud's key, signing as publisher
	if _, _, err := ledger.Submit(ctx, vals[2].rpc, forged, key); err == nil || !strings.Contains(err.Error(), "sig:") {
		t.Fatalf("an approval signed with another operator's key: %v", err)
	}
	waitFor(t, 20*time.Second, vals[2].name+" did not reach the approval's height", func() bool { return vals[2].height(t) > h })
	_, leaves, err := ledger.ReadLeaves(ctx, vals[2].rpc)
	if err != nil || slices.ContainsFunc(leaves, func(l []byte) bool { return bytes.HasPrefix(l, []byte("config/model.pin=")) }) {
		t.Fatalf("model.pin applied with 2 of 3 approvals (%v)", err)
	}

	// An erasure agreed on the ledger is carried out in a running embedded dogear.
	erasureReachesServe(t, ctx, chainID, vals)

	// One validator down (3 of 4, above 2/3 of the power): changes still commit.
	vals[3].stop()
	agree(t, vals, 3, "retention-2", ledger.KindConfig, "retention.days", "180")
	waitFor(t, 20*time.Second, "the follower did not apply a change made with a validator down", func() bool {
		_, ok := rec1.appliedAt("retention.days", "180")
		return ok
	})

	// Two down (2 of 4): nothing commits, and the two left do not diverge.
	vals[2].stop()
	stalled := max(vals[0].height(t), vals[1].height(t))
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	_, _, err = submit(sctx, t, vals[0], ledger.Tx{Op: "propose", ID: "while-split", Kind: ledger.KindConfig, Key: "writers", Value: "platform"}, 0)
	scancel()
	if err == nil {
		t.Fatal("a change committed with half of the validators down")
	}
	if h0, h1 := vals[0].height(t), vals[1].height(t); h0 > stalled+1 || h1 > stalled+1 {
		t.Fatalf("heights moved from %d to %d and %d with two of four validators", stalled, h0, h1)
	}

	// They return (from their folders) and catch up; the waiting proposal commits.
	vals[2].start(t)
	vals[3].start(t)
	waitFor(t, 60*time.Second, "the returning validators did not catch up", func() bool {
		top := vals[0].height(t)
		return top > stalled+2 && vals[2].height(t) >= top-1 && vals[3].height(t) >= top-1
	})
	waitFor(t, 20*time.Second, "the proposal sent during the split did not reach the ledger", func() bool {
		_, leaves, err := ledger.ReadLeaves(ctx, vals[3].rpc)
		return err == nil && slices.ContainsFunc(leaves, func(l []byte) bool { return bytes.HasPrefix(l, []byte("proposal/while-split=")) })
	})

	// A validator that signs two different blocks at one height is caught.
	doubleSign(t, ctx, chainID, vals)

	// Latency: from the proposal to the committed change (proposal and two approvals, each
	// waiting for its block), and on to the follower's application of it.
	var committed, applied []time.Duration
	for i := range *latencyChanges {
		start := time.Now()
		value := fmt.Sprint(100 + i)
		agree(t, vals, 3, fmt.Sprintf("latency-%d", i), ledger.KindConfig, "retention.days", value)
		committed = append(committed, time.Since(start))
		waitFor(t, 20*time.Second, "the follower did not apply a change", func() bool { _, ok := rec2.appliedAt("retention.days", value); return ok })
		at, _ := rec2.appliedAt("retention.days", value)
		applied = append(applied, at.Sub(start))
	}
	t.Logf("%d changes, proposal to commit: %s; proposal to applied by a follower: %s", len(applied), percentiles(committed), percentiles(applied))
	if f2.Status().Height == 0 {
		t.Fatal("the second follower applied nothing")
	}

	// Same app hash at every height on every validator, two of which restarted from disk.
	top := vals[0].height(t) - 1
	waitFor(t, 20*time.Second, "not every validator reached the same height", func() bool {
		for _, v := range vals {
			if v.height(t) < top {
				return false
			}
		}
		return true
	})
	for h := int64(1); h <= top; h++ {
		var want []byte
		for _, v := range vals {
			r, err := v.client(t).Commit(ctx, &h)
			if err != nil {
				t.Fatalf("%s at height %d: %v", v.name, h, err)
			}
			if want == nil {
				want = r.AppHash
			} else if !bytes.Equal(want, r.AppHash) {
				t.Fatalf("height %d: %s has app hash %X, %s %X", h, vals[0].name, want, v.name, r.AppHash)
			}
		}
	}
	t.Logf("%d heights, the same app hash on all four validators at each", top)
}

// doubleSign has the first validator's key sign two different blocks' prevotes at a committed
// height, as a validator run twice by mistake does, and sends the evidence to another
// validator: CometBFT verifies it, commits it, and the ledger records it in its state.
func doubleSign(t *testing.T, ctx context.Context, chainID string, vals []*validator) {
	t.Helper()
	c := vals[1].client(t)
	h := vals[1].height(t) - 1
	block, err := c.Block(ctx, &h)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := c.Validators(ctx, &h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(vals[0].home, "config", "priv_validator_key.json")
	pv := privval.LoadFilePVEmptyState(cfg, filepath.Join(t.TempDir(), "state.json"))
	idx, _ := cmttypes.NewValidatorSet(vs.Validators).GetByAddress(pv.Key.Address)
	vote := func(block string) *cmttypes.Vote {
		v := &cmttypes.Vote{Type: cmttypes.PrevoteType, Height: h, Round: 0, Timestamp: time.Now().UTC(),
			ValidatorAddress: pv.Key.Address, ValidatorIndex: idx,
			BlockID: cmttypes.BlockID{Hash: tmhash.Sum([]byte(block)), PartSetHeader: cmttypes.PartSetHeader{Total: 1, Hash: tmhash.Sum([]byte(block + "parts"))}}}
		p := v.ToProto()
		v.Signature, err = pv.Key.PrivKey.Sign(cmttypes.VoteSignBytes(chainID, p))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ev, err := cmttypes.NewDuplicateVoteEvidence(vote("block A"), vote("block B"), block.Block.Time, cmttypes.NewValidatorSet(vs.Validators))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BroadcastEvidence(ctx, ev); err != nil {
		t.Fatalf("evidence refused: %v", err)
	}
	want := fmt.Sprintf("evidence/%d/%X=DUPLICATE_VOTE", h, pv.Key.Address)
	waitFor(t, 30*time.Second, "the double-sign evidence was not recorded in the ledger", func() bool {
		_, leaves, err := ledger.ReadLeaves(ctx, vals[2].rpc)
		return err == nil && slices.ContainsFunc(leaves, func(l []byte) bool { return string(l) == want })
	})
}

// percentiles formats the p50 and p99 of ds.
func percentiles(ds []time.Duration) string {
	slices.Sort(ds)
	return fmt.Sprintf("p50 %v, p99 %v", ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*99/100].Round(time.Millisecond))
}

// erasureReachesServe runs an embedded dogear with two readers, follows the ledger into it with
// ServeApplier, and agrees on erasing one of them by the hash of their id: the follower erases
// that reader there and leaves the other.
func erasureReachesServe(t *testing.T, ctx context.Context, chainID string, vals []*validator) {
	t.Helper()
	srv, base := servertest.Start(t, nil)
	end := time.Now().Truncate(time.Hour)
	events := loadgen.New(loadgen.Config{Readers: 2, Books: 5, Seed: 3, Start: end.Add(-7 * 24 * time.Hour), End: end}).Batch(200)
	resp, err := http.Post(base+"/v1/events", "application/x-ndjson", bytes.NewReader(loadgen.EncodeBody(events, false)))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	servertest.WaitProcessed(t, srv)
	books := func(reader string) int {
		var bs struct{ Books []json.RawMessage }
		servertest.GetJSON(t, base+"/v1/readers/"+reader+"/books", &bs)
		return len(bs.Books)
	}
	erased, kept := events[0].Reader, "reader-000000"
	if erased == kept {
		kept = "reader-000001"
	}
	if books(erased) == 0 || books(kept) == 0 {
		t.Fatalf("before the erasure: %s has %d books, %s %d", erased, books(erased), kept, books(kept))
	}
	f, _ := follow(t, ctx, chainID, vals[1], []*validator{vals[0], vals[2]}, (&ledger.ServeApplier{URL: base}).Apply)
	h := agree(t, vals, 3, "erase-1", ledger.KindErasure, ledger.HashReader(erased), "")
	waitFor(t, 20*time.Second, "the follower did not apply the erasure", func() bool { return f.Status().Height >= h })
	if books(erased) != 0 || books(kept) == 0 {
		t.Fatalf("after the erasure: %s has %d books, %s %d", erased, books(erased), kept, books(kept))
	}
	// A pinned model this dogear does not have is not applied, and the follower says why.
	h = agree(t, vals, 3, "pin-missing", ledger.KindConfig, "model.pin", "99")
	waitFor(t, 20*time.Second, "the follower did not report the missing model", func() bool {
		return strings.Contains(f.Status().Error, "pinning model 99") && strings.Contains(f.Status().Error, "404")
	})
	if f.Status().Height >= h {
		t.Fatalf("a pin the server refused counts as applied: %+v", f.Status())
	}
}
