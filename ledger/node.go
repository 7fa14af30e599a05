package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto"
	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmtlog "github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/proxy"
	cmttypes "github.com/cometbft/cometbft/types"
)

// A validator's home folder holds CometBFT's config/ and data/ folders, the ledger application's
// state in app/, the operator's signing key and identity.json: the public half of it all, which
// the parties exchange to write the genesis.
const (
	identityFile    = "identity.json"
	operatorKeyFile = "operator.key"
	appDir          = "app"
)

// Identity is what one trust domain publishes about its validator: its name, its node id (for
// peers), the validator's consensus key and the operator's signing key.
type Identity struct {
	Name         string `json:"name"`
	NodeID       string `json:"node_id"`
	ValidatorKey []byte `json:"validator_key"` // ed25519 public key, signs blocks
	OperatorKey  []byte `json:"operator_key"`  // ed25519 public key, signs proposals and approvals
}

// Init creates a validator's home folder: CometBFT's config, a node key, a validator key and an
// operator key, all generated here and never leaving it; it returns the public Identity. An
// existing home is refused, so that keys are never overwritten.
func Init(home, name string) (Identity, error) {
	if !idPattern.MatchString(name) {
		return Identity{}, fmt.Errorf("name: %q is not 1 to 64 letters, digits, '.', '_' or '-'", name)
	}
	if _, err := os.Stat(filepath.Join(home, identityFile)); err == nil {
		return Identity{}, fmt.Errorf("%s already holds a validator (%s): refusing to overwrite its keys", home, identityFile)
	}
	cfg := nodeConfig(home)
	cmtcfg.EnsureRoot(home)
	if err := os.MkdirAll(filepath.Dir(cfg.PrivValidatorStateFile()), 0o700); err != nil {
		return Identity{}, err
	}
	pv, err := privval.GenFilePV(cfg.PrivValidatorKeyFile(), cfg.PrivValidatorStateFile(), func() (crypto.PrivKey, error) { return cmted25519.GenPrivKey(), nil })
	if err != nil {
		return Identity{}, err
	}
	pv.Save()
	nk, err := p2p.LoadOrGenNodeKey(cfg.NodeKeyFile())
	if err != nil {
		return Identity{}, err
	}
	opPub, opPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	if err := os.WriteFile(filepath.Join(home, operatorKeyFile), []byte(base64.StdEncoding.EncodeToString(opPriv)+"\n"), 0o600); err != nil {
		return Identity{}, err
	}
	id := Identity{Name: name, NodeID: string(nk.ID()), ValidatorKey: pv.Key.PubKey.Bytes(), OperatorKey: opPub}
	b, _ := json.MarshalIndent(id, "", "  ")
	return id, os.WriteFile(filepath.Join(home, identityFile), append(b, '\n'), 0o644)
}

// ReadIdentity reads the identity a home folder published.
func ReadIdentity(path string) (Identity, error) {
	var id Identity
	b, err := os.ReadFile(path)
	if err != nil {
		return id, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// OperatorKey reads the operator's private signing key from a home folder.
func OperatorKey(home string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(home, operatorKeyFile))
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%s: not a base64 ed25519 private key", filepath.Join(home, operatorKeyFile))
	}
	return k, nil
}

// MakeGenesis writes the genesis every validator starts from: the validators (power 10 each),
// the operators (one per identity, named as it) and the approval thresholds. NewState checks the
// thresholds here already, so a bad policy is refused before any node starts.
func MakeGenesis(chainID string, ids []Identity, policy map[string]int) (*cmttypes.GenesisDoc, error) {
	if chainID == "" {
		return nil, errors.New("chain-id: a name for the network is required")
	}
	g := Genesis{Operators: map[string][]byte{}, Policy: policy}
	doc := &cmttypes.GenesisDoc{ChainID: chainID, GenesisTime: time.Now().UTC().Truncate(time.Second),
		ConsensusParams: cmttypes.DefaultConsensusParams()}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Name < ids[j].Name })
	for _, id := range ids {
		if _, dup := g.Operators[id.Name]; dup {
			return nil, fmt.Errorf("identity: two validators are named %q", id.Name)
		}
		if len(id.ValidatorKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("identity %q: validator_key of %d bytes, want %d", id.Name, len(id.ValidatorKey), ed25519.PublicKeySize)
		}
		g.Operators[id.Name] = id.OperatorKey
		pk := cmted25519.PubKey(id.ValidatorKey)
		doc.Validators = append(doc.Validators, cmttypes.GenesisValidator{Address: pk.Address(), PubKey: pk, Power: 10, Name: id.Name})
	}
	if _, err := NewState(g); err != nil {
		return nil, err
	}
	doc.AppState, _ = json.Marshal(g)
	return doc, doc.ValidateAndComplete()
}

// NodeOptions are where a validator listens and whom it dials.
type NodeOptions struct {
	Home    string
	Genesis string   // path of the genesis file (default: the home's config/genesis.json)
	P2P     string   // host:port for peers
	RPC     string   // host:port for clients (proposals, queries, light clients)
	Peers   []string // node_id@host:port of the other validators
	// BlockInterval is how long a validator waits after a commit before the next height; the
	// ledger's latency from proposal to commit is about one to two intervals.
	BlockInterval time.Duration
	Log           io.Writer // CometBFT's log, errors only (nil: discarded)
}

// RunNode runs a validator until ctx ends. Its application state is in the home's app/ folder
// and CometBFT's blocks and state in data/, so a restart resumes where it stopped.
func RunNode(ctx context.Context, o NodeOptions) error {
	cfg := nodeConfig(o.Home)
	if o.Genesis != "" {
		abs, err := filepath.Abs(o.Genesis) // CometBFT reads a relative path from the home
		if err != nil {
			return err
		}
		cfg.Genesis = abs
	}
	cfg.P2P.ListenAddress = "tcp://" + o.P2P
	cfg.RPC.ListenAddress = "tcp://" + o.RPC
	cfg.P2P.PersistentPeers = strings.Join(o.Peers, ",")
	if o.BlockInterval > 0 {
		cfg.Consensus.TimeoutCommit = o.BlockInterval
	}
	if err := cfg.ValidateBasic(); err != nil {
		return fmt.Errorf("ledger node config: %w", err)
	}
	app, err := Open(filepath.Join(o.Home, appDir))
	if err != nil {
		return err
	}
	nk, err := p2p.LoadNodeKey(cfg.NodeKeyFile())
	if err != nil {
		return fmt.Errorf("%w (run dogear ledger init first)", err)
	}
	pv := privval.LoadFilePV(cfg.PrivValidatorKeyFile(), cfg.PrivValidatorStateFile())
	var logger cmtlog.Logger = cmtlog.NewNopLogger()
	if o.Log != nil {
		logger = cmtlog.NewFilter(cmtlog.NewTMLogger(cmtlog.NewSyncWriter(o.Log)), cmtlog.AllowError())
	}
	n, err := node.NewNode(ctx, cfg, pv, nk, proxy.NewLocalClientCreator(app), node.DefaultGenesisDocProviderFunc(cfg),
		cmtcfg.DefaultDBProvider, node.DefaultMetricsProvider(cfg.Instrumentation), logger)
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	if err := n.Stop(); err != nil {
		return err
	}
	n.Wait()
	return nil
}

// nodeConfig is CometBFT's configuration for a ledger validator. Peers on loopback and private
// networks are allowed (validators of different parties are dialled by address), and empty blocks
// are made so that a light client always finds the next header that signs an app hash.
func nodeConfig(home string) *cmtcfg.Config {
	cfg := cmtcfg.DefaultConfig()
	cfg.SetRoot(home)
	cfg.Moniker = filepath.Base(home)
	cfg.P2P.AddrBookStrict = false
	cfg.P2P.AllowDuplicateIP = true
	cfg.Consensus.TimeoutCommit = time.Second
	return cfg
}
