package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/dogear-dev/dogear/ledger"
)

const ledgerUsage = `usage: dogear ledger init --home DIR --name NAME
       dogear ledger genesis --chain-id ID --identities A.json,B.json,... --policy config=3,... --out FILE
       dogear ledger node --home DIR --p2p HOST:PORT --rpc HOST:PORT --peers ID@HOST:PORT,...
       dogear ledger propose --home DIR --rpc URL --id ID --kind KIND --key KEY [--value VALUE]
       dogear ledger approve --home DIR --rpc URL --id ID
       dogear ledger show --rpc URL [--header HEIGHT]
       dogear ledger follow --chain-id ID --primary URL --witnesses URL,... --trust-height H --trust-hash HEX --serve URL|--pipeline NS/NAME`

// ledgerCmd runs the configuration ledger's subcommands (package ledger).
func ledgerCmd(args []string) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Println(ledgerUsage)
		return nil
	}
	run := map[string]func([]string) error{"init": ledgerInit, "genesis": ledgerGenesis, "node": ledgerNode,
		"propose": ledgerPropose, "approve": ledgerApprove, "show": ledgerShow, "follow": ledgerFollow}[args[0]]
	if run == nil {
		return errors.New(ledgerUsage)
	}
	return run(args[1:])
}

func ledgerInit(args []string) error {
	fs := newFlags("ledger init", "Create a validator's home folder with its node, validator and operator keys, and print its public identity")
	home := fs.String("home", "", "the validator's home folder (created; an existing validator is refused)")
	name := fs.String("name", "", "the trust domain's name, which is also its operator's name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *home == "" || *name == "" {
		return errors.New("--home and --name are required")
	}
	id, err := ledger.Init(*home, *name)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(id)
}

func ledgerGenesis(args []string) error {
	fs := newFlags("ledger genesis", "Write the genesis file every validator starts from, out of the parties' identity.json files")
	chainID := fs.String("chain-id", "dogear-ledger", "the network's name")
	idFiles := fs.String("identities", "", "comma-separated identity.json files, one per trust domain")
	policy := fs.String("policy", "", "approvals per kind: config=N,erasure=N,policy=N,operator=N,validator=N (default: a 2/3 majority each)")
	out := fs.String("out", "genesis.json", "where to write the genesis")
	if err := parse(fs, args); err != nil {
		return err
	}
	var ids []ledger.Identity
	for _, f := range commaList(*idFiles) {
		id, err := ledger.ReadIdentity(f)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return errors.New("--identities: no identity.json given")
	}
	pol := map[string]int{}
	for _, k := range ledger.Kinds {
		pol[k] = len(ids)*2/3 + 1
	}
	for _, kv := range commaList(*policy) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil || !slices.Contains(ledger.Kinds, k) {
			return fmt.Errorf("--policy: %q is not kind=number with a kind of %s", kv, strings.Join(ledger.Kinds, ", "))
		}
		pol[k] = n
	}
	doc, err := ledger.MakeGenesis(*chainID, ids, pol)
	if err != nil {
		return err
	}
	return doc.SaveAs(*out)
}

func ledgerNode(args []string) error {
	fs := newFlags("ledger node", "Run a validator of the configuration ledger (CometBFT) until interrupted")
	o := ledger.NodeOptions{Log: os.Stderr}
	fs.StringVar(&o.Home, "home", "", "the validator's home folder (dogear ledger init)")
	fs.StringVar(&o.Genesis, "genesis", "", "the genesis file (default: config/genesis.json in the home)")
	fs.StringVar(&o.P2P, "p2p", "0.0.0.0:26656", "address for the other validators")
	fs.StringVar(&o.RPC, "rpc", "127.0.0.1:26657", "address for proposals, queries and followers")
	peers := fs.String("peers", "", "the other validators: NODE_ID@HOST:PORT,...")
	fs.DurationVar(&o.BlockInterval, "block-interval", time.Second, "pause after each committed block")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Home == "" {
		return errors.New("--home is required")
	}
	o.Peers = commaList(*peers)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ledger.RunNode(ctx, o)
}

// ledgerSubmit reads the flags every proposal and approval has and submits the transaction.
func ledgerSubmit(name, summary string, args []string, propose bool) error {
	fs := newFlags(name, summary)
	home := fs.String("home", "", "the operator's home folder (its operator.key and identity.json)")
	rpc := fs.String("rpc", "http://127.0.0.1:26657", "a validator's RPC")
	tx := ledger.Tx{Op: "approve"}
	fs.StringVar(&tx.ID, "id", "", "the proposal's id")
	if propose {
		tx.Op = "propose"
		fs.StringVar(&tx.Kind, "kind", "", "config, erasure, policy, operator or validator")
		fs.StringVar(&tx.Key, "key", "", "what changes: a config key, a reader hash, a kind, an operator's name, a validator's key")
		fs.StringVar(&tx.Value, "value", "", "the new value (empty removes an operator)")
	}
	var reader *string
	if propose {
		reader = fs.String("reader", "", "with --kind erasure: the reader id, hashed here so that the ledger never sees it")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *home == "" || tx.ID == "" {
		return errors.New("--home and --id are required")
	}
	if reader != nil && *reader != "" {
		tx.Key = ledger.HashReader(*reader)
	}
	id, err := ledger.ReadIdentity(*home + "/identity.json")
	if err != nil {
		return err
	}
	key, err := ledger.OperatorKey(*home)
	if err != nil {
		return err
	}
	tx.Operator = id.Name
	h, result, err := ledger.Submit(context.Background(), *rpc, tx, key)
	if err != nil {
		return err
	}
	fmt.Printf("height %d: %s\n", h, result)
	return nil
}

func ledgerPropose(args []string) error {
	return ledgerSubmit("ledger propose", "Propose a change, signed by this home's operator (counts as its approval)", args, true)
}

func ledgerApprove(args []string) error {
	return ledgerSubmit("ledger approve", "Approve an open proposal, signed by this home's operator", args, false)
}

func ledgerShow(args []string) error {
	fs := newFlags("ledger show", "Print the ledger's committed state as a validator reports it, or a header's hash to trust")
	rpc := fs.String("rpc", "http://127.0.0.1:26657", "a validator's RPC")
	header := fs.Int64("header", 0, "print the hash of the header at this height instead (what a follower trusts)")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx := context.Background()
	if *header > 0 {
		c, err := rpchttp.New(*rpc)
		if err != nil {
			return err
		}
		b, err := c.Block(ctx, header)
		if err != nil {
			return err
		}
		fmt.Printf("%X\n", b.Block.Hash())
		return nil
	}
	h, leaves, err := ledger.ReadLeaves(ctx, *rpc)
	if err != nil {
		return err
	}
	fmt.Printf("height %d\n", h)
	for _, l := range leaves {
		fmt.Println(string(l))
	}
	return nil
}

func ledgerFollow(args []string) error {
	fs := newFlags("ledger follow", "Follow the ledger with a light client and apply what it commits to a running embedded dogear serve or a ReadingPipeline")
	f := ledger.Follower{}
	fs.StringVar(&f.ChainID, "chain-id", "dogear-ledger", "the network's name")
	fs.StringVar(&f.Primary, "primary", "http://127.0.0.1:26657", "the validator RPC to read from")
	witnesses := fs.String("witnesses", "", "other validators' RPCs, comma-separated (at least one: they catch a lying primary)")
	fs.Int64Var(&f.TrustHeight, "trust-height", 1, "height of the header trusted out of band")
	trustHash := fs.String("trust-hash", "", "hex hash of that header (dogear ledger show --header H, from a party you trust)")
	fs.DurationVar(&f.TrustPeriod, "trust-period", 14*24*time.Hour, "how old the trusted header may be")
	fs.DurationVar(&f.Interval, "interval", time.Second, "how often to look for a new height")
	fs.DurationVar(&f.ClockDrift, "max-clock-drift", 10*time.Second, "how far validators' clocks may differ")
	fs.DurationVar(&f.BlockLag, "max-block-lag", 10*time.Second, "how long a witness may take to reach the primary's height")
	serveURL := fs.String("serve", "", "apply model pins and erasures to this embedded dogear serve (http://127.0.0.1:8080)")
	pipeline := fs.String("pipeline", "", "or apply pipeline.image and recommender.interval to this ReadingPipeline (NAMESPACE/NAME)")
	token := fs.String("token", "", "an admin token for it (dogear token --admin), when it checks them")
	addr := fs.String("addr", "127.0.0.1:8091", "where GET /status reports the height and app hash applied")
	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if f.TrustHash, err = hex.DecodeString(*trustHash); err != nil || len(f.TrustHash) != 32 {
		return errors.New("--trust-hash: the 64 hex digits of a header hash are required")
	}
	f.Witnesses = commaList(*witnesses)
	if len(f.Witnesses) == 0 {
		return errors.New("--witnesses: at least one other validator is required")
	}
	switch ns, name, ok := strings.Cut(*pipeline, "/"); {
	case *serveURL != "" && *pipeline != "":
		return errors.New("--serve and --pipeline: a follower applies to one of them")
	case *serveURL != "":
		f.Apply = (&ledger.ServeApplier{URL: *serveURL, Token: *token}).Apply
	case ok:
		cl, err := kubeClient()
		if err != nil {
			return err
		}
		f.Apply = (&ledger.PipelineApplier{Client: cl, Namespace: ns, Name: name}).Apply
	default:
		return errors.New("--serve URL or --pipeline NAMESPACE/NAME: where to apply the ledger")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", f.ServeStatus)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	return f.Run(ctx)
}

// commaList splits a comma-separated flag value, dropping empty items.
func commaList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item != "" {
			out = append(out, item)
		}
	}
	return out
}
