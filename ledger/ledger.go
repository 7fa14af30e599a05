// Package ledger is the configuration ledger that parties who do not fully trust each other run
// on CometBFT: a deterministic ABCI application of configuration entries and erasure records,
// changed only by ed25519-signed proposals that reach a k-of-n approval per kind of change.
package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Kinds of change, each with its own approval threshold.
const (
	KindConfig    = "config"    // a configuration entry: retention, a pinned model, who may write
	KindErasure   = "erasure"   // a reader's erasure, recorded by the hash of their id
	KindPolicy    = "policy"    // the threshold of a kind, this one included
	KindOperator  = "operator"  // add, rotate or remove an operator's key
	KindValidator = "validator" // add a validator, change its power or remove it (power 0)
)

// Kinds are every kind of change, each with its own threshold in the policy.
var Kinds = []string{KindConfig, KindErasure, KindPolicy, KindOperator, KindValidator}

// State is the ledger's whole state. Every change goes through Apply, in block order, so every
// validator holds the same State at every height.
type State struct {
	Height int64 `json:"height"`
	// Operators are the parties' public keys by name.
	Operators map[string][]byte `json:"operators"`
	// Policy is how many operators must approve a change of each kind.
	Policy map[string]int `json:"policy"`
	// Config holds the agreed configuration entries.
	Config map[string]string `json:"config"`
	// Erasures holds, by the SHA-256 of a reader's id, the height their erasure was agreed at.
	Erasures map[string]int64 `json:"erasures"`
	// Proposals waiting for approvals, by id.
	Proposals map[string]*Proposal `json:"proposals"`
	// Validators are CometBFT's validator set: voting power by hex ed25519 public key.
	Validators map[string]int64 `json:"validators"`
	// Evidence of misbehaviour CometBFT committed ("<height>/<validator address>" → kind, e.g.
	// DUPLICATE_VOTE for a validator that signed two blocks at one height).
	Evidence map[string]string `json:"evidence"`
}

// Proposal is a change and who approved it so far.
type Proposal struct {
	Kind      string   `json:"kind"`
	Key       string   `json:"key"`
	Value     string   `json:"value"`
	Approvals []string `json:"approvals"` // operator names, sorted
	Height    int64    `json:"height"`    // when proposed
}

// Genesis is the ledger's starting state: the operators and the thresholds.
type Genesis struct {
	Operators map[string][]byte `json:"operators"`
	Policy    map[string]int    `json:"policy"`
}

// NewState is the state at genesis; it refuses thresholds that are not between 1 and the number
// of operators, and operators without a 32-byte ed25519 key.
func NewState(g Genesis) (*State, error) {
	s := &State{Operators: map[string][]byte{}, Policy: map[string]int{}, Config: map[string]string{},
		Erasures: map[string]int64{}, Proposals: map[string]*Proposal{}, Validators: map[string]int64{}, Evidence: map[string]string{}}
	for name, key := range g.Operators {
		if len(key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("genesis: operator %q: key of %d bytes, want an ed25519 public key of %d", name, len(key), ed25519.PublicKeySize)
		}
		s.Operators[name] = key
	}
	for _, k := range Kinds {
		t, ok := g.Policy[k]
		if !ok || t < 1 || t > len(s.Operators) {
			return nil, fmt.Errorf("genesis: policy %q is %d: want 1 to %d operators", k, t, len(s.Operators))
		}
		s.Policy[k] = t
	}
	return s, nil
}

// Tx is one signed transaction: a proposal (Op "propose", with Kind, Key and Value) or an
// approval of one (Op "approve"). Sig is the operator's ed25519 signature of SignBytes.
type Tx struct {
	Op       string `json:"op"`
	ID       string `json:"id"`
	Kind     string `json:"kind,omitempty"`
	Key      string `json:"key,omitempty"`
	Value    string `json:"value,omitempty"`
	Operator string `json:"operator"`
	Sig      []byte `json:"sig,omitempty"`
}

// SignBytes are what an operator signs: the transaction without its signature, as JSON with
// fields in declaration order (deterministic).
func (t Tx) SignBytes() []byte {
	t.Sig = nil
	b, _ := json.Marshal(t)
	return b
}

// Sign signs the transaction with an operator's private key.
func (t Tx) Sign(key ed25519.PrivateKey) Tx {
	t.Sig = ed25519.Sign(key, t.SignBytes())
	return t
}

// Encode is the transaction as sent to CometBFT.
func (t Tx) Encode() []byte {
	b, _ := json.Marshal(t)
	return b
}

// DecodeTx parses a transaction, refusing unknown fields.
func DecodeTx(b []byte) (Tx, error) {
	var t Tx
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Tx{}, fmt.Errorf("transaction: %v", err)
	}
	return t, nil
}

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// validatorID is how the state names a validator: the hex of the public key that a validator
// proposal gives in base64 (as identity.json has it), since base64's '=' would be ambiguous in a
// "path=value" leaf.
func validatorID(b64 string) string {
	b, _ := base64.StdEncoding.DecodeString(b64)
	return hex.EncodeToString(b)
}

// HashReader is how an erasure names a reader: the hex SHA-256 of their id. The ledger never
// holds the id.
func HashReader(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Check refuses a transaction that cannot apply to s, naming the field: unsigned or signed by
// someone else, an unknown operator or kind, a malformed erasure or policy, an approval of an
// unknown proposal, a second approval by one operator.
func (s *State) Check(t Tx) error {
	key, ok := s.Operators[t.Operator]
	if !ok {
		return fmt.Errorf("operator: %q is not an operator of this ledger", t.Operator)
	}
	if !ed25519.Verify(key, t.SignBytes(), t.Sig) {
		return fmt.Errorf("sig: not a signature of this transaction by operator %q", t.Operator)
	}
	if !idPattern.MatchString(t.ID) {
		return fmt.Errorf("id: %q is not 1 to 64 letters, digits, '.', '_' or '-'", t.ID)
	}
	switch t.Op {
	case "propose":
		if _, exists := s.Proposals[t.ID]; exists {
			return fmt.Errorf("id: proposal %q already exists", t.ID)
		}
		return s.checkChange(t.Kind, t.Key, t.Value)
	case "approve":
		p, exists := s.Proposals[t.ID]
		if !exists {
			return fmt.Errorf("id: no open proposal %q", t.ID)
		}
		if slices.Contains(p.Approvals, t.Operator) {
			return fmt.Errorf("operator: %q already approved proposal %q", t.Operator, t.ID)
		}
		return nil
	}
	return fmt.Errorf("op: %q, want propose or approve", t.Op)
}

func (s *State) checkChange(kind, key, value string) error {
	switch kind {
	case KindConfig:
		if key == "" || len(key) > 128 || len(value) > 4096 || strings.Contains(key, "=") {
			return fmt.Errorf("key: a configuration key of 1 to 128 bytes without '=', with a value of at most 4096")
		}
	case KindErasure:
		if !hashPattern.MatchString(key) {
			return fmt.Errorf("key: an erasure names the reader by the hex SHA-256 of their id (ledger.HashReader), never the id")
		}
	case KindPolicy:
		t, err := strconv.Atoi(value)
		if !slices.Contains(Kinds, key) {
			return fmt.Errorf("key: policy of %q, want one of %s", key, strings.Join(Kinds, ", "))
		}
		if err != nil || t < 1 || t > len(s.Operators) {
			return fmt.Errorf("value: threshold %q, want 1 to %d operators", value, len(s.Operators))
		}
	case KindOperator:
		if !idPattern.MatchString(key) {
			return fmt.Errorf("key: operator name %q", key)
		}
		if value == "" { // removal
			if _, ok := s.Operators[key]; !ok {
				return fmt.Errorf("key: no operator %q to remove", key)
			}
			for _, k := range Kinds {
				if s.Policy[k] > len(s.Operators)-1 {
					return fmt.Errorf("key: removing %q would leave %d operators, fewer than policy %q needs (%d): lower it first", key, len(s.Operators)-1, k, s.Policy[k])
				}
			}
			return nil
		}
		if b, err := base64.StdEncoding.DecodeString(value); err != nil || len(b) != ed25519.PublicKeySize {
			return fmt.Errorf("value: an operator's key is a base64 ed25519 public key")
		}
	case KindValidator:
		if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != ed25519.PublicKeySize {
			return fmt.Errorf("key: a validator is named by its base64 ed25519 public key (validator_key in its identity.json)")
		}
		power, err := strconv.ParseInt(value, 10, 64)
		if err != nil || power < 0 || power > 1000 {
			return fmt.Errorf("value: voting power %q, want 0 (remove) to 1000", value)
		}
		if _, ok := s.Validators[validatorID(key)]; power == 0 && !ok {
			return fmt.Errorf("key: no validator %s to remove", key)
		}
		if power == 0 && len(s.Validators) <= 1 {
			return fmt.Errorf("key: the last validator cannot be removed")
		}
	default:
		return fmt.Errorf("kind: %q, want one of %s", kind, strings.Join(Kinds, ", "))
	}
	return nil
}

// Apply applies a checked transaction at height h and says what happened: a proposal is
// recorded with its proposer's approval; once approvals reach the kind's threshold the change
// takes effect and the proposal closes.
func (s *State) Apply(t Tx, h int64) (string, error) {
	if err := s.Check(t); err != nil {
		return "", err
	}
	var p *Proposal
	if t.Op == "propose" {
		p = &Proposal{Kind: t.Kind, Key: t.Key, Value: t.Value, Height: h}
		s.Proposals[t.ID] = p
	} else {
		p = s.Proposals[t.ID]
	}
	p.Approvals = append(p.Approvals, t.Operator)
	slices.Sort(p.Approvals)
	need := s.Policy[p.Kind]
	if len(p.Approvals) < need {
		return fmt.Sprintf("proposal %s: %d of %d approvals", t.ID, len(p.Approvals), need), nil
	}
	delete(s.Proposals, t.ID)
	// Re-check against the state now: it may have changed since the proposal (an operator
	// removed, a threshold raised).
	if err := s.checkChange(p.Kind, p.Key, p.Value); err != nil {
		return "", fmt.Errorf("proposal %s no longer applies: %w", t.ID, err)
	}
	switch p.Kind {
	case KindConfig:
		s.Config[p.Key] = p.Value
	case KindErasure:
		s.Erasures[p.Key] = h
	case KindPolicy:
		s.Policy[p.Key], _ = strconv.Atoi(p.Value)
	case KindOperator:
		if p.Value == "" {
			delete(s.Operators, p.Key)
		} else {
			s.Operators[p.Key], _ = base64.StdEncoding.DecodeString(p.Value)
		}
	case KindValidator:
		if power, _ := strconv.ParseInt(p.Value, 10, 64); power == 0 {
			delete(s.Validators, validatorID(p.Key))
		} else {
			s.Validators[validatorID(p.Key)] = power
		}
	}
	return fmt.Sprintf("proposal %s: %s %s committed with %d of %d approvals", t.ID, p.Kind, p.Key, len(p.Approvals), need), nil
}
