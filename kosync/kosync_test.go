package kosync_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/internal/servertest"
	"github.com/dogear-dev/dogear/server"
)

type client struct {
	t        *testing.T
	base     string
	user     string
	key      string
	lastBody map[string]any
}

// do sends a request the way KOReader's sync plugin does and returns status and JSON body.
func (c *client) do(method, path string, body any) int {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Accept", "application/vnd.koreader.v1+json")
	req.Header.Set("Content-Type", "application/json")
	if c.user != "" {
		req.Header.Set("x-auth-user", c.user)
		req.Header.Set("x-auth-key", c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	c.lastBody = nil
	json.NewDecoder(resp.Body).Decode(&c.lastBody)
	return resp.StatusCode
}

func (c *client) expect(status, code int) {
	c.t.Helper()
	if code != 0 && c.lastBody["code"] != float64(code) {
		c.t.Fatalf("want code %d, got body %v", code, c.lastBody)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestKosyncProtocol(t *testing.T) {
	dir := t.TempDir()
	if err := catalog.Save(dir, []catalog.Book{{ID: "42", Title: "Dune (Dune Chronicles, #1)", Authors: []string{"Frank Herbert"}}}); err != nil {
		t.Fatal(err)
	}
	srv, url := servertest.Start(t, func(c *server.Config) { c.DataDir = dir })
	key := md5hex("correct horse battery staple")
	anon := &client{t: t, base: url + "/kosync"}

	if s := anon.do("GET", "/healthcheck", nil); s != 200 || anon.lastBody["state"] != "OK" {
		t.Fatalf("healthcheck %d %v", s, anon.lastBody)
	}
	if s := anon.do("POST", "/users/create", map[string]string{"username": "ann", "password": key}); s != 201 || anon.lastBody["username"] != "ann" {
		t.Fatalf("create %d %v", s, anon.lastBody)
	}
	if s := anon.do("POST", "/users/create", map[string]string{"username": "ann", "password": "other"}); s != 402 {
		t.Fatalf("duplicate user %d", s)
	}
	anon.expect(402, 2002)
	if s := anon.do("POST", "/users/create", map[string]string{"username": "a:b", "password": key}); s != 403 {
		t.Fatalf("username with ':' %d", s)
	}
	anon.expect(403, 2003)

	ann := &client{t: t, base: url + "/kosync", user: "ann", key: key}
	if s := ann.do("GET", "/users/auth", nil); s != 200 || ann.lastBody["authorized"] != "OK" {
		t.Fatalf("auth %d %v", s, ann.lastBody)
	}
	for _, bad := range []*client{{t: t, base: ann.base, user: "ann", key: md5hex("wrong")}, {t: t, base: ann.base, user: "ann", key: ""},
		{t: t, base: ann.base, user: "nobody", key: key}, anon} {
		if s := bad.do("GET", "/users/auth", nil); s != 401 {
			t.Fatalf("user %q key %q: auth %d", bad.user, bad.key, s)
		}
		bad.expect(401, 2001)
		if s := bad.do("GET", "/syncs/progress/abc", nil); s != 401 {
			t.Fatalf("get progress unauthorized: %d", s)
		}
	}

	doc := "0b2a3f5d7e9c1b2a3f5d7e9c1b2a3f5d"
	if s := ann.do("GET", "/syncs/progress/"+doc, nil); s != 200 || len(ann.lastBody) != 0 {
		t.Fatalf("unknown document: %d %v", s, ann.lastBody)
	}
	put := map[string]any{"document": doc, "progress": "/body/DocFragment[12]/body/p[3]/text().0", "percentage": 0.31,
		"device": "Kobo Clara", "device_id": "K1", "metadata": map[string]any{"title": "Dune"}}
	before := time.Now().Unix()
	if s := ann.do("PUT", "/syncs/progress", put); s != 200 || ann.lastBody["document"] != doc || ann.lastBody["timestamp"].(float64) < float64(before) {
		t.Fatalf("put %d %v", s, ann.lastBody)
	}
	if s := ann.do("GET", "/syncs/progress/"+doc, nil); s != 200 || ann.lastBody["percentage"] != 0.31 || ann.lastBody["device"] != "Kobo Clara" ||
		ann.lastBody["device_id"] != "K1" || ann.lastBody["progress"] != put["progress"] || ann.lastBody["document"] != doc {
		t.Fatalf("get after put %d %v", s, ann.lastBody)
	}
	put["percentage"], put["progress"], put["device"] = 0.58, "/body/DocFragment[20]", "KOReader phone"
	ann.do("PUT", "/syncs/progress", put)
	if ann.do("GET", "/syncs/progress/"+doc, nil); ann.lastBody["percentage"] != 0.58 || ann.lastBody["device"] != "KOReader phone" {
		t.Fatalf("a later write must overwrite: %v", ann.lastBody)
	}

	for name, body := range map[string]map[string]any{
		"no percentage": {"document": doc, "progress": "x", "device": "d"},
		"no progress":   {"document": doc, "percentage": 0.5, "device": "d"},
		"no device":     {"document": doc, "progress": "x", "percentage": 0.5},
	} {
		if s := ann.do("PUT", "/syncs/progress", body); s != 403 {
			t.Fatalf("%s: %d", name, s)
		}
		ann.expect(403, 2003)
	}
	for _, d := range []string{"", "a:b"} {
		if s := ann.do("PUT", "/syncs/progress", map[string]any{"document": d, "progress": "x", "percentage": 0.5, "device": "d"}); s != 403 {
			t.Fatalf("document %q: %d", d, s)
		}
		ann.expect(403, 2004)
	}

	// Every update is a dogear progress event; the title in metadata mapped the document to the
	// catalog's "Dune".
	servertest.WaitProcessed(t, srv)
	var ins struct {
		Continue []struct {
			Book     string  `json:"book"`
			Position float64 `json:"position"`
		} `json:"continue_reading"`
	}
	resp, err := http.Get(url + "/v1/readers/ann/insights")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&ins)
	resp.Body.Close()
	if len(ins.Continue) != 1 || ins.Continue[0].Book != "42" || ins.Continue[0].Position != 0.58 {
		t.Fatalf("insights after kosync updates: %+v", ins)
	}

	// The key is stored only hashed: its bytes appear nowhere in the kosync store.
	filepath.Walk(filepath.Join(dir, "kosync"), func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, []byte(key)) {
				t.Errorf("%s holds the key as received", path)
			}
		}
		return nil
	})
}

func TestKosyncRegistrationDisabledAndRootPaths(t *testing.T) {
	_, url := servertest.Start(t, func(c *server.Config) { c.KosyncRegistration = "closed"; c.KosyncAtRoot = true })
	c := &client{t: t, base: url}
	if s := c.do("POST", "/users/create", map[string]string{"username": "ann", "password": "k"}); s != 402 {
		t.Fatalf("registration disabled: %d", s)
	}
	c.expect(402, 2005)
	if s := c.do("GET", "/healthcheck", nil); s != 200 {
		t.Fatalf("root healthcheck %d", s)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1") {
		t.Fatal(url)
	}
}
