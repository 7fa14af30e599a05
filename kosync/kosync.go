// Package kosync is a KOReader progress-sync server, compatible with koreader-sync-server, so
// unmodified KOReader devices sync through dogear; every progress update is also a dogear event.
package kosync

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
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
	// AllowRegistration lets anyone create an account with POST /users/create. Such an account
	// writes to the reader ReaderPrefix+username: with a prefix (the server sets "kosync:" when
	// auth is on) open registration can never write into an existing reader's data. Accounts for
	// an existing reader are made by that reader or an admin (Link).
	AllowRegistration bool
	ReaderPrefix      string
	// BcryptCost is the cost of hashing stored keys (bcrypt.DefaultCost when 0).
	BcryptCost int
}

// Limits of the protocol's fields. A username becomes part of a reader id.
const (
	MaxUsername = 64
	MaxPassword = 72 // bcrypt reads no further
)

// Server holds kosync accounts and their latest progress per document, in its own Pebble store.
type Server struct {
	dir     string
	mu      sync.RWMutex // guards db: shared for every use, exclusive to reopen after erasure
	db      *pebble.DB
	log     eventlog.Log
	gate    *ingest.Gate
	catalog *catalog.Catalog
	cfg     Config
	logger  *slog.Logger
	now     func() time.Time
	logins  *logins
}

// Open opens (creating) the kosync store in dir; progress events go to log through gate, the
// limits every ingest route shares.
func Open(dir string, log eventlog.Log, gate *ingest.Gate, cat *catalog.Catalog, cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	lg, err := newLogins(cfg.BcryptCost)
	if err != nil {
		return nil, err
	}
	db, err := pebbledb.Open(dir, 8<<20, pebbledb.DefaultMemTableBytes)
	if err != nil {
		return nil, err
	}
	return &Server{dir: dir, db: db, log: log, gate: gate, catalog: cat, cfg: cfg, logger: logger, now: time.Now, logins: lg}, nil
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

// account is what the store keeps per username: the bcrypt hash of the key the device sends, and
// the dogear reader its progress belongs to. Stores written before accounts had a reader hold
// the bare hash, and the username is the reader.
type account struct {
	Hash   []byte `json:"hash"`
	Reader string `json:"reader"`
}

func decodeAccount(user string, v []byte) account {
	var a account
	if len(v) > 0 && v[0] == '{' && json.Unmarshal(v, &a) == nil {
		return a
	}
	return account{Hash: v, Reader: user}
}

// accountsOf lists the usernames whose progress belongs to reader.
func (s *Server) accountsOf(reader string) ([]string, error) {
	it, err := s.db.NewIter(prefixRange(userKey("")))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var users []string
	for ok := it.First(); ok; ok = it.Next() {
		user := strings.TrimPrefix(string(it.Key()), "u/")
		if decodeAccount(user, it.Value()).Reader == reader {
			users = append(users, user)
		}
	}
	return users, it.Error()
}

func prefixRange(prefix []byte) *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: prefix, UpperBound: append(prefix[:len(prefix):len(prefix)], 0xff)}
}

// EraseReader deletes every account of the reader and all their progress, and scrubs the store
// so no byte of them remains in its files. It reports whether the reader had any account.
func (s *Server) EraseReader(reader string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	users, err := s.accountsOf(reader)
	if err != nil || len(users) == 0 {
		return false, err
	}
	// Point deletes, not a range deletion: a range tombstone's bounds would carry the user's
	// name into table metadata until it reaches the last level.
	b := s.db.NewBatch()
	for _, user := range users {
		s.logins.forget(user)
		b.Delete(userKey(user), nil)
		it, err := s.db.NewIter(prefixRange(progressKey(user, "")))
		if err != nil {
			return true, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			b.Delete(append([]byte(nil), it.Key()...), nil)
		}
		if err := it.Close(); err != nil {
			return true, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return true, err
	}
	db, err := pebbledb.Rewrite(s.db, s.dir, 8<<20, pebbledb.DefaultMemTableBytes)
	if db != nil {
		s.db = db
	}
	return true, err
}

// Account is one kosync account of a reader, for export.
type Account struct {
	Username string     `json:"username"`
	Progress []Progress `json:"progress"`
}

// ExportReader returns the reader's accounts with their progress per document.
func (s *Server) ExportReader(reader string) ([]Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	users, err := s.accountsOf(reader)
	if err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(users))
	for _, user := range users {
		acct := Account{Username: user, Progress: []Progress{}}
		it, err := s.db.NewIter(prefixRange(progressKey(user, "")))
		if err != nil {
			return nil, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			var p Progress
			if json.Unmarshal(it.Value(), &p) == nil {
				acct.Progress = append(acct.Progress, p)
			}
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
		out = append(out, acct)
	}
	return out, nil
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

func fail(w http.ResponseWriter, status, code int, msg string) int {
	reply(w, status, map[string]any{"code": code, "message": msg})
	return status
}

func userKey(u string) []byte          { return []byte("u/" + u) }
func progressKey(u, doc string) []byte { return []byte("p/" + u + "/" + doc) }
func documentKey(doc string) []byte    { return []byte("d/" + doc) }

// validKey is the protocol's rule for usernames and documents: non-empty, no ':'.
func validKey(s string) bool { return s != "" && !strings.Contains(s, ":") && len(s) <= 255 }

// checkAccount says what is wrong with a username and key for a new account, or "".
func (s *Server) checkAccount(user, pass, reader string) string {
	switch {
	case !validKey(user) || strings.Contains(user, "/"):
		return "Invalid request: username (no ':' or '/') and password are required"
	case len(user) > MaxUsername:
		return fmt.Sprintf("Invalid request: username is %d bytes; at most %d allowed", len(user), MaxUsername)
	case event.CheckID("reader", reader) != nil:
		return "Invalid request: username: " + event.CheckID("reader", reader).Reason
	case pass == "":
		return "Invalid request: password is required"
	case len(pass) > MaxPassword:
		return fmt.Sprintf("Invalid request: password is %d bytes; at most %d allowed (KOReader sends a 32-byte MD5)", len(pass), MaxPassword)
	}
	return ""
}

// ErrUserExists refuses a new account whose username is taken.
var ErrUserExists = errors.New("username is already registered")

// Link creates or replaces the account user with key pass (what the device will send: KOReader
// sends the MD5 of the password typed in) for an existing reader. Only the reader or an admin
// may call it; it is how an account reaches an existing reader when auth is on. An account
// linked to another reader is not taken over: ErrUserExists.
func (s *Server) Link(user, pass, reader string) error {
	if msg := s.checkAccount(user, pass, reader); msg != "" {
		return errors.New(strings.TrimPrefix(msg, "Invalid request: "))
	}
	if v, ok, err := s.get(userKey(user)); err != nil || (ok && decodeAccount(user, v).Reader != reader) {
		return errors.Join(err, ErrUserExists)
	}
	return s.putAccount(user, pass, reader)
}

func (s *Server) putAccount(user, pass, reader string) error {
	// The client sends md5(password) as its key; it is stored only as a bcrypt hash.
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), s.cfg.BcryptCost)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(account{Hash: hash, Reader: reader})
	s.logins.forget(user)
	return s.set(userKey(user), b)
}

// RegisterLinks adds POST /v1/readers/{id}/kosync {"username","password"}: the reader (or an
// admin; the auth guard checks the token) makes a kosync account for their own data. password
// is what the reader will type into KOReader, which sends its MD5 as the key.
func (s *Server) RegisterLinks(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/readers/{id}/kosync", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: "body must be JSON {\"username\",\"password\"}: " + err.Error()})
			return
		}
		if req.Password == "" {
			httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: "password is required", Field: "password"})
			return
		}
		sum := md5.Sum([]byte(req.Password))
		err := s.Link(req.Username, hex.EncodeToString(sum[:]), r.PathValue("id"))
		switch {
		case errors.Is(err, ErrUserExists):
			httpjson.Fail(w, http.StatusConflict, httpjson.Error{Error: "kosync username " + req.Username + " belongs to another reader", Field: "username"})
		case err != nil:
			httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: err.Error(), Field: "username"})
		default:
			httpjson.Write(w, http.StatusCreated, map[string]string{"username": req.Username, "reader": r.PathValue("id")})
		}
	})
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.AllowRegistration {
		fail(w, http.StatusPaymentRequired, codeRegistrationDisabled, "User registration is disabled.")
		return
	}
	// Every registration costs a bcrypt hash: throttled per client address like failed logins.
	if wait := s.logins.addresses.wait(clientAddr(r)); wait > 0 {
		tooMany(w, wait)
		return
	}
	s.logins.addresses.fail(clientAddr(r))
	body, done, refused := s.gate.Enter(w, r, 4096)
	if refused != nil {
		refused.Write(w)
		return
	}
	defer done()
	var req struct {
		Username any `json:"username"`
		Password any `json:"password"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: body must be JSON with username and password")
		return
	}
	user, _ := req.Username.(string)
	pass, _ := req.Password.(string)
	if msg := s.checkAccount(user, pass, s.cfg.ReaderPrefix+user); msg != "" {
		fail(w, http.StatusForbidden, codeInvalidFields, msg)
		return
	}
	if _, exists, err := s.get(userKey(user)); err != nil || exists {
		fail(w, http.StatusPaymentRequired, codeUserExists, "Username is already registered.")
		return
	}
	if err := s.putAccount(user, pass, s.cfg.ReaderPrefix+user); err != nil {
		fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
		return
	}
	reply(w, http.StatusCreated, map[string]string{"username": user})
}

// authorize checks the x-auth-user and x-auth-key headers. It answers the request itself (401,
// or 429 while failed attempts are throttled) unless ok.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (user string, acct account, ok bool) {
	user, key := r.Header.Get("x-auth-user"), r.Header.Get("x-auth-key")
	var found bool
	if user != "" && key != "" {
		v, exists, err := s.get(userKey(user))
		if err != nil {
			fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
			return "", account{}, false
		}
		acct, found = decodeAccount(user, v), exists
	}
	switch s.logins.check(user, key, clientAddr(r), acct.Hash, found) {
	case loginOK:
		return user, acct, true
	case loginFailed:
		fail(w, http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
	default:
		tooMany(w, s.logins.retryAfter(user, clientAddr(r)))
	}
	return "", account{}, false
}

func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", ingest.RetryAfter(wait))
	fail(w, http.StatusTooManyRequests, codeUnauthorized, fmt.Sprintf("Too many failed attempts: retry after %s.", wait.Round(time.Second)))
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.authorize(w, r); ok {
		reply(w, http.StatusOK, map[string]string{"authorized": "OK"})
	}
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
	start := time.Now()
	status := s.storeProgress(w, r)
	accepted := 0
	if status == http.StatusOK {
		accepted = 1
	}
	ingest.ObserveRequest(ingest.RouteKosync, status, start, 1, accepted, 0)
}

// storeProgress answers PUT /syncs/progress and returns its status.
func (s *Server) storeProgress(w http.ResponseWriter, r *http.Request) int {
	user, acct, ok := s.authorize(w, r)
	if !ok {
		return http.StatusUnauthorized
	}
	body, done, refused := s.gate.Enter(w, r, 64<<10)
	if refused != nil {
		return refused.Write(w)
	}
	defer done()
	var req struct {
		Document   any            `json:"document"`
		Progress   any            `json:"progress"`
		Percentage any            `json:"percentage"`
		Device     any            `json:"device"`
		DeviceID   any            `json:"device_id"`
		Metadata   map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: body must be a JSON object")
	}
	doc, _ := req.Document.(string)
	if !validKey(doc) {
		return fail(w, http.StatusForbidden, codeDocumentMissing, "Field 'document' not provided.")
	}
	progress, _ := req.Progress.(string)
	device, _ := req.Device.(string)
	pct, isNum := req.Percentage.(float64)
	if !isNum || progress == "" || device == "" || pct < 0 || pct > 100 {
		return fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: percentage (a number), progress and device are required")
	}
	deviceID, _ := req.DeviceID.(string)
	now := s.now()
	p := Progress{Document: doc, Percentage: pct, Progress: progress, Device: device, DeviceID: deviceID, Timestamp: now.Unix()}
	book, err := s.bookFor(doc, req.Metadata)
	if err != nil {
		return fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
	}
	e, ferr := progressEvent(user, acct.Reader, book, p, now)
	if ferr != nil {
		ingest.ObserveRefused(ingest.RouteKosync, ferr.Code)
		return fail(w, http.StatusForbidden, codeInvalidFields, "Invalid request: "+ferr.Error())
	}
	ctx := auth.WithCaller(r.Context(), "kosync:"+user)
	if refused := s.gate.Admit(ctx, 1); refused != nil {
		return refused.Write(w)
	}
	if _, err := ingest.Append(ctx, s.log, []eventlog.Entry{{ID: e.ID, Key: e.Reader, Value: e.Encode()}}); err != nil {
		return ingest.AppendFailed(w, ctx, err, s.logger)
	}
	b, _ := json.Marshal(p)
	if err := s.set(progressKey(user, doc), b); err != nil {
		return fail(w, http.StatusInternalServerError, codeInternal, "Unknown server error.")
	}
	reply(w, http.StatusOK, map[string]any{"document": doc, "timestamp": p.Timestamp})
	return http.StatusOK
}

// bookFor is the dogear book id of a KOReader document: a catalog book when the document was
// once matched by its title (from optional metadata), else the document itself, or a hash of it
// when it cannot be a book id (a file name with '/', say).
func (s *Server) bookFor(doc string, meta map[string]any) (string, error) {
	if v, ok, err := s.get(documentKey(doc)); err != nil || ok {
		return string(v), err
	}
	if title, _ := meta["title"].(string); title != "" {
		if id, ok := s.catalog.FindTitle(title); ok {
			return id, s.set(documentKey(doc), []byte(id))
		}
	}
	if event.CheckID("book", doc) != nil {
		return "kosync-doc-" + digest(doc), nil
	}
	return doc, nil
}

// digest is a short, fixed-length hex SHA-256 of its parts, for ids built from unbounded input.
func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func progressEvent(user, reader, book string, p Progress, now time.Time) (event.Event, *event.FieldError) {
	pos := p.Percentage
	if pos > 1 {
		pos /= 100 // some clients send percent
	}
	raw, _ := json.Marshal(map[string]any{
		"id":   "kosync-" + digest(user, p.Document, fmt.Sprint(p.Timestamp), fmt.Sprint(p.Percentage)),
		"type": "progress", "reader": reader, "book": book, "time": now.UTC().Format(time.RFC3339Nano),
		"position": pos, "device": p.Device,
		"props": map[string]any{"kosync_document": p.Document, "kosync_progress": p.Progress, "kosync_device_id": p.DeviceID},
	})
	return event.Parse(raw, now)
}

func (s *Server) getProgress(w http.ResponseWriter, r *http.Request) {
	user, _, ok := s.authorize(w, r)
	if !ok {
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
