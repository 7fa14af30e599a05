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
	return &Server{db: db, log: log, catalog: cat, cfg: cfg, logger: logger, now: time.Now}, nil
}

// Close closes the store.
func (s *Server) Close() error { return s.db.Close() }

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
	if _, closer, err := s.db.Get(userKey(user)); err == nil {
		closer.Close()
		fail(w, http.StatusPaymentRequired, codeUserExists, "Username is already registered.")
		return
	}
	// The client sends md5(password) as its key; it is stored only as a bcrypt hash.
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), s.cfg.BcryptCost)
	if err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	if err := s.db.Set(userKey(user), hash, pebble.Sync); err != nil {
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
	hash, closer, err := s.db.Get(userKey(user))
	if err != nil {
		return ""
	}
	defer closer.Close()
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
	if err := s.db.Set(progressKey(user, doc), b, pebble.Sync); err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	reply(w, http.StatusOK, map[string]any{"document": doc, "timestamp": p.Timestamp})
}

// bookFor is the dogear book id of a KOReader document: a catalog book when the document was
// once matched by its title (from optional metadata), else the document hash itself.
func (s *Server) bookFor(doc string, meta map[string]any) (string, error) {
	if v, closer, err := s.db.Get(documentKey(doc)); err == nil {
		defer closer.Close()
		return string(v), nil
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return "", err
	}
	if title, _ := meta["title"].(string); title != "" {
		if id, ok := s.catalog.FindTitle(title); ok {
			return id, s.db.Set(documentKey(doc), []byte(id), pebble.Sync)
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
	v, closer, err := s.db.Get(progressKey(user, doc))
	if errors.Is(err, pebble.ErrNotFound) {
		reply(w, http.StatusOK, map[string]any{})
		return
	} else if err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	defer closer.Close()
	w.Header().Set("Content-Type", "application/json")
	w.Write(v)
}
