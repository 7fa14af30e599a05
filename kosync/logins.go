package kosync

import (
	"crypto/rand"
	"crypto/sha256"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/dogear-dev/dogear/auth"
)

// Throttles for failed logins: a user may fail 10 times at once and then once every 6 s; a client
// address 30 times and then once every 2 s. A device that logged in recently is not throttled
// (see logins.good), so guessing a user's key cannot lock that user's own devices out.
var (
	userFailures    = throttleConfig{every: 6 * time.Second, burst: 10}
	addressFailures = throttleConfig{every: 2 * time.Second, burst: 30}
)

const (
	// goodFor is how long a verified user and key pass without another bcrypt comparison.
	goodFor = 10 * time.Minute
	// maxTracked bounds each map below; past it, entries that hold nothing are dropped.
	maxTracked = 10_000
)

// logins verifies kosync keys at a bounded cost: bcrypt comparisons run a few at a time so they
// never take every core from ingest, an unknown user costs the same comparison as a known one so
// timing does not tell them apart, failures are throttled per user and per client address, and a
// key verified recently is remembered (by a hash of user and key) so a syncing device costs one
// comparison per goodFor, not one per request.
type logins struct {
	users, addresses *throttle
	dummy            []byte        // a hash of a random key, compared when the user is unknown
	verifying        chan struct{} // bcrypt comparisons allowed at once

	mu   sync.Mutex
	good map[[32]byte]goodLogin
}

type goodLogin struct {
	user  string
	until time.Time
}

func newLogins(cost int) (*logins, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, err
	}
	return &logins{users: newThrottle(userFailures), addresses: newThrottle(addressFailures), dummy: dummy,
		verifying: make(chan struct{}, max(1, runtime.NumCPU()/2)), good: map[[32]byte]goodLogin{}}, nil
}

// Results of check.
const (
	loginOK = iota
	loginFailed
	loginThrottled
)

// check says whether key is the key of user (whose stored hash is hash, if found) for a request
// from addr.
func (l *logins) check(user, key, addr string, hash []byte, found bool) int {
	id := sha256.Sum256([]byte(user + "\x00" + key))
	if found && l.isGood(id) {
		return loginOK
	}
	if l.retryAfter(user, addr) > 0 {
		return loginThrottled
	}
	if user == "" || key == "" {
		l.addresses.fail(addr)
		return loginFailed
	}
	if !found || len(key) > MaxPassword {
		hash, key = l.dummy, key[:min(len(key), MaxPassword)]
	}
	l.verifying <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(key))
	<-l.verifying
	if err == nil && found {
		l.remember(id, user)
		return loginOK
	}
	l.users.fail(user)
	l.addresses.fail(addr)
	return loginFailed
}

// retryAfter is how long failures keep user or addr throttled (0: not throttled).
func (l *logins) retryAfter(user, addr string) time.Duration {
	return max(l.users.wait(user), l.addresses.wait(addr))
}

func (l *logins) isGood(id [32]byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	g, ok := l.good[id]
	return ok && time.Now().Before(g.until)
}

func (l *logins) remember(id [32]byte, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.good) >= maxTracked {
		now := time.Now()
		for k, g := range l.good {
			if now.After(g.until) {
				delete(l.good, k)
			}
		}
		if len(l.good) >= maxTracked {
			clear(l.good) // only costs those devices one more comparison
		}
	}
	l.good[id] = goodLogin{user: user, until: time.Now().Add(goodFor)}
}

// forget drops what was remembered of user's keys, when the account changes or is erased.
func (l *logins) forget(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, g := range l.good {
		if g.user == user {
			delete(l.good, k)
		}
	}
}

type throttleConfig struct {
	every time.Duration
	burst int
}

// throttle counts failures per name in token buckets that refill one token every cfg.every.
type throttle struct {
	cfg throttleConfig
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

func newThrottle(cfg throttleConfig) *throttle {
	return &throttle{cfg: cfg, m: map[string]*rate.Limiter{}}
}

// wait is how long until name may try again (0: now).
func (t *throttle) wait(name string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	lim := t.m[name]
	if lim == nil {
		return 0
	}
	return auth.TokenWait(lim)
}

// fail takes one token from name's bucket.
func (t *throttle) fail(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lim := t.m[name]
	if lim == nil {
		if len(t.m) >= maxTracked {
			for k, l := range t.m {
				if l.Tokens() >= float64(t.cfg.burst) {
					delete(t.m, k) // refilled: it holds nothing
				}
			}
		}
		lim = rate.NewLimiter(rate.Every(t.cfg.every), t.cfg.burst)
		t.m[name] = lim
	}
	lim.Allow()
}

// clientAddr is the address a request came from, without the port. X-Forwarded-For is not
// trusted: any client can write it.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
