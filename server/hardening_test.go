package server_test

// Regression tests for what an attack on a server with --require-auth found: each failed on the
// code before its fix.

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"golang.org/x/crypto/bcrypt"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/server"
)

// kosyncCall sends one kosync request as KOReader does and returns the status and JSON body.
func kosyncCall(t *testing.T, method, url, user, key string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, url, r)
	if user != "" {
		req.Header.Set("x-auth-user", user)
		req.Header.Set("x-auth-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func progress(doc string, pct float64) map[string]any {
	return map[string]any{"document": doc, "progress": "/body/p[1]", "percentage": pct, "device": "Kobo"}
}

// booksOf lists the books in a reader's shelf, read with an admin token.
func booksOf(t *testing.T, url, admin, reader string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/readers/"+reader+"/books", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var books struct {
		Books []struct {
			Book string `json:"book"`
		} `json:"books"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&books); err != nil || resp.StatusCode != 200 {
		t.Fatalf("books of %s: %d %v", reader, resp.StatusCode, err)
	}
	var ids []string
	for _, b := range books.Books {
		ids = append(ids, b.Book)
	}
	return ids
}

// Bug 1: with auth on, registering a kosync account named like an existing reader must not let
// its syncs into that reader's data. Open registration is off by default when auth is on; when
// turned on, accounts write to kosync:USERNAME; a reader links an account with their own token.
func TestKosyncRegistrationCannotWriteToAnExistingReader(t *testing.T) {
	for _, registration := range []string{"auto", "open"} {
		t.Run(registration, func(t *testing.T) {
			dir := t.TempDir()
			srv, url := start(t, func(c *server.Config) {
				c.DataDir, c.RequireAuth, c.KosyncRegistration = dir, true, registration
			})
			key, _, _ := auth.OpenKeys(dir).Create("app")
			tokens, _ := auth.OpenTokens(dir)
			admin, _ := tokens.Issue(auth.RoleAdmin, "ops", time.Hour)
			alice, _ := tokens.Issue(auth.RoleReader, "alice", time.Hour)
			bob, _ := tokens.Issue(auth.RoleReader, "bob", time.Hour)
			if s, body := call(t, "POST", url+"/v1/events", key, strings.ReplaceAll(ev("a1", "finish", ""), `"ann"`, `"alice"`)); s != 200 {
				t.Fatalf("alice's event: %d %s", s, body)
			}

			s, body := kosyncCall(t, "POST", url+"/kosync/users/create", "", "", map[string]string{"username": "alice", "password": md5hex("mallory")})
			if registration == "auto" {
				if s != 402 || body["code"] != float64(2005) {
					t.Fatalf("open registration with auth on: %d %v", s, body)
				}
			} else {
				if s != 201 {
					t.Fatalf("open registration: %d %v", s, body)
				}
				if s, body := kosyncCall(t, "PUT", url+"/kosync/syncs/progress", "alice", md5hex("mallory"), progress("planted", 50)); s != 200 {
					t.Fatalf("sync as the registered account: %d %v", s, body)
				}
				waitProcessed(t, srv)
				if books := booksOf(t, url, admin, "alice"); slices.Contains(books, "planted") {
					t.Fatalf("an openly registered account wrote into reader alice: %v", books)
				}
				if books := booksOf(t, url, admin, "kosync:alice"); !slices.Contains(books, "planted") {
					t.Fatalf("the account's own reader kosync:alice lacks its sync: %v", books)
				}
			}

			// The reader herself links a device account; another reader cannot.
			link := `{"username":"alice-kobo","password":"alice's password"}`
			if s, body := call(t, "POST", url+"/v1/readers/alice/kosync", bob, link); s != 403 {
				t.Fatalf("bob links an account to alice: %d %s", s, body)
			}
			if s, body := call(t, "POST", url+"/v1/readers/alice/kosync", alice, link); s != 201 {
				t.Fatalf("alice links her account: %d %s", s, body)
			}
			if s, body := call(t, "POST", url+"/v1/readers/bob/kosync", bob, link); s != 409 {
				t.Fatalf("bob takes over alice's username: %d %s", s, body)
			}
			if s, body := kosyncCall(t, "PUT", url+"/kosync/syncs/progress", "alice-kobo", md5hex("alice's password"), progress("her-book", 30)); s != 200 {
				t.Fatalf("alice's device syncs: %d %v", s, body)
			}
			waitProcessed(t, srv)
			if books := booksOf(t, url, admin, "alice"); !slices.Contains(books, "her-book") {
				t.Fatalf("the linked account's sync is not alice's: %v", books)
			}
		})
	}
}

// segmentBatch is a Segment /v1/batch body of n "Book Finished" calls.
func segmentBatch(prefix string, n int) string {
	calls := make([]string, n)
	for i := range calls {
		calls[i] = fmt.Sprintf(`{"type":"track","messageId":"%s-%d","userId":"ann","event":"Book Finished","timestamp":"2026-11-20T10:00:00Z","properties":{"book_id":"b1"}}`, prefix, i)
	}
	return `{"batch":[` + strings.Join(calls, ",") + `]}`
}

func segmentPost(t *testing.T, url, key, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Bug 3: the Segment routes hold the key's rate limit and the per-request event limit.
func TestSegmentHoldsTheKeysLimits(t *testing.T) {
	dir := t.TempDir()
	_, url := start(t, func(c *server.Config) {
		c.DataDir, c.RequireAuth, c.KeyRate, c.Ingest.MaxEvents = dir, true, 10, 20
	})
	key, _, _ := auth.OpenKeys(dir).Create("segment")
	if resp := segmentPost(t, url, key, segmentBatch("big", 1500)); resp.StatusCode != 413 {
		t.Fatalf("1500 calls with --max-events 20: %d", resp.StatusCode)
	}
	if resp := segmentPost(t, url, key, segmentBatch("a", 20)); resp.StatusCode != 200 {
		t.Fatalf("20 calls: %d", resp.StatusCode)
	}
	resp := segmentPost(t, url, key, segmentBatch("b", 20))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the key's rate of 10/s: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// rawRequest sends a request's head and no body on a fresh connection and returns the status
// line the server answers with before the body would arrive, or "" after wait.
func rawRequest(t *testing.T, url, head string, wait time.Duration) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, head)
	conn.SetReadDeadline(time.Now().Add(wait))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line)
}

// Bug 4: credentials are checked before a byte of the body is read, so unauthenticated clients
// cannot make the server hold or parse bodies.
func TestCredentialsCheckedBeforeTheBody(t *testing.T) {
	_, url := start(t, func(c *server.Config) { c.RequireAuth = true })
	for name, head := range map[string]string{
		"segment, wrong basic auth": "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic d3Jvbmc6\r\nContent-Length: 470000\r\n\r\n",
		"events, wrong bearer":      "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 470000\r\n\r\n",
		"events, no credentials":    "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 470000\r\n\r\n",
	} {
		if status := rawRequest(t, url, head, 3*time.Second); !strings.Contains(status, " 401 ") {
			t.Errorf("%s: the server answered %q before the body, want 401", name, status)
		}
	}
}

// Bug 5: clients that trickle their bodies lose their slot instead of holding every slot.
func TestTricklingBodiesLoseTheirSlot(t *testing.T) {
	_, url := start(t, func(c *server.Config) {
		c.Ingest.MaxInFlight, c.Ingest.MinBodyRate, c.Ingest.BodyGrace = 2, 1024, 300*time.Millisecond
	})
	stop := make(chan struct{})
	defer close(stop)
	statuses := make(chan string, 2)
	for range 2 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n[")
		go func() { // one byte every 100 ms, for as long as the test runs
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			line, _ := bufio.NewReader(conn).ReadString('\n')
			statuses <- strings.TrimSpace(line)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if r := post(t, url, []byte(ev("busy", "finish", "")), nil); r.status != 429 {
		t.Fatalf("with both slots taken by tricklers: %d, want 429", r.status)
	}
	for range 2 {
		select {
		case line := <-statuses:
			if !strings.Contains(line, " 408 ") {
				t.Fatalf("a trickling client was answered %q, want 408", line)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("trickling clients still hold their slots after 10 s")
		}
	}
	if r := post(t, url, []byte(ev("after", "finish", "")), nil); r.status != 200 {
		t.Fatalf("after the tricklers were cut off: %d %v", r.status, r.body)
	}
}

// Bug 6: wrong kosync keys are throttled per user (429 with Retry-After), a device that logged in
// before keeps working, and an unknown user costs the same bcrypt comparison as a known one.
func TestKosyncGuessesThrottledAndUsersNotEnumerable(t *testing.T) {
	_, url := start(t, func(c *server.Config) { c.Kosync.BcryptCost = bcrypt.DefaultCost })
	good := md5hex("right")
	if s, body := kosyncCall(t, "POST", url+"/kosync/users/create", "", "", map[string]string{"username": "ann", "password": good}); s != 201 {
		t.Fatalf("register: %d %v", s, body)
	}
	if s, _ := kosyncCall(t, "GET", url+"/kosync/users/auth", "ann", good, nil); s != 200 {
		t.Fatalf("the device logs in: %d", s)
	}
	timed := func(user string) time.Duration {
		start := time.Now()
		if s, _ := kosyncCall(t, "GET", url+"/kosync/users/auth", user, md5hex("guess"), nil); s != 401 {
			t.Fatalf("wrong key for %s: %d", user, s)
		}
		return time.Since(start)
	}
	var known, unknown []time.Duration
	for i := range 5 {
		known = append(known, timed("ann"))
		unknown = append(unknown, timed(fmt.Sprintf("nobody-%d", i)))
	}
	slices.Sort(known)
	slices.Sort(unknown)
	if unknown[2] < known[2]/2 {
		t.Fatalf("an unknown user answers in %v, a known one in %v: users can be told apart", unknown[2], known[2])
	}
	throttled := false
	for range 10 {
		s, _ := kosyncCall(t, "GET", url+"/kosync/users/auth", "ann", md5hex("guess"), nil)
		if s == 429 {
			throttled = true
			break
		}
	}
	if !throttled {
		t.Fatal("15 wrong keys for one user were never throttled")
	}
	if s, _ := kosyncCall(t, "GET", url+"/kosync/users/auth", "ann", good, nil); s != 200 {
		t.Fatalf("the device that logged in before is locked out by the guesses: %d", s)
	}
}

// Bug 8: long usernames, documents with '/', long passwords get 4xx with a reason, not 500.
func TestKosyncBadInputIsRefusedNot500(t *testing.T) {
	srv, url := start(t, nil)
	key := md5hex("k")
	long := strings.Repeat("u", 100)
	if s, body := kosyncCall(t, "POST", url+"/kosync/users/create", "", "", map[string]string{"username": long, "password": key}); s != 403 || !strings.Contains(fmt.Sprint(body["message"]), "username") {
		t.Fatalf("100-byte username: %d %v", s, body)
	}
	if s, body := kosyncCall(t, "POST", url+"/kosync/users/create", "", "", map[string]string{"username": "ann", "password": strings.Repeat("p", 100)}); s != 403 || !strings.Contains(fmt.Sprint(body["message"]), "password") {
		t.Fatalf("100-byte password: %d %v", s, body)
	}
	// The longest username allowed syncs (the event id no longer grows with it), and a document
	// named like a path is a book of its own.
	user := strings.Repeat("u", 64)
	if s, body := kosyncCall(t, "POST", url+"/kosync/users/create", "", "", map[string]string{"username": user, "password": key}); s != 201 {
		t.Fatalf("64-byte username: %d %v", s, body)
	}
	for _, doc := range []string{"plain-doc", "a/b", strings.Repeat("d", 200)} {
		if s, body := kosyncCall(t, "PUT", url+"/kosync/syncs/progress", user, key, progress(doc, 10)); s != 200 {
			t.Fatalf("document %.20q: %d %v", doc, s, body)
		}
		if s, body := kosyncCall(t, "GET", url+"/kosync/syncs/progress/"+strings.ReplaceAll(doc, "/", "%2F"), user, key, nil); s != 200 || body["percentage"] != 10.0 {
			t.Fatalf("reading document %.20q back: %d %v", doc, s, body)
		}
	}
	waitProcessed(t, srv)
	var books struct {
		Books []any `json:"books"`
	}
	if get(t, url+"/v1/readers/"+user+"/books", &books); len(books.Books) != 3 {
		t.Fatalf("three documents should be three books: %+v", books)
	}
}

// Bug 9: the Bearer scheme is case-insensitive (RFC 7235).
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	dir := t.TempDir()
	_, url := start(t, func(c *server.Config) { c.DataDir, c.RequireAuth = dir, true })
	key, _, _ := auth.OpenKeys(dir).Create("app")
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		r := post(t, url, []byte(ev("b-"+scheme, "finish", "")), map[string]string{"Authorization": scheme + " " + key})
		if r.status != 200 {
			t.Fatalf("scheme %q: %d %v", scheme, r.status, r.body)
		}
	}
}

// Bug 9: a repeated erasure finds nothing and rewrites nothing; erasures that do work are
// rate-limited.
func TestRepeatedErasureIsCheapAndErasuresAreLimited(t *testing.T) {
	srv, url := start(t, func(c *server.Config) { c.ErasureBurst, c.ErasureEvery = 2, time.Hour })
	var b strings.Builder
	for _, reader := range []string{"r1", "r2", "r3"} {
		b.WriteString(strings.ReplaceAll(ev("e-"+reader, "finish", ""), `"ann"`, `"`+reader+`"`) + "\n")
	}
	if r := post(t, url, []byte(b.String()), nil); r.status != 200 {
		t.Fatalf("events: %d %v", r.status, r.body)
	}
	waitProcessed(t, srv)
	erase := func(reader string) (int, string) { return call(t, "DELETE", url+"/v1/readers/"+reader, "", "") }
	if s, body := erase("r1"); s != 200 || !strings.Contains(body, `"found":true`) {
		t.Fatalf("first erasure: %d %s", s, body)
	}
	for range 5 {
		if s, body := erase("r1"); s != 200 || !strings.Contains(body, `"found":false`) {
			t.Fatalf("repeated erasure: %d %s", s, body)
		}
	}
	if s, body := erase("r2"); s != 200 {
		t.Fatalf("second reader: %d %s", s, body)
	}
	if s, body := erase("r3"); s != 429 {
		t.Fatalf("third erasure with a burst of 2: %d %s", s, body)
	}
}

// Every ingest route shows in the ingest metrics under its route label, and /metrics passes
// Prometheus' own lint.
func TestIngestMetricsCoverEveryRoute(t *testing.T) {
	_, url := start(t, nil)
	if r := post(t, url, []byte(ev("m1", "finish", "")), nil); r.status != 200 {
		t.Fatalf("events: %d", r.status)
	}
	if resp := segmentPost(t, url, "any-key", segmentBatch("m", 2)); resp.StatusCode != 200 {
		t.Fatalf("segment: %d", resp.StatusCode)
	}
	kosyncCall(t, "POST", url+"/kosync/users/create", "", "", map[string]string{"username": "mia", "password": md5hex("k")})
	if s, body := kosyncCall(t, "PUT", url+"/kosync/syncs/progress", "mia", md5hex("k"), progress("doc", 5)); s != 200 {
		t.Fatalf("kosync: %d %v", s, body)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, route := range []string{"events", "segment", "kosync"} {
		if !strings.Contains(string(body), `dogear_ingest_events_total{result="new",route="`+route+`"}`) {
			t.Errorf("no new events counted for route %s", route)
		}
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
