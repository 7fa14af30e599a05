package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cometbft/cometbft/crypto/merkle"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
)

// LeavesPath is the query that answers every leaf of the state at once (a JSON array of
// "path=value" strings): their Merkle root is the app hash, so the whole answer is checked
// against one verified header without a proof per entry.
const LeavesPath = "leaves"

// Submit signs tx as the operator and sends it to a validator's RPC (http://host:port), waiting
// until it is in a committed block. A transaction the ledger refuses comes back as an error
// with the ledger's reason.
func Submit(ctx context.Context, rpc string, tx Tx, key ed25519.PrivateKey) (height int64, result string, err error) {
	c, err := rpchttp.New(rpc)
	if err != nil {
		return 0, "", err
	}
	r, err := c.BroadcastTxCommit(ctx, tx.Sign(key).Encode())
	if err != nil && strings.Contains(err.Error(), "tx already exists in cache") {
		return 0, "", fmt.Errorf("this very transaction was sent before (an operator approves a proposal once): %w", err)
	}
	if err != nil {
		return 0, "", fmt.Errorf("sending to %s: %w", rpc, err)
	}
	if r.CheckTx.Code != 0 {
		return 0, "", fmt.Errorf("refused: %s", r.CheckTx.Log)
	}
	if r.TxResult.Code != 0 {
		return r.Height, "", fmt.Errorf("refused at height %d: %s", r.Height, r.TxResult.Log)
	}
	return r.Height, r.TxResult.Log, nil
}

// Snapshot is the ledger's state at one height, as a follower sees it after checking it against
// the app hash of a header it verified.
type Snapshot struct {
	Height   int64             `json:"height"`
	AppHash  []byte            `json:"app_hash"`
	Config   map[string]string `json:"config"`
	Erasures map[string]int64  `json:"erasures"` // reader hash → height agreed
	Evidence map[string]string `json:"evidence"`
}

// ReadLeaves asks a validator for every leaf of its committed state; the answer is not yet
// trusted (VerifyLeaves checks it).
func ReadLeaves(ctx context.Context, rpc string) (height int64, leaves [][]byte, err error) {
	c, err := rpchttp.New(rpc)
	if err != nil {
		return 0, nil, err
	}
	r, err := c.ABCIQuery(ctx, LeavesPath, nil)
	if err != nil {
		return 0, nil, err
	}
	if r.Response.Code != 0 {
		return 0, nil, errors.New(r.Response.Log)
	}
	var ls []string
	if err := json.Unmarshal(r.Response.Value, &ls); err != nil {
		return 0, nil, fmt.Errorf("leaves: %w", err)
	}
	for _, l := range ls {
		leaves = append(leaves, []byte(l))
	}
	return r.Response.Height, leaves, nil
}

// VerifyLeaves checks leaves against an app hash and reads them into a Snapshot.
func VerifyLeaves(height int64, leaves [][]byte, appHash []byte) (Snapshot, error) {
	if got := merkle.HashFromByteSlices(leaves); !bytes.Equal(got, appHash) {
		return Snapshot{}, fmt.Errorf("the state at height %d hashes to %X, not the verified app hash %X", height, got, appHash)
	}
	s := Snapshot{Height: height, AppHash: appHash, Config: map[string]string{}, Erasures: map[string]int64{}, Evidence: map[string]string{}}
	for _, l := range leaves {
		path, value, _ := strings.Cut(string(l), "=")
		kind, key, _ := strings.Cut(path, "/")
		switch kind {
		case "config":
			s.Config[key] = value
		case "erasure":
			s.Erasures[key], _ = strconv.ParseInt(value, 10, 64)
		case "evidence":
			s.Evidence[key] = value
		}
	}
	return s, nil
}

// leavesAnswer is the LeavesPath answer: the leaves as strings.
func leavesAnswer(leaves [][]byte) []byte {
	ls := make([]string, len(leaves))
	for i, l := range leaves {
		ls[i] = string(l)
	}
	b, _ := json.Marshal(ls)
	return b
}
