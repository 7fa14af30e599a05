// Package kosync is a KOReader progress-sync server, compatible with koreader-sync-server, so
// unmodified KOReader devices sync through dogear; every progress update is also a dogear event.
package kosync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/internal/pebbledb"
)

// The protocol's error codes, as koreader-sync-server sends them.
const (
	codeInternal             = 2000
	codeUnauthorized         = 2001
	codeUserExists           = 2002
	codeInvalidFields        = 2003
	codeDocumentMissing      = 2004
	codeRegistrationDisabled = 2005
)

// Config says how the server behaves.
type Config struct {
	AllowRegistration bool
	// BcryptCost is the cost of hashing stored keys (bcrypt.DefaultCost when 0).
	BcryptCost int
}

// Server holds kosync users and their latest progress per document, in its own Pebble store.
type Server struct {
	dir     string
	mu      sync.RWMutex // guards db: shared for every use, exclusive to reopen after erasure
	db      *pebble.DB
	log     eventlog.Log
	catalog *catalog.Catalog
	cfg     Config
	logger  *slog.Logger
	now     func() time.Time
}

// Open opens (creating) the kosync store in dir; progress events go to log.
func Open(dir string, log eventlog.Log, cat *catalog.Catalog, cfg Config, logger *slog.Logger) (*Server, error) {
	db, err := pebbledb.Open(dir, 8<<20)
	if err != nil {
		return nil, err
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	return &Server{dir: dir, db: db, log: log, catalog: cat, cfg: cfg, logger: logger, now: time.Now}, nil
}

// Close closes the store.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}

// get reads a key, copying the value; ok is false when it is absent.
func (s *Server) get(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

func (s *Server) set(key, value []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Set(key, value, pebble.Sync)
}

// EraseUser deletes the user and all their progress, and scrubs the store so no byte of them
// remains in its files.
func (s *Server) EraseUser(user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Point deletes, not a range deletion: a range tombstone's bounds would carry the user's
	// name into table metadata until it reaches the last level.
	b := s.db.NewBatch()
	b.Delete(userKey(user), nil)
	prefix := progressKey(user, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(prefix[:len(prefix):len(prefix)], 0xff)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		b.Delete(append([]byte(nil), it.Key()...), nil)
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := pebbledb.Scrub(s.db, []byte("m/scrub")); err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return err
	}
	db, err := pebbledb.Open(s.dir, 8<<20)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

// ExportUser returns everything stored for the user: whether they have an account, and their
// progress per document.
func (s *Server) ExportUser(user string) (bool, []Progress, error) {
	_, exists, err := s.get(userKey(user))
	if err != nil {
		return false, nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	prefix := progressKey(user, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(prefix[:len(prefix):len(prefix)], 0xff)})
	if err != nil {
		return false, nil, err
	}
	defer it.Close()
	var out []Progress
	for ok := it.First(); ok; ok = it.Next() {
		var p Progress
		if json.Unmarshal(it.Value(), &p) == nil {
			out = append(out, p)
		}
	}
	return exists, out, it.Error()
}

// Register adds the protocol's routes under prefix ("" for the root paths KOReader uses when the
// whole host is a sync server).
func (s *Server) Register(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("POST "+prefix+"/users/create", s.create)
	mux.HandleFunc("GET "+prefix+"/users/auth", s.auth)
	mux.HandleFunc("PUT "+prefix+"/syncs/progress", s.putProgress)
	mux.HandleFunc("GET "+prefix+"/syncs/progress/{document}", s.getProgress)
	mux.HandleFunc("GET "+prefix+"/healthcheck", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string]string{"state": "OK"})
	})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status, code int, msg string) {
	reply(w, status, map[string]any{"code": code, "message": msg})
}

func userKey(u string) []byte          { return []byte("u/" + u) }
func progressKey(u, doc string) []byte { return []byte("p/" + u + "/" + doc) }
func documentKey(doc string) []byte    { return []byte("d/" + doc) }

// validKey is the protocol's rule for usernames and documents: non-empty, no ':'.
func validKey(s string) bool { return s != "" && !strings.Contains(s, ":") && len(s) <= 255 }

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.AllowRegistration {
		fail(w, http.StatusPaymentRequired, codeRegistrationDisabled, "User registration is disabled.")
		return
	}
	var req struct {
		Username any `json:"username"`
		Password any `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: body must be JSON with username and password")
		return
	}
	user, _ := req.Username.(string)
	pass, _ := req.Password.(string)
	if !validKey(user) || pass == "" || strings.ContainsAny(user, "/") {
		fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: username (no ':' or '/') and password are required")
		return
	}
	if _, exists, err := s.get(userKey(user)); err != nil || exists {
		fail(w, http.StatusPaymentRequired, codeUserExists, "Username is already registered.")
		return
	}
	// The client sends md5(password) as its key; it is stored only as a bcrypt hash.
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), s.cfg.BcryptCost)
	if err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	if err := s.set(userKey(user), hash); err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	reply(w, http.StatusCreated, map[string]string{"username": user})
}

// authorize checks the x-auth-user and x-auth-key headers; "" means unauthorized.
func (s *Server) authorize(r *http.Request) string {
	user, key := r.Header.Get("x-auth-user"), r.Header.Get("x-auth-key")
	if user == "" || key == "" {
		return ""
	}
	hash, ok, err := s.get(userKey(user))
	if err != nil || !ok {
		return ""
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(key)) != nil {
		return ""
	}
	return user
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	if s.authorize(r) == "" {
		fail(w, http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
		return
	}
	reply(w, http.StatusOK, map[string]string{"authorized": "OK"})
}

// Progress is what the server keeps per user and document.
type Progress struct {
	Document   string  `json:"document"`
	Percentage float64 `json:"percentage"`
	Progress   string  `json:"progress"`
	Device     string  `json:"device"`
	DeviceID   string  `json:"device_id,omitempty"`
	Timestamp  int64   `json:"timestamp"`
}

func (s *Server) putProgress(w http.ResponseWriter, r *http.Request) {
	user := s.authorize(r)
	if user == "" {
		fail(w, http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
		return
	}
	var req struct {
		Document   any            `json:"document"`
		Progress   any            `json:"progress"`
		Percentage any            `json:"percentage"`
		Device     any            `json:"device"`
		DeviceID   any            `json:"device_id"`
		Metadata   map[string]any `json:"metadata"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: body must be a JSON object")
		return
	}
	doc, _ := req.Document.(string)
	if !validKey(doc) {
		fail(w, http.StatusForbidden, codeDocumentMissing, "Field 'document' not provided.")
		return
	}
	progress, _ := req.Progress.(string)
	device, _ := req.Device.(string)
	pct, isNum := req.Percentage.(float64)
	if !isNum || progress == "" || device == "" || pct < 0 || pct > 100 {
		fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: percentage (a number), progress and device are required")
		return
	}
	deviceID, _ := req.DeviceID.(string)
	now := s.now()
	p := Progress{Document: doc, Percentage: pct, Progress: progress, Device: device, DeviceID: deviceID, Timestamp: now.Unix()}
	book, err := s.bookFor(doc, req.Metadata)
	if err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	if err := s.emit(r.Context(), user, book, p, now); err != nil {
		s.logger.Error("kosync: appending the progress event failed", "err", err)
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	b, _ := json.Marshal(p)
	if err := s.set(progressKey(user, doc), b); err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	reply(w, http.StatusOK, map[string]any{"document": doc, "timestamp": p.Timestamp})
}

// bookFor is the dogear book id of a KOReader document: a catalog book when the document was
// once matched by its title (from optional metadata), else the document hash itself.
func (s *Server) bookFor(doc string, meta map[string]any) (string, error) {
	if v, ok, err := s.get(documentKey(doc)); err != nil || ok {
		return string(v), err
	}
	if title, _ := meta["title"].(string); title != "" {
		if id, ok := s.catalog.FindTitle(title); ok {
			return id, s.set(documentKey(doc), []byte(id))
		}
	}
	return doc, nil
}

func (s *Server) emit(ctx context.Context, user, book string, p Progress, now time.Time) error {
	pos := p.Percentage
	if pos > 1 {
		pos /= 100 // some clients send percent
	}
	raw, _ := json.Marshal(map[string]any{
		"id":   fmt.Sprintf("kosync-%s-%s-%d-%g", user, p.Document, p.Timestamp, p.Percentage),
		"type": "progress", "reader": user, "book": book, "time": now.UTC().Format(time.RFC3339Nano),
		"position": pos, "device": p.Device,
		"props": map[string]any{"kosync_document": p.Document, "kosync_progress": p.Progress, "kosync_device_id": p.DeviceID},
	})
	e, ferr := event.Parse(raw, now)
	if ferr != nil {
		return ferr
	}
	_, err := s.log.Append(ctx, []eventlog.Entry{{ID: e.ID, Key: e.Reader, Value: e.Marshal()}})
	return err
}

func (s *Server) getProgress(w http.ResponseWriter, r *http.Request) {
	user := s.authorize(r)
	if user == "" {
		fail(w, http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
		return
	}
	doc := r.PathValue("document")
	if !validKey(doc) {
		fail(w, http.StatusForbidden, codeDocumentMissing, "Field 'document' not provided.")
		return
	}
	v, ok, err := s.get(progressKey(user, doc))
	if err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	if !ok {
		reply(w, http.StatusOK, map[string]any{})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(v)
}
