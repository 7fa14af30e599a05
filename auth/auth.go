// Package auth decides who may do what: write keys for sources that send events (stored hashed,
// revocable), signed expiring tokens for readers (their own data only) and admins, rate limits.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/dogear-dev/dogear/internal/atomicfile"
)

// Key is one write key's record. The key itself is never stored: only its SHA-256 (keys are 32
// random bytes, so a fast hash is as strong as a slow one).
type Key struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Hash    string     `json:"sha256"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Keys is the write-key store: a JSON file in the data directory, edited by `dogear keys` and
// re-read by the server whenever it changes, so a revocation takes effect on the next request.
type Keys struct {
	path string

	mu     sync.Mutex
	stamp  fileStamp
	byHash map[string]Key
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// KeysFile is the key store's name in a data directory.
const KeysFile = "keys.json"

// OpenKeys opens the key store of a data directory (it need not exist yet).
func OpenKeys(dataDir string) *Keys {
	return &Keys{path: filepath.Join(dataDir, KeysFile), byHash: map[string]Key{}}
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Check returns the key's record if it is known and not revoked.
func (k *Keys) Check(key string) (Key, bool) {
	if key == "" {
		return Key{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadLocked(); err != nil {
		return Key{}, false
	}
	rec, ok := k.byHash[hashKey(key)]
	if !ok || rec.Revoked != nil {
		return Key{}, false
	}
	// The map lookup already matched; compare again in constant time for good measure.
	return rec, subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hashKey(key))) == 1
}

// reloadLocked re-reads the file when its modification time or size changed.
func (k *Keys) reloadLocked() error {
	fi, err := os.Stat(k.path)
	if errors.Is(err, os.ErrNotExist) {
		k.byHash = map[string]Key{}
		return nil
	}
	if err != nil {
		return err
	}
	stamp := fileStamp{fi.ModTime(), fi.Size()}
	if stamp == k.stamp {
		return nil
	}
	list, err := readKeys(k.path)
	if err != nil {
		return err
	}
	k.byHash = map[string]Key{}
	for _, rec := range list {
		k.byHash[rec.Hash] = rec
	}
	k.stamp = stamp
	return nil
}

func readKeys(path string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []Key
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, nil
}

// edit applies fn to the key list under an exclusive file lock and writes it back atomically.
func (k *Keys) edit(fn func([]Key) ([]Key, error)) error {
	if err := os.MkdirAll(filepath.Dir(k.path), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(k.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	list, err := readKeys(k.path)
	if err != nil {
		return err
	}
	if list, err = fn(list); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(list, "", "  ")
	return atomicfile.Write(k.path, b, 0o600)
}

// Create makes a new write key for a named source and returns it; it is shown only this once.
func (k *Keys) Create(name string) (string, Key, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", Key{}, err
	}
	key := "dk_" + base64.RawURLEncoding.EncodeToString(raw)
	rec := Key{Name: name, Hash: hashKey(key), Created: time.Now().UTC()}
	rec.ID = rec.Hash[:12]
	err := k.edit(func(list []Key) ([]Key, error) { return append(list, rec), nil })
	return key, rec, err
}

// Revoke revokes the key with this id or name (every active key of that name).
func (k *Keys) Revoke(idOrName string) (int, error) {
	n := 0
	err := k.edit(func(list []Key) ([]Key, error) {
		now := time.Now().UTC()
		for i := range list {
			if (list[i].ID == idOrName || list[i].Name == idOrName) && list[i].Revoked == nil {
				list[i].Revoked = &now
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("no active key with id or name %q", idOrName)
		}
		return list, nil
	})
	return n, err
}

// List returns every key record, revoked ones included.
func (k *Keys) List() ([]Key, error) { return readKeys(k.path) }

// Role is what a token lets its holder do.
type Role string

// Roles.
const (
	RoleReader Role = "reader" // read and export one reader's data, erase it
	RoleAdmin  Role = "admin"  // everything
)

// Claims are a token's contents.
type Claims struct {
	Role Role `json:"role"`
	jwt.RegisteredClaims
}

// Tokens issues and verifies HMAC-SHA256 signed tokens (JWT) with a secret kept in the data
// directory (created with mode 0600 on first use).
type Tokens struct{ secret []byte }

// SecretFile is the token secret's name in a data directory.
const SecretFile = "token.secret"

// OpenTokens loads or creates the data directory's token secret.
func OpenTokens(dataDir string) (*Tokens, error) {
	path := filepath.Join(dataDir, SecretFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, err
		}
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) { // another process created it first
			return OpenTokens(dataDir)
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("%s is shorter than 32 bytes", path)
	}
	return &Tokens{secret: b}, nil
}

// Issue signs a token: for a reader, subject is their id; for an admin, a name for the holder.
func (t *Tokens) Issue(role Role, subject string, ttl time.Duration) (string, error) {
	now := time.Now()
	c := Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), Issuer: "dogear",
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
}

// Verify checks a token's signature, algorithm and expiry.
func (t *Tokens) Verify(token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("dogear"), jwt.WithExpirationRequired())
	if err != nil {
		return nil, err
	}
	if c.Role != RoleReader && c.Role != RoleAdmin {
		return nil, fmt.Errorf("unknown role %q", c.Role)
	}
	return &c, nil
}

type ctxKey struct{}

// WithKey records the write key that authorised a request.
func WithKey(ctx context.Context, k Key) context.Context { return context.WithValue(ctx, ctxKey{}, k) }

// WithCaller records who sends events when it is not a write key (a kosync account), so the
// per-caller rate limit applies to them too.
func WithCaller(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

type callerKey struct{}

// Caller names who sends the request's events for rate limiting: the write key's id, or what
// WithCaller recorded; "" when neither.
func Caller(ctx context.Context) string {
	if k, ok := KeyFrom(ctx); ok {
		return "key:" + k.ID
	}
	id, _ := ctx.Value(callerKey{}).(string)
	return id
}

// KeyFrom returns the write key that authorised the request, if any.
func KeyFrom(ctx context.Context) (Key, bool) {
	k, ok := ctx.Value(ctxKey{}).(Key)
	return k, ok
}
