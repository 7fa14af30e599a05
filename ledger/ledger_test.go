package ledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/dogear-dev/dogear/ledger"
)

// operators are four trust domains with fixed keys, so runs are repeatable.
func operators(t *testing.T) (map[string]ed25519.PrivateKey, []byte) {
	t.Helper()
	keys := map[string]ed25519.PrivateKey{}
	g := ledger.Genesis{Operators: map[string][]byte{}, Policy: map[string]int{"config": 3, "erasure": 2, "policy": 3, "operator": 3, "validator": 3}}
	for i, name := range []string{"platform", "publisher", "library", "cloud"} {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
		keys[name] = k
		g.Operators[name] = k.Public().(ed25519.PublicKey)
	}
	b, _ := json.Marshal(g)
	return keys, b
}

func open(t *testing.T, genesis []byte) *ledger.App {
	t.Helper()
	a, err := ledger.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.InitChain(context.Background(), &abci.InitChainRequest{AppStateBytes: genesis}); err != nil {
		t.Fatal(err)
	}
	return a
}

// block finalizes and commits txs at height h, returning each tx's result and the app hash.
func block(t *testing.T, a *ledger.App, h int64, txs ...ledger.Tx) ([]*abci.ExecTxResult, []byte) {
	t.Helper()
	var raw [][]byte
	for _, tx := range txs {
		raw = append(raw, tx.Encode())
	}
	r, err := a.FinalizeBlock(context.Background(), &abci.FinalizeBlockRequest{Height: h, Txs: raw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit(context.Background(), &abci.CommitRequest{}); err != nil {
		t.Fatal(err)
	}
	return r.TxResults, r.AppHash
}

func TestQuorumCommitsAndTooFewDoNot(t *testing.T) {
	keys, genesis := operators(t)
	a := open(t, genesis)
	propose := ledger.Tx{Op: "propose", ID: "retention-1", Kind: "config", Key: "retention.days", Value: "365", Operator: "platform"}.Sign(keys["platform"])
	approve := func(op string) ledger.Tx {
		return ledger.Tx{Op: "approve", ID: "retention-1", Operator: op}.Sign(keys[op])
	}
	res, _ := block(t, a, 1, propose, approve("publisher"))
	for _, r := range res {
		if r.Code != 0 {
			t.Fatalf("refused: %s", r.Log)
		}
	}
	if _, ok := a.State().Config["retention.days"]; ok || !strings.Contains(res[1].Log, "2 of 3 approvals") {
		t.Fatalf("two of three approvals applied the change: %v, %q", a.State().Config, res[1].Log)
	}
	res, hash := block(t, a, 2, approve("library"))
	if a.State().Config["retention.days"] != "365" || !strings.Contains(res[0].Log, "committed with 3 of 3") {
		t.Fatalf("three approvals: config %v, %q", a.State().Config, res[0].Log)
	}
	// The committed value, with a proof against the app hash.
	q, err := a.Query(context.Background(), &abci.QueryRequest{Path: "config/retention.days"})
	if err != nil || q.Code != 0 || string(q.Value) != "365" {
		t.Fatalf("query: %v %+v", err, q)
	}
	if err := ledger.VerifyQuery(q, hash); err != nil {
		t.Fatalf("proof: %v", err)
	}
	q.Value = []byte("3650")
	if err := ledger.VerifyQuery(q, hash); err == nil {
		t.Fatal("a changed value still verified")
	}
}

func TestRefusalsNameWhatIsWrong(t *testing.T) {
	keys, genesis := operators(t)
	a := open(t, genesis)
	forged := ledger.Tx{Op: "propose", ID: "p", Kind: "config", Key: "writers", Value: "anyone", Operator: "platform"}.Sign(keys["cloud"])
	rawID := ledger.Tx{Op: "propose", ID: "e", Kind: "erasure", Key: "ann", Operator: "library"}.Sign(keys["library"])
	stranger := ledger.Tx{Op: "propose", ID: "s", Kind: "config", Key: "k", Value: "v", Operator: "mallory"}
	for tx, want := range map[*ledger.Tx]string{&forged: "sig: not a signature", &rawID: "never the id", &stranger: `operator: "mallory" is not an operator`} {
		r, err := a.CheckTx(context.Background(), &abci.CheckTxRequest{Tx: tx.Encode()})
		if err != nil || r.Code == 0 || !strings.Contains(r.Log, want) {
			t.Errorf("%+v: %v %+v, want a refusal naming %q", *tx, err, r, want)
		}
	}
	// An approval twice by one operator.
	p := ledger.Tx{Op: "propose", ID: "twice", Kind: "erasure", Key: ledger.HashReader("ann"), Operator: "publisher"}.Sign(keys["publisher"])
	again := ledger.Tx{Op: "approve", ID: "twice", Operator: "publisher"}.Sign(keys["publisher"])
	res, _ := block(t, a, 1, p, again)
	if res[1].Code == 0 || !strings.Contains(res[1].Log, "already approved") {
		t.Fatalf("second approval by the proposer: %+v", res[1])
	}
}

func TestPolicyChangesOnlyWithItsOwnQuorum(t *testing.T) {
	keys, genesis := operators(t)
	a := open(t, genesis)
	// Lowering the config threshold to 1 is a policy change: it needs the policy quorum (3).
	lower := ledger.Tx{Op: "propose", ID: "lower", Kind: "policy", Key: "config", Value: "1", Operator: "platform"}.Sign(keys["platform"])
	ok := ledger.Tx{Op: "approve", ID: "lower", Operator: "cloud"}.Sign(keys["cloud"])
	block(t, a, 1, lower, ok)
	if a.State().Policy["config"] != 3 {
		t.Fatalf("two operators changed the policy: %v", a.State().Policy)
	}
	block(t, a, 2, ledger.Tx{Op: "approve", ID: "lower", Operator: "library"}.Sign(keys["library"]))
	if a.State().Policy["config"] != 1 {
		t.Fatalf("three operators did not: %v", a.State().Policy)
	}
}

// Every validator holds the same state: two applications fed the same blocks have the same app
// hash at every height, and one reopened from its folder resumes at the same height and hash.
func TestReplayIsDeterministic(t *testing.T) {
	keys, genesis := operators(t)
	one, two := open(t, genesis), open(t, genesis)
	dir := t.TempDir()
	three, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	three.InitChain(context.Background(), &abci.InitChainRequest{AppStateBytes: genesis})
	var last []byte
	for h := int64(1); h <= 20; h++ {
		id := fmt.Sprintf("c%d", h)
		txs := []ledger.Tx{
			ledger.Tx{Op: "propose", ID: id, Kind: "config", Key: fmt.Sprintf("key%d", h%5), Value: fmt.Sprint(h), Operator: "platform"}.Sign(keys["platform"]),
			ledger.Tx{Op: "approve", ID: id, Operator: "library"}.Sign(keys["library"]),
			ledger.Tx{Op: "approve", ID: id, Operator: "cloud"}.Sign(keys["cloud"]),
			ledger.Tx{Op: "propose", ID: "e" + id, Kind: "erasure", Key: ledger.HashReader(id), Operator: "publisher"}.Sign(keys["publisher"]),
		}
		_, h1 := block(t, one, h, txs...)
		_, h2 := block(t, two, h, txs...)
		_, h3 := block(t, three, h, txs...)
		if !bytes.Equal(h1, h2) || !bytes.Equal(h1, h3) {
			t.Fatalf("height %d: app hashes differ", h)
		}
		last = h1
	}
	reopened, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := reopened.Info(context.Background(), &abci.InfoRequest{})
	if info.LastBlockHeight != 20 || !bytes.Equal(info.LastBlockAppHash, last) {
		t.Fatalf("reopened at height %d hash %x, want 20 and %x", info.LastBlockHeight, info.LastBlockAppHash, last)
	}
	if len(reopened.State().Erasures) != 0 {
		// Erasures need two approvals; only proposed here.
		t.Fatalf("erasures with one approval: %v", reopened.State().Erasures)
	}
	if _, ok := reopened.State().Proposals["ec20"]; !ok {
		t.Fatal("an open proposal did not survive the restart")
	}
	for _, key := range reopened.State().Operators {
		if len(key) != ed25519.PublicKeySize {
			t.Fatalf("operator key of %d bytes after reopening", len(key))
		}
	}
}

// TestValidatorChangesReachCometBFT adds a validator and removes the genesis one through agreed
// changes: each committed change comes out of FinalizeBlock as a validator update, and the last
// validator cannot be removed.
func TestValidatorChangesReachCometBFT(t *testing.T) {
	keys, genesis := operators(t)
	a, err := ledger.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	second := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{10}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	if _, err := a.InitChain(context.Background(), &abci.InitChainRequest{AppStateBytes: genesis,
		Validators: []abci.ValidatorUpdate{{PubKeyType: "ed25519", PubKeyBytes: first, Power: 10}}}); err != nil {
		t.Fatal(err)
	}
	change := func(h int64, id string, key ed25519.PublicKey, power string) *abci.FinalizeBlockResponse {
		var txs [][]byte
		for i, op := range []string{"platform", "publisher", "library"} {
			tx := ledger.Tx{Op: "approve", ID: id, Operator: op}
			if i == 0 {
				tx = ledger.Tx{Op: "propose", ID: id, Kind: "validator", Key: base64.StdEncoding.EncodeToString(key), Value: power, Operator: op}
			}
			txs = append(txs, tx.Sign(keys[op]).Encode())
		}
		r, err := a.FinalizeBlock(context.Background(), &abci.FinalizeBlockRequest{Height: h, Txs: txs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Commit(context.Background(), &abci.CommitRequest{}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := change(1, "add", second, "20")
	if len(r.ValidatorUpdates) != 1 || !bytes.Equal(r.ValidatorUpdates[0].PubKeyBytes, second) || r.ValidatorUpdates[0].Power != 20 {
		t.Fatalf("adding a validator: updates %+v, results %+v", r.ValidatorUpdates, r.TxResults)
	}
	r = change(2, "remove", first, "0")
	if len(r.ValidatorUpdates) != 1 || !bytes.Equal(r.ValidatorUpdates[0].PubKeyBytes, first) || r.ValidatorUpdates[0].Power != 0 {
		t.Fatalf("removing a validator: updates %+v, results %+v", r.ValidatorUpdates, r.TxResults)
	}
	last := ledger.Tx{Op: "propose", ID: "remove-last", Kind: "validator", Key: base64.StdEncoding.EncodeToString(second), Value: "0", Operator: "cloud"}.Sign(keys["cloud"])
	if c, _ := a.CheckTx(context.Background(), &abci.CheckTxRequest{Tx: last.Encode()}); c.Code == 0 || !strings.Contains(c.Log, "last validator") {
		t.Fatalf("removing the last validator: %+v", c)
	}
}
