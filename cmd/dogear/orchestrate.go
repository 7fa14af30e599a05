package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dogear-dev/dogear/orchestrator"
)

// orchestrateCmd runs the orchestrator's subcommands.
func orchestrateCmd(args []string) error {
	const use = "usage: dogear orchestrate replay --trace FILE --policy hpa|keda|predictive"
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Println(use)
		return nil
	}
	switch args[0] {
	case "replay":
		return replayCmd(args[1:])
	}
	return errors.New(use)
}

func replayCmd(args []string) error {
	fs := newFlags("orchestrate replay", "Replay a load trace (CSV ts,value) against the capacity model under a scaling policy, and print one JSON result")
	tracePath := fs.String("trace", "", "the trace: CSV of Unix seconds and load")
	policy := fs.String("policy", "predictive", "hpa, keda or predictive")
	perReplica := fs.Float64("capacity", 0, "load one ready replica serves (default: a tenth of the trace's 99th percentile)")
	startup := fs.Duration("startup", 5*time.Minute, "time from a replica's creation to its readiness")
	target := fs.Float64("target", 0.7, "target utilisation of every policy")
	minR := fs.Int("min", 1, "fewest replicas")
	maxR := fs.Int("max", 100, "most replicas")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tracePath == "" {
		return errors.New("--trace is required")
	}
	f, err := os.Open(*tracePath)
	if err != nil {
		return err
	}
	defer f.Close()
	trace, err := orchestrator.ReadTrace(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *tracePath, err)
	}
	c := orchestrator.DefaultCapacity(trace)
	if *perReplica > 0 {
		c.PerReplica = *perReplica
	}
	c.Startup, c.Target, c.Min, c.Max = *startup, *target, *minR, *maxR
	p, err := orchestrator.NewPolicy(*policy, c)
	if err != nil {
		return err
	}
	res := orchestrator.Replay(filepath.Base(*tracePath), trace, c, p)
	return json.NewEncoder(os.Stdout).Encode(res)
}
