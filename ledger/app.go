package ledger

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	abci "github.com/cometbft/cometbft/abci/types"
	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"
	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/crypto/merkle"
)

// ProofType names the ledger's proof in a query answer: a Merkle proof of the leaf
// "path=value" against the app hash.
const ProofType = "dogear:leaf"

// App is the ledger as an ABCI application. Its app hash is the Merkle root of every entry of
// the state (leaves "path=value", sorted), so a query answer comes with a proof against the app
// hash that the validators signed. State is saved at each commit, so a restarted validator
// resumes from its last height and CometBFT replays the rest.
type App struct {
	abci.BaseApplication
	dir     string
	state   *State // committed
	pending *State // being finalized
	hash    []byte
}

// Open opens the application whose state lives in dir (created when new).
func Open(dir string) (*App, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	a := &App{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, err
	}
	a.state = &State{}
	if err := json.Unmarshal(b, a.state); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	a.hash = a.state.Hash()
	return a, nil
}

// State is the committed state (nil before genesis).
func (a *App) State() *State { return a.state }

// Leaves are the state's entries as sorted "path=value" byte strings, the app hash's leaves.
func (s *State) Leaves() [][]byte {
	var l []string
	l = append(l, "height="+strconv.FormatInt(s.Height, 10))
	for k, v := range s.Operators {
		l = append(l, "operator/"+k+"="+base64.StdEncoding.EncodeToString(v))
	}
	for k, v := range s.Policy {
		l = append(l, "policy/"+k+"="+strconv.Itoa(v))
	}
	for k, v := range s.Config {
		l = append(l, "config/"+k+"="+v)
	}
	for k, v := range s.Erasures {
		l = append(l, "erasure/"+k+"="+strconv.FormatInt(v, 10))
	}
	for k, v := range s.Validators {
		l = append(l, "validator/"+k+"="+strconv.FormatInt(v, 10))
	}
	for k, v := range s.Evidence {
		l = append(l, "evidence/"+k+"="+v)
	}
	for id, p := range s.Proposals {
		l = append(l, fmt.Sprintf("proposal/%s=%s|%s|%s|%s|%d", id, p.Kind, p.Key, p.Value, strings.Join(p.Approvals, ","), p.Height))
	}
	slices.Sort(l)
	out := make([][]byte, len(l))
	for i, x := range l {
		out[i] = []byte(x)
	}
	return out
}

// Hash is the Merkle root of the state's leaves.
func (s *State) Hash() []byte { return merkle.HashFromByteSlices(s.Leaves()) }

func (s *State) clone() *State {
	b, _ := json.Marshal(s)
	var c State
	_ = json.Unmarshal(b, &c)
	return &c
}

// Info tells CometBFT where the application is, so it replays only the blocks after that.
func (a *App) Info(context.Context, *abci.InfoRequest) (*abci.InfoResponse, error) {
	r := &abci.InfoResponse{Data: "dogear-ledger", Version: "1"}
	if a.state != nil {
		r.LastBlockHeight, r.LastBlockAppHash = a.state.Height, a.hash
	}
	return r, nil
}

// InitChain reads the Genesis from the genesis file's app_state.
func (a *App) InitChain(_ context.Context, req *abci.InitChainRequest) (*abci.InitChainResponse, error) {
	var g Genesis
	if err := json.Unmarshal(req.AppStateBytes, &g); err != nil {
		return nil, fmt.Errorf("genesis app_state: %w", err)
	}
	s, err := NewState(g)
	if err != nil {
		return nil, err
	}
	for _, v := range req.Validators {
		s.Validators[hex.EncodeToString(v.PubKeyBytes)] = v.Power
	}
	a.state, a.hash = s, s.Hash()
	return &abci.InitChainResponse{AppHash: a.hash}, nil
}

// CheckTx admits to the mempool only transactions that would apply now.
func (a *App) CheckTx(_ context.Context, req *abci.CheckTxRequest) (*abci.CheckTxResponse, error) {
	t, err := DecodeTx(req.Tx)
	if err == nil {
		err = a.state.Check(t)
	}
	if err != nil {
		return &abci.CheckTxResponse{Code: 1, Log: err.Error()}, nil
	}
	return &abci.CheckTxResponse{Code: abci.CodeTypeOK}, nil
}

// FinalizeBlock records the misbehaviour CometBFT proved, applies the block's transactions in
// order to a copy of the state, and returns the resulting app hash and the validator set's
// changes; Commit makes it the state.
func (a *App) FinalizeBlock(_ context.Context, req *abci.FinalizeBlockRequest) (*abci.FinalizeBlockResponse, error) {
	s := a.state.clone()
	s.Height = req.Height
	for _, m := range req.Misbehavior {
		s.Evidence[fmt.Sprintf("%d/%X", m.Height, m.Validator.Address)] = strings.TrimPrefix(m.Type.String(), "MISBEHAVIOR_TYPE_")
	}
	results := make([]*abci.ExecTxResult, len(req.Txs))
	for i, raw := range req.Txs {
		t, err := DecodeTx(raw)
		var log string
		if err == nil {
			log, err = s.Apply(t, req.Height)
		}
		if err != nil {
			results[i] = &abci.ExecTxResult{Code: 1, Log: err.Error()}
			continue
		}
		results[i] = &abci.ExecTxResult{Code: abci.CodeTypeOK, Log: log}
	}
	a.pending = s
	return &abci.FinalizeBlockResponse{TxResults: results, AppHash: s.Hash(), ValidatorUpdates: validatorUpdates(a.state, s)}, nil
}

// validatorUpdates are the changes of the validator set from before to after, in key order.
func validatorUpdates(before, after *State) []abci.ValidatorUpdate {
	var keys []string
	for k, p := range after.Validators {
		if before.Validators[k] != p {
			keys = append(keys, k)
		}
	}
	for k := range before.Validators {
		if _, kept := after.Validators[k]; !kept {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var ups []abci.ValidatorUpdate
	for _, k := range keys {
		pk, _ := hex.DecodeString(k)
		ups = append(ups, abci.NewValidatorUpdate(cmted25519.PubKey(pk), after.Validators[k]))
	}
	return ups
}

// Commit saves the finalized state (write then rename, so a crash leaves the old or the new).
func (a *App) Commit(context.Context, *abci.CommitRequest) (*abci.CommitResponse, error) {
	if a.pending == nil {
		return &abci.CommitResponse{}, nil
	}
	b, err := json.Marshal(a.pending)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(a.dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(a.dir, "state.json")); err != nil {
		return nil, err
	}
	a.state, a.hash, a.pending = a.pending, a.pending.Hash(), nil
	return &abci.CommitResponse{}, nil
}

// Query answers a path ("config/retention.days", "erasure/<hash>", "policy/config",
// "operator/<name>", "height") with its value and a Merkle proof of "path=value" against the
// committed app hash; a path with no entry answers code 1.
func (a *App) Query(_ context.Context, req *abci.QueryRequest) (*abci.QueryResponse, error) {
	if a.state == nil {
		return &abci.QueryResponse{Code: 1, Log: "no state yet"}, nil
	}
	leaves := a.state.Leaves()
	if req.Path == LeavesPath {
		return &abci.QueryResponse{Key: []byte(req.Path), Value: leavesAnswer(leaves), Height: a.state.Height}, nil
	}
	_, proofs := merkle.ProofsFromByteSlices(leaves)
	prefix := req.Path + "="
	for i, l := range leaves {
		if v, ok := strings.CutPrefix(string(l), prefix); ok {
			pb, err := proofs[i].ToProto().Marshal()
			if err != nil {
				return nil, err
			}
			return &abci.QueryResponse{Key: []byte(req.Path), Value: []byte(v), Height: a.state.Height,
				ProofOps: &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{{Type: ProofType, Key: []byte(req.Path), Data: pb}}}}, nil
		}
	}
	return &abci.QueryResponse{Code: 1, Log: "no entry " + req.Path, Height: a.state.Height}, nil
}

// VerifyQuery checks a query answer against an app hash (one a light client verified): the
// proof must lead from "path=value" to it.
func VerifyQuery(r *abci.QueryResponse, appHash []byte) error {
	if r.ProofOps == nil || len(r.ProofOps.Ops) != 1 || r.ProofOps.Ops[0].Type != ProofType {
		return errors.New("the answer carries no ledger proof")
	}
	var pp cmtcrypto.Proof
	if err := pp.Unmarshal(r.ProofOps.Ops[0].Data); err != nil {
		return err
	}
	p, err := merkle.ProofFromProto(&pp)
	if err != nil {
		return err
	}
	return p.Verify(appHash, []byte(string(r.Key)+"="+string(r.Value)))
}
