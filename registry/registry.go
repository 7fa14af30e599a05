// Package registry keeps every trained recommendation model with its evaluation metrics, and
// which version is serving, in an object store; promotion and rollback switch versions atomically.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/objstore"
	"github.com/dogear-dev/dogear/recommend"
)

// Metrics are a model's evaluation at training time, and the serving model's on the same data.
type Metrics struct {
	Candidate    recommend.Metrics  `json:"candidate"`
	Serving      *recommend.Metrics `json:"serving,omitempty"` // nil when nothing was serving
	HeldOut      int                `json:"held_out_interactions"`
	TrainSeconds float64            `json:"train_seconds"` // the search and the refit
	// Selection is every model the round tried on the held-out interactions and the winner,
	// which is then refit on all of them and is what this version serves.
	Selection *recommend.Selection `json:"selection,omitempty"`
	Promoted  bool                 `json:"promoted"`
	Reason    string               `json:"reason"`
	// AfterErasure: promoted because a reader was erased, so no earlier version may serve again
	// (it holds what the erasure removed).
	AfterErasure bool `json:"after_erasure,omitempty"`
}

// Version describes one stored model.
type Version struct {
	Version int                   `json:"version"`
	Created time.Time             `json:"created"`
	Params  recommend.ModelParams `json:"params"`
	Books   int                   `json:"books"`
	Readers int                   `json:"readers"`
	Metrics Metrics               `json:"metrics"`
	Serving bool                  `json:"serving"`
}

// ErrNoVersion means the version asked for does not exist.
var ErrNoVersion = errors.New("no such model version")

// Registry stores models in an object store (objstore.Store): a folder in embedded mode
// (DATA_DIR/models), S3 in distributed mode, beside the Parquet archive. Each version is
// v000001/model.gob and v000001/meta.json; the object CURRENT names the serving version. A
// version's objects are written before it can be promoted, and CURRENT is one atomic write, so a
// crash never serves a partial model.
type Registry struct {
	store objstore.Store

	mu      sync.RWMutex
	current *recommend.Artifact
	curVer  int
}

// Open opens the registry in store and loads the serving model, if any.
func Open(ctx context.Context, store objstore.Store) (*Registry, error) {
	r := &Registry{store: store}
	b, err := store.Get(ctx, "CURRENT")
	if errors.Is(err, objstore.ErrNotFound) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("registry: CURRENT holds %q, not a version number", b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(ctx, v); err != nil {
		return nil, err
	}
	return r, nil
}

func prefix(v int) string { return fmt.Sprintf("v%06d/", v) }

// Serving returns the serving model and its version; nil when none was promoted yet.
func (r *Registry) Serving() (*recommend.Artifact, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.current, r.curVer
}

// Save stores a new version and returns its number. It does not promote.
func (r *Registry) Save(a *recommend.Artifact, m Metrics) (int, error) {
	ctx := context.Background()
	r.mu.Lock()
	defer r.mu.Unlock()
	versions, err := r.versions(ctx)
	if err != nil {
		return 0, err
	}
	v := 1
	if len(versions) > 0 {
		v = versions[len(versions)-1] + 1
	}
	a.Version = v
	var model bytes.Buffer
	if err := a.Encode(&model); err != nil {
		return 0, err
	}
	meta, _ := json.MarshalIndent(Version{Version: v, Created: a.Created, Params: a.Params, Books: len(a.Books), Readers: a.Readers, Metrics: m}, "", "  ")
	// The model first: a version is listed (by its meta) only once its model is complete.
	if err := r.store.Put(ctx, prefix(v)+"model.gob", model.Bytes()); err != nil {
		return 0, err
	}
	return v, r.store.Put(ctx, prefix(v)+"meta.json", meta)
}

// Promote makes version v the serving model (forward or back). The version it replaces is kept
// as PREVIOUS, the one a rollback returns to.
func (r *Registry) Promote(v int) error {
	ctx := context.Background()
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.curVer
	if err := r.loadLocked(ctx, v); err != nil {
		return err
	}
	if prev != 0 && prev != v {
		if err := r.store.Put(ctx, "PREVIOUS", []byte(strconv.Itoa(prev)+"\n")); err != nil {
			return err
		}
	}
	return r.store.Put(ctx, "CURRENT", []byte(strconv.Itoa(v)+"\n"))
}

// Previous is the version the serving one replaced (0: none), as any process promoted it.
func (r *Registry) Previous(ctx context.Context) (int, error) {
	b, err := r.store.Get(ctx, "PREVIOUS")
	if errors.Is(err, objstore.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("registry: PREVIOUS holds %q, not a version number", b)
	}
	return v, nil
}

func (r *Registry) loadLocked(ctx context.Context, v int) error {
	a, err := r.read(ctx, v)
	if err != nil {
		return err
	}
	r.current, r.curVer = a, v
	return nil
}

// Load reads version v without serving it (to compare it with the serving one).
func (r *Registry) Load(v int) (*recommend.Artifact, error) {
	return r.read(context.Background(), v)
}

func (r *Registry) read(ctx context.Context, v int) (*recommend.Artifact, error) {
	if _, err := r.store.Get(ctx, prefix(v)+"meta.json"); err != nil {
		return nil, fmt.Errorf("%w: %d", ErrNoVersion, v)
	}
	b, err := r.store.Get(ctx, prefix(v)+"model.gob")
	if err != nil {
		return nil, fmt.Errorf("%w: %d (%v)", ErrNoVersion, v, err)
	}
	a, err := recommend.DecodeArtifact(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("model version %d is unreadable: %w", v, err)
	}
	return a, nil
}

// versions lists the complete versions (those with a meta.json), ascending.
func (r *Registry) versions(ctx context.Context) ([]int, error) {
	keys, err := r.store.List(ctx, "v")
	if err != nil {
		return nil, err
	}
	var vs []int
	for _, k := range keys {
		name, file, ok := strings.Cut(k, "/")
		if !ok || file != "meta.json" {
			continue
		}
		if v, err := strconv.Atoi(strings.TrimPrefix(name, "v")); err == nil {
			vs = append(vs, v)
		}
	}
	sort.Ints(vs)
	return vs, nil
}

// List describes every version, newest first.
func (r *Registry) List() ([]Version, error) {
	ctx := context.Background()
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs, err := r.versions(ctx)
	if err != nil {
		return nil, err
	}
	out := []Version{}
	for i := len(vs) - 1; i >= 0; i-- {
		b, err := r.store.Get(ctx, prefix(vs[i])+"meta.json")
		if err != nil {
			return nil, err
		}
		var m Version
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("model version %d: meta.json: %w", vs[i], err)
		}
		m.Serving = vs[i] == r.curVer && r.current != nil
		out = append(out, m)
	}
	return out, nil
}

// Refresh loads the serving version named by CURRENT if another process promoted a different
// one (the api role follows promotions made by the train role).
func (r *Registry) Refresh(ctx context.Context) error {
	b, err := r.store.Get(ctx, "CURRENT")
	if errors.Is(err, objstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("registry: CURRENT holds %q, not a version number", b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v == r.curVer && r.current != nil {
		return nil
	}
	return r.loadLocked(ctx, v)
}
