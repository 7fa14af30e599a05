package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/dogear-dev/dogear/internal/httpjson"
)

// Guard enforces who may call what. Off (local-only mode) it lets everything through, which is
// only allowed when the server listens on loopback.
type Guard struct {
	On     bool
	Keys   *Keys
	Tokens *Tokens
	// EventsPerSecond and Burst limit each write key; 0 means no limit.
	EventsPerSecond float64
	Burst           int

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// access is what a route requires.
type access int

const (
	open      access = iota // health, metrics, the web pages (their data needs tokens), kosync (its own protocol auth)
	writeKey                // sending events
	ownReader               // one reader's data: that reader's token or an admin token
	anyToken                // reader-facing catalog reads
	admin                   // platform-wide reads and administration
	segment                 // Segment routes check their key themselves (it may be in the body)
)

// policy classifies a request by method and path.
func policy(r *http.Request) (access, string) {
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(p) < 2 || p[0] != "v1" {
		return open, ""
	}
	switch {
	case p[1] == "events":
		return writeKey, ""
	case p[1] == "batch" || p[1] == "track" || p[1] == "identify" || p[1] == "page":
		return segment, ""
	case p[1] == "readers" && len(p) >= 3:
		return ownReader, p[2]
	case p[1] == "books" && len(p) == 4 && p[3] == "similar":
		return anyToken, ""
	}
	return admin, ""
}

// Wrap returns next behind the guard.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	if !g.On {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need, reader := policy(r)
		switch need {
		case open:
			next.ServeHTTP(w, r)
			return
		case writeKey, segment:
			key := bearer(r)
			if u, _, ok := r.BasicAuth(); ok && need == segment {
				key = u // Segment's clients send the write key as the basic-auth user
			}
			if key == "" && need == segment {
				// Segment's browser clients put the key in the body instead; the handler reads
				// it from there, within the shared body budget, before parsing any call.
				next.ServeHTTP(w, r)
				return
			}
			// Checked before a byte of the body is read: unauthenticated clients cost nothing.
			k, ok := g.Keys.Check(key)
			if !ok {
				deny(w, http.StatusUnauthorized, "missing, unknown or revoked write key: send Authorization: Bearer <key> (create one with dogear keys create NAME)")
				return
			}
			next.ServeHTTP(w, r.WithContext(WithKey(r.Context(), k)))
			return
		}
		c, err := g.Tokens.Verify(bearer(r))
		if err != nil {
			msg := "missing or invalid token: send Authorization: Bearer <token> (dogear token --reader ID, or --admin)"
			if errors.Is(err, jwt.ErrTokenExpired) {
				msg = "token expired: ask for a new one"
			}
			deny(w, http.StatusUnauthorized, msg)
			return
		}
		switch {
		case c.Role == RoleAdmin:
		case need == admin:
			deny(w, http.StatusForbidden, "this needs an admin token; a reader token opens only that reader's data")
			return
		case need == ownReader && c.Subject != reader:
			deny(w, http.StatusForbidden, fmt.Sprintf("this token opens reader %q's data, not %q's", c.Subject, reader))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer returns the Bearer credentials of the request; the scheme is case-insensitive (RFC 7235).
func bearer(r *http.Request) string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

func deny(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dogear"`)
	}
	httpjson.Fail(w, status, httpjson.Error{Error: msg})
}

// CheckWriteKey checks a write key found in a request body (Segment's writeKey) and returns the
// request's context carrying it, for the key's rate limit. A request the guard already
// authenticated from its headers passes as it is; with the guard off, any non-empty key passes.
func (g *Guard) CheckWriteKey(ctx context.Context, key string) (context.Context, bool) {
	if _, ok := KeyFrom(ctx); ok {
		return ctx, true
	}
	if !g.On {
		return ctx, key != ""
	}
	k, ok := g.Keys.Check(key)
	if !ok {
		return ctx, false
	}
	return WithKey(ctx, k), true
}

// AllowEvents takes n events from the rate limit of the caller (the write key that authorised
// the request, or a kosync account). When refused it says how long to wait; a request larger
// than the burst can never pass and says so.
func (g *Guard) AllowEvents(ctx context.Context, n int) (bool, time.Duration, error) {
	caller := Caller(ctx)
	if caller == "" || g.EventsPerSecond <= 0 {
		return true, 0, nil
	}
	g.mu.Lock()
	if g.limiters == nil {
		g.limiters = map[string]*rate.Limiter{}
	}
	lim := g.limiters[caller]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(g.EventsPerSecond), max(g.Burst, int(g.EventsPerSecond)))
		g.limiters[caller] = lim
	}
	g.mu.Unlock()
	if n > lim.Burst() {
		return false, 0, fmt.Errorf("%d events in one request exceed the key's burst of %d: split the batch", n, lim.Burst())
	}
	res := lim.ReserveN(time.Now(), n)
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return false, d, nil
	}
	return true, 0, nil
}

// TokenWait is how long until lim holds a whole token (0: now), without taking one: what a
// Retry-After says for a limiter that is spent.
func TokenWait(lim *rate.Limiter) time.Duration {
	if t := lim.Tokens(); t < 1 {
		return time.Duration((1 - t) / float64(lim.Limit()) * float64(time.Second))
	}
	return 0
}
