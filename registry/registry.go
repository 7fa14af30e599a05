// Package registry keeps every trained recommendation model with its evaluation metrics, and
// which version is serving; promotion and rollback switch the serving version atomically.
package registry

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/recommend"
)

// Metrics are a model's evaluation at training time, and the serving model's on the same data.
type Metrics struct {
	Candidate    recommend.Metrics  `json:"candidate"`
	Serving      *recommend.Metrics `json:"serving,omitempty"` // nil when nothing was serving
	HeldOut      int                `json:"held_out_interactions"`
	TrainSeconds float64            `json:"train_seconds"`
	Promoted     bool               `json:"promoted"`
	Reason       string             `json:"reason"`
}

// Version describes one stored model.
type Version struct {
	Version int                      `json:"version"`
	Created time.Time                `json:"created"`
	Params  recommend.NeighborParams `json:"params"`
	Books   int                      `json:"books"`
	Readers int                      `json:"readers"`
	Metrics Metrics                  `json:"metrics"`
	Serving bool                     `json:"serving"`
}

// ErrNoVersion means the version asked for does not exist.
var ErrNoVersion = errors.New("no such model version")

// Dir is the embedded registry: one folder per version under a root folder, and a CURRENT file
// naming the serving version. Writes go to a temporary name and are renamed into place, so a
// crash never leaves a half-written model visible.
type Dir struct {
	root string

	mu      sync.RWMutex
	current *recommend.Artifact
	curVer  int
}

// OpenDir opens (creating) a registry folder and loads the serving model, if any.
func OpenDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	d := &Dir{root: root}
	b, err := os.ReadFile(filepath.Join(root, "CURRENT"))
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("registry %s: CURRENT holds %q, not a version number", root, b)
	}
	if err := d.load(v); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Dir) dir(v int) string { return filepath.Join(d.root, fmt.Sprintf("v%06d", v)) }

// Serving returns the serving model and its version; nil when none was promoted yet.
func (d *Dir) Serving() (*recommend.Artifact, int) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.current, d.curVer
}

// Save stores a new version and returns its number. It does not promote.
func (d *Dir) Save(a *recommend.Artifact, m Metrics) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	versions, err := d.versions()
	if err != nil {
		return 0, err
	}
	v := 1
	if len(versions) > 0 {
		v = versions[len(versions)-1] + 1
	}
	a.Version = v
	tmp, err := os.MkdirTemp(d.root, ".new-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	if err := writeFile(filepath.Join(tmp, "model.gob"), func(w *bufio.Writer) error { return a.Encode(w) }); err != nil {
		return 0, err
	}
	meta := Version{Version: v, Created: a.Created, Params: a.Params, Books: len(a.Books), Readers: a.Readers, Metrics: m}
	if err := writeFile(filepath.Join(tmp, "meta.json"), func(w *bufio.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(meta)
	}); err != nil {
		return 0, err
	}
	return v, os.Rename(tmp, d.dir(v))
}

func writeFile(path string, fill func(*bufio.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := fill(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Promote makes version v the serving model (forward or back).
func (d *Dir) Promote(v int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := os.Stat(d.dir(v)); err != nil {
		return fmt.Errorf("%w: %d", ErrNoVersion, v)
	}
	if err := d.loadLocked(v); err != nil {
		return err
	}
	tmp := filepath.Join(d.root, ".CURRENT.tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.root, "CURRENT"))
}

func (d *Dir) load(v int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadLocked(v)
}

func (d *Dir) loadLocked(v int) error {
	f, err := os.Open(filepath.Join(d.dir(v), "model.gob"))
	if err != nil {
		return fmt.Errorf("%w: %d (%v)", ErrNoVersion, v, err)
	}
	defer f.Close()
	a, err := recommend.DecodeArtifact(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("model version %d is unreadable: %w", v, err)
	}
	d.current, d.curVer = a, v
	return nil
}

func (d *Dir) versions() ([]int, error) {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return nil, err
	}
	var vs []int
	for _, e := range entries {
		if v, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "v")); err == nil && e.IsDir() && strings.HasPrefix(e.Name(), "v") {
			vs = append(vs, v)
		}
	}
	sort.Ints(vs)
	return vs, nil
}

// List describes every version, newest first.
func (d *Dir) List() ([]Version, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	vs, err := d.versions()
	if err != nil {
		return nil, err
	}
	out := []Version{}
	for i := len(vs) - 1; i >= 0; i-- {
		b, err := os.ReadFile(filepath.Join(d.dir(vs[i]), "meta.json"))
		if err != nil {
			return nil, err
		}
		var m Version
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("model version %d: meta.json: %w", vs[i], err)
		}
		m.Serving = vs[i] == d.curVer && d.current != nil
		out = append(out, m)
	}
	return out, nil
}
