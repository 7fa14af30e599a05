package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/kosync"
)

// newGuard sets up authentication: on unless the server only listens on loopback (local-only
// mode) and RequireAuth is off. The log says which, plainly.
func newGuard(cfg Config) (*auth.Guard, error) {
	tokens, err := auth.OpenTokens(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	g := &auth.Guard{On: cfg.RequireAuth || !loopback(cfg.Addr), Keys: auth.OpenKeys(cfg.DataDir), Tokens: tokens,
		EventsPerSecond: cfg.KeyRate, Burst: max(int(cfg.KeyRate), cfg.Ingest.MaxEvents)}
	if g.On {
		cfg.Logger.Info("auth: write keys required for ingest, signed tokens for reads (dogear keys, dogear token)")
	} else {
		cfg.Logger.Warn("auth: LOCAL-ONLY MODE on loopback: no write keys or tokens are checked; listening beyond loopback (or --require-auth) turns them on")
	}
	return g, nil
}

// kosyncConfig decides kosync's registration from kosync-registration and the guard: with auth
// on, open registration is off unless asked for, and then writes to readers named kosync:USER.
func kosyncConfig(cfg Config, guard *auth.Guard) (kosync.Config, error) {
	kcfg := cfg.Kosync
	switch cfg.KosyncRegistration {
	case "", "auto":
		kcfg.AllowRegistration = !guard.On
	case "open":
		kcfg.AllowRegistration = true
	case "closed":
		kcfg.AllowRegistration = false
	default:
		return kcfg, fmt.Errorf("kosync-registration: %q is not auto, open or closed", cfg.KosyncRegistration)
	}
	if guard.On {
		kcfg.ReaderPrefix = "kosync:"
	}
	return kcfg, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listen opens the listener, with TLS (and client certificates) when configured.
func listen(cfg Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		if cfg.TLSClientCA != "" {
			ln.Close()
			return nil, errors.New("tls-client-ca needs tls-cert and tls-key")
		}
		return ln, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			ln.Close()
			return nil, fmt.Errorf("tls-client-ca: no PEM certificate in %s", cfg.TLSClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tls.NewListener(ln, tc), nil
}
