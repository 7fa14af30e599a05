package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/server"
)

func keysCmd(args []string) error {
	const use = "usage: dogear keys create NAME | list | revoke ID|NAME [--data-dir DIR]"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Println(use + "\n\nWrite keys for event sources, stored hashed in DATA_DIR/keys.json; a running server sees changes on its next request.")
		return nil
	}
	if len(args) == 0 {
		return errors.New(use)
	}
	verb, rest := args[0], args[1:]
	var arg string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		arg, rest = rest[0], rest[1:]
	}
	cfg := server.DefaultConfig()
	fs := newFlags("keys "+verb, "Manage write keys (stored hashed in DATA_DIR/keys.json; a running server sees changes on its next request)")
	dataDirFlag(fs, &cfg)
	if err := parse(fs, rest); err != nil {
		return err
	}
	keys := auth.OpenKeys(cfg.DataDir)
	switch verb {
	case "create":
		if arg == "" {
			return errors.New("name the source: dogear keys create NAME")
		}
		key, rec, err := keys.Create(arg)
		if err != nil {
			return err
		}
		fmt.Printf("%s\n", key)
		fmt.Fprintf(os.Stderr, "write key %s for %q: shown once, stored only hashed; send it as Authorization: Bearer <key>\n", rec.ID, rec.Name)
	case "list":
		list, err := keys.List()
		if err != nil {
			return err
		}
		for _, k := range list {
			state := "active"
			if k.Revoked != nil {
				state = "revoked " + k.Revoked.Format(time.RFC3339)
			}
			fmt.Printf("%s  %-20s  created %s  %s\n", k.ID, k.Name, k.Created.Format(time.RFC3339), state)
		}
	case "revoke":
		n, err := keys.Revoke(arg)
		if err != nil {
			return err
		}
		fmt.Printf("revoked %d key(s)\n", n)
	default:
		return fmt.Errorf("unknown keys command %q: create, list or revoke", verb)
	}
	return nil
}

func tokenCmd(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("token", "Issue a signed, expiring token: a reader token opens only that reader's insights, recommendations and export; an admin token opens everything")
	dataDirFlag(fs, &cfg)
	reader := fs.String("reader", "", "issue a token for this reader")
	admin := fs.Bool("admin", false, "issue an admin token")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*reader == "") == !*admin {
		return errors.New("say --reader ID or --admin (one of them)")
	}
	tokens, err := auth.OpenTokens(cfg.DataDir)
	if err != nil {
		return err
	}
	role, subject := auth.RoleReader, *reader
	if *admin {
		role, subject = auth.RoleAdmin, "admin"
	}
	tok, err := tokens.Issue(role, subject, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
