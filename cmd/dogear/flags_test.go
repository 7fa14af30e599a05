package main

import (
	"strings"
	"testing"
)

func TestFlagsFallBackToEnvironment(t *testing.T) {
	t.Setenv("DOGEAR_DATA_DIR", "/srv/dogear")
	t.Setenv("DOGEAR_MAX_EVENTS", "7")
	fs := newFlags("x", "test")
	dir := fs.String("data-dir", "dogear-data", "")
	addr := fs.String("addr", "127.0.0.1:8080", "")
	maxEvents := fs.Int("max-events", 100, "")
	if err := parse(fs, []string{"--addr", "127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	if *dir != "/srv/dogear" || *maxEvents != 7 || *addr != "127.0.0.1:9" {
		t.Fatalf("data-dir %q max-events %d addr %q", *dir, *maxEvents, *addr)
	}
	// A flag on the command line wins over the environment.
	fs = newFlags("x", "test")
	dir = fs.String("data-dir", "dogear-data", "")
	parse(fs, []string{"--data-dir", "here"})
	if *dir != "here" {
		t.Fatalf("command line lost to the environment: %q", *dir)
	}
	// A bad value in the environment is refused with the variable's name.
	t.Setenv("DOGEAR_MAX_EVENTS", "many")
	fs = newFlags("x", "test")
	fs.Int("max-events", 100, "")
	if err := parse(fs, nil); err == nil || !strings.Contains(err.Error(), "DOGEAR_MAX_EVENTS") {
		t.Fatalf("err = %v", err)
	}
}
