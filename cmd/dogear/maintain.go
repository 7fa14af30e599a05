package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/maintenance"
	"github.com/dogear-dev/dogear/server"
)

func rebuild(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("rebuild", "Recompute all state from the event log; with --check, compare a rebuild with the live state instead of replacing it")
	dataDirFlag(fs, &cfg)
	cacheMB := fs.Int64("cache-mb", cfg.CacheBytes>>20, "block cache of each embedded store, MiB")
	check := fs.Bool("check", false, "verify that live state equals a rebuild; exit 1 on a difference")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.CacheBytes = *cacheMB << 20
	o := datadir.Options{CacheBytes: cfg.CacheBytes, MinFreeBytes: cfg.MinFreeBytes}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if *check {
		diff, err := maintenance.Verify(ctx, cfg.DataDir, o, cfg.Logger)
		if err != nil {
			return err
		}
		if diff != "" {
			return fmt.Errorf("state differs from a rebuild: %s", diff)
		}
		fmt.Printf("state equals a rebuild from the log (%v)\n", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := maintenance.Rebuild(ctx, cfg.DataDir, o, cfg.Logger); err != nil {
		return err
	}
	fmt.Printf("state rebuilt from the log in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func dump(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("dump", "Write every event of the embedded log as NDJSON, partition by partition in offset order")
	dataDirFlag(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	n, err := maintenance.Dump(context.Background(), cfg.DataDir, cfg.CacheBytes, os.Stdout)
	if err == nil {
		fmt.Fprintf(os.Stderr, "%d events\n", n)
	}
	return err
}
