package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/server"
)

func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

func TestEveryEndpointChecksTokens(t *testing.T) {
	dir := t.TempDir()
	_, url := start(t, func(c *server.Config) { c.DataDir, c.RequireAuth = dir, true })
	keys := auth.OpenKeys(dir)
	key, _, err := keys.Create("reading-app")
	if err != nil {
		t.Fatal(err)
	}
	tokens, _ := auth.OpenTokens(dir)
	ann, _ := tokens.Issue(auth.RoleReader, "ann", time.Hour)
	bob, _ := tokens.Issue(auth.RoleReader, "bob", time.Hour)
	admin, _ := tokens.Issue(auth.RoleAdmin, "admin", time.Hour)
	expired, _ := tokens.Issue(auth.RoleAdmin, "admin", -time.Minute)
	other, _ := auth.OpenTokens(t.TempDir())
	forged, _ := other.Issue(auth.RoleAdmin, "admin", time.Hour)

	if s, body := call(t, "POST", url+"/v1/events", key, ev("k1", "finish", "")); s != 200 {
		t.Fatalf("valid write key: %d %s", s, body)
	}
	type endpoint struct {
		method, path string
		readerOf     string // "" for admin-only endpoints
	}
	endpoints := []endpoint{
		{"GET", "/v1/readers/ann/insights", "ann"}, {"GET", "/v1/readers/ann/books", "ann"},
		{"GET", "/v1/readers/ann/recommendations", "ann"}, {"GET", "/v1/readers/ann/export", "ann"},
		{"DELETE", "/v1/readers/ann", "ann"},
		{"GET", "/v1/stats", ""}, {"GET", "/v1/trending", ""}, {"GET", "/v1/books/b1/stats", ""},
		{"GET", "/v1/models", ""}, {"POST", "/v1/models/train", ""}, {"POST", "/v1/models/1/promote", ""},
	}
	for _, e := range endpoints {
		for name, tok := range map[string]string{"missing": "", "garbage": "not-a-token", "expired": expired, "forged": forged, "write key": key} {
			if s, body := call(t, e.method, url+e.path, tok, ""); s != 401 {
				t.Errorf("%s %s with %s token: %d %s", e.method, e.path, name, s, body)
			} else if name == "expired" && !strings.Contains(body, "expired") {
				t.Errorf("expired token not named as such: %s", body)
			}
		}
		if s, _ := call(t, e.method, url+e.path, bob, ""); s != 403 {
			t.Errorf("%s %s with another reader's token: %d", e.method, e.path, s)
		}
		if e.method == "GET" {
			if s, body := call(t, e.method, url+e.path, admin, ""); s == 401 || s == 403 {
				t.Errorf("%s %s with an admin token: %d %s", e.method, e.path, s, body)
			}
			if e.readerOf == "ann" {
				if s, body := call(t, e.method, url+e.path, ann, ""); s == 401 || s == 403 {
					t.Errorf("%s %s with ann's token: %d %s", e.method, e.path, s, body)
				}
			}
		}
	}
	if s, _ := call(t, "GET", url+"/v1/books/b1/similar", "", ""); s != 401 {
		t.Errorf("similar without a token: %d", s)
	}
	if s, _ := call(t, "GET", url+"/v1/books/b1/similar", ann, ""); s == 401 || s == 403 {
		t.Errorf("similar with a reader token: %d", s)
	}
	for _, open := range []string{"/healthz", "/readyz", "/metrics", "/", "/kosync/healthcheck"} {
		if s, _ := call(t, "GET", url+open, "", ""); s != 200 {
			t.Errorf("%s should stay open: %d", open, s)
		}
	}

	// Revoking a key stops it on the very next request.
	if _, err := keys.Revoke("reading-app"); err != nil {
		t.Fatal(err)
	}
	if s, _ := call(t, "POST", url+"/v1/events", key, ev("k2", "finish", "")); s != 401 {
		t.Fatalf("revoked key still works: %d", s)
	}
	// Segment calls take the key as basic-auth user; unknown keys are refused.
	req, _ := http.NewRequest("POST", url+"/v1/track", strings.NewReader(`{"userId":"ann","event":"Book Finished","properties":{"book_id":"b1"}}`))
	req.SetBasicAuth(key, "")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("segment call with a revoked key: %v %d", err, resp.StatusCode)
	}
}

func TestLocalOnlyModeNeedsNoKeys(t *testing.T) {
	_, url := start(t, nil) // loopback, no --require-auth
	if s, body := call(t, "POST", url+"/v1/events", "", ev("l1", "finish", "")); s != 200 {
		t.Fatalf("local-only ingest: %d %s", s, body)
	}
	if s, _ := call(t, "GET", url+"/v1/stats", "", ""); s != 200 {
		t.Fatalf("local-only stats: %d", s)
	}
}

func TestPerKeyRateLimit(t *testing.T) {
	dir := t.TempDir()
	_, url := start(t, func(c *server.Config) {
		c.DataDir, c.RequireAuth, c.KeyRate, c.Ingest.MaxEvents = dir, true, 100, 200
	})
	key, _, _ := auth.OpenKeys(dir).Create("app")
	other, _, _ := auth.OpenKeys(dir).Create("other-app")
	batch := func(prefix string, n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(ev(prefix+string(rune('a'+i/26))+string(rune('a'+i%26)), "finish", "") + "\n")
		}
		return b.String()
	}
	if s, body := call(t, "POST", url+"/v1/events", key, batch("x", 150)); s != 200 {
		t.Fatalf("first 150 events: %d %s", s, body)
	}
	req, _ := http.NewRequest("POST", url+"/v1/events", strings.NewReader(batch("y", 150)))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the key's rate: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Limits are per key: another source is not slowed down.
	if s, body := call(t, "POST", url+"/v1/events", other, batch("z", 150)); s != 200 {
		t.Fatalf("other key: %d %s", s, body)
	}
}

// certs writes a CA, a server certificate for 127.0.0.1 and a client certificate, all signed by
// the CA, and returns their file names.
func certs(t *testing.T) (ca, serverCert, serverKey string, client tls.Certificate, pool *x509.CertPool) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dogear test CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
		return p
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "dogear"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		return der, k
	}
	sDER, sKey := leaf(2, x509.ExtKeyUsageServerAuth)
	serverCert = write("server.pem", "CERTIFICATE", sDER)
	skb, _ := x509.MarshalECPrivateKey(sKey)
	serverKey = write("server-key.pem", "EC PRIVATE KEY", skb)
	cDER, cKey := leaf(3, x509.ExtKeyUsageClientAuth)
	client = tls.Certificate{Certificate: [][]byte{cDER}, PrivateKey: cKey}
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return
}

func TestMutualTLS(t *testing.T) {
	ca, cert, key, clientCert, pool := certs(t)
	srv, _ := start(t, func(c *server.Config) { c.TLSCert, c.TLSKey, c.TLSClientCA = cert, key, ca })
	url := "https://" + srv.Addr() + "/healthz"
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}}}}
	resp, err := withCert.Get(url)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("with a client certificate: %v", err)
	}
	resp.Body.Close()
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := noCert.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate got through mutual TLS")
	}
	if resp, err := http.Get("http://" + srv.Addr() + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on a TLS listener")
	}
}
