package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dogear-dev/dogear/operator"
	"github.com/dogear-dev/dogear/orchestrator"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

// orchestrateCmd runs the orchestrator's subcommands.
func orchestrateCmd(args []string) error {
	const use = "usage: dogear orchestrate replay --trace FILE --policy hpa|keda|predictive\n" +
		"       dogear orchestrate run --pipeline NAMESPACE/NAME --role ROLE --metrics-url URL --capacity N\n" +
		"       dogear orchestrate canary --pipeline NAMESPACE/NAME --stable-metrics URL --canary-metrics URL"
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Println(use)
		return nil
	}
	switch args[0] {
	case "replay":
		return replayCmd(args[1:])
	case "run":
		return orchestrateRunCmd(args[1:])
	case "canary":
		return canaryCmd(args[1:])
	}
	return errors.New(use)
}

const budgetUsage = "replica-hours the predictive policy may spend over what the HPA would, as a fraction (0.05: 5% more; negative: no budget)"

func replayCmd(args []string) error {
	fs := newFlags("orchestrate replay", "Replay a load trace (CSV ts,value) against the capacity model under a scaling policy, and print one JSON result")
	tracePath := fs.String("trace", "", "the trace: CSV of Unix seconds and load")
	policy := fs.String("policy", "predictive", "hpa, keda or predictive")
	perReplica := fs.Float64("capacity", 0, "load one ready replica serves (default: a tenth of the trace's 99th percentile)")
	startup := fs.Duration("startup", 5*time.Minute, "time from a replica's creation to its readiness")
	target := fs.Float64("target", 0.7, "target utilisation of every policy")
	minR := fs.Int("min", 1, "fewest replicas")
	maxR := fs.Int("max", 100, "most replicas")
	quantile := fs.Float64("quantile", orchestrator.DefaultQuantile, "highest upper forecast quantile the predictive policy provisions for")
	budget := fs.Float64("budget", orchestrator.DefaultBudget, budgetUsage)
	plotPath := fs.String("plot", "", "also draw one day of this policy and the HPA (demand and ready capacity) to this file (.svg, .png or .pdf)")
	plotForecast := fs.String("plot-forecast", "", "also draw one day of the trace beside the predictive policy's forecasts of it, made a startup ahead, to this file")
	plotDay := fs.Int("plot-day", 2, "which day of the trace to draw (--plot, --plot-forecast), from 0")
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
	name := filepath.Base(*tracePath)
	if pr, ok := p.(*orchestrator.Predictive); ok {
		pr.Quantile, pr.Budget = *quantile, *budget
	}
	res := orchestrator.Replay(name, trace, c, p)
	plotFrom := trace[0].Time.Add(time.Duration(*plotDay) * 24 * time.Hour)
	if *plotPath != "" {
		results := []orchestrator.Result{res}
		if *policy != "hpa" {
			results = append([]orchestrator.Result{orchestrator.Replay(name, trace, c, orchestrator.NewHPA(c))}, results...)
		}
		if err := orchestrator.PlotDay(*plotPath, name+": day "+strconv.Itoa(*plotDay), plotFrom, results...); err != nil {
			return err
		}
	}
	if *plotForecast != "" {
		if err := orchestrator.PlotForecast(*plotForecast, name+": forecasts of day "+strconv.Itoa(*plotDay), trace, c, *quantile, plotFrom); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// orchestrateRunCmd scales one role of a running pipeline ahead of its load.
func orchestrateRunCmd(args []string) error {
	fs := newFlags("orchestrate run", "Scale one role of a ReadingPipeline ahead of its load, reading the role's own metrics")
	pipeline := fs.String("pipeline", "", "the ReadingPipeline, NAMESPACE/NAME")
	role := fs.String("role", "ingest", "the role to scale")
	metricsURL := fs.String("metrics-url", "", "the role's /metrics, e.g. http://books-ingest.reading:8080/metrics")
	metric := fs.String("metric", "dogear_ingest_events_total", "the counter whose rate is the role's load")
	policy := fs.String("policy", "predictive", "hpa or predictive")
	perReplica := fs.Float64("capacity", 0, "load (the counter's rate per second) one replica serves; measure it with dogear bench")
	startup := fs.Duration("startup", 5*time.Minute, "time from a replica's creation to its readiness")
	target := fs.Float64("target", 0.7, "target utilisation")
	interval := fs.Duration("interval", time.Minute, "time between decisions")
	budget := fs.Float64("budget", orchestrator.DefaultBudget, budgetUsage)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	pipe, err := pipelineName(*pipeline)
	if err != nil {
		return err
	}
	if *metricsURL == "" || *perReplica <= 0 {
		return errors.New("--metrics-url and --capacity (> 0) are required")
	}
	log, err := logger(*level)
	if err != nil {
		return err
	}
	// No bounds here: the operator keeps the role within its minReplicas and maxReplicas.
	c := orchestrator.Capacity{PerReplica: *perReplica, Startup: *startup, Interval: *interval, Target: *target}
	if *policy == "keda" {
		return errors.New("--policy keda needs Kafka lag, which the live orchestrator does not read: use hpa or predictive")
	}
	p, err := orchestrator.NewPolicy(*policy, c)
	if err != nil {
		return err
	}
	if pr, ok := p.(*orchestrator.Predictive); ok {
		pr.Budget = *budget
	}
	cl, err := kubeClient()
	if err != nil {
		return err
	}
	load := &orchestrator.CounterRate{URL: *metricsURL, Metric: *metric}
	ctl := &orchestrator.Controller{Client: cl, Pipeline: pipe, Role: *role,
		Policy: p, Load: load.Load, Logger: log}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ctl.Run(ctx, *interval)
}

// canaryCmd compares a pipeline's canary with its stable version on their own metrics, and rolls
// the canary back when it is worse.
func canaryCmd(args []string) error {
	fs := newFlags("orchestrate canary", "Compare a ReadingPipeline's canary with the stable version on their /metrics each interval, and roll the canary back after failed intervals")
	pipeline := fs.String("pipeline", "", "the ReadingPipeline, NAMESPACE/NAME")
	stableURL := fs.String("stable-metrics", "", "the stable version's /metrics, e.g. http://books-api.reading:8080/metrics")
	canaryURL := fs.String("canary-metrics", "", "the canary's /metrics, e.g. http://books-api-canary.reading:8080/metrics")
	histogram := fs.String("histogram", "dogear_api_request_seconds", "the latency histogram to compare (dogear_ingest_request_seconds for ingest)")
	requests := fs.String("requests", "dogear_api_requests_total", "the request counter with a status label, whose 5xx are errors (dogear_ingest_requests_total for ingest)")
	interval := fs.Duration("interval", time.Minute, "analysis interval")
	failures := fs.Int("max-failures", 3, "failed intervals in a row that roll the canary back")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	pipe, err := pipelineName(*pipeline)
	if err != nil {
		return err
	}
	if *stableURL == "" || *canaryURL == "" {
		return errors.New("--stable-metrics and --canary-metrics are required")
	}
	if *failures < 1 {
		return fmt.Errorf("--max-failures %d: want at least 1", *failures)
	}
	log, err := logger(*level)
	if err != nil {
		return err
	}
	cl, err := kubeClient()
	if err != nil {
		return err
	}
	analysis := orchestrator.NewAnalysis()
	analysis.MaxFailures = *failures
	w := &orchestrator.CanaryWatch{Client: cl, Pipeline: pipe, Analysis: analysis, Logger: log,
		Stable: &orchestrator.TrackMetrics{URL: *stableURL, Histogram: *histogram, Requests: *requests},
		Canary: &orchestrator.TrackMetrics{URL: *canaryURL, Histogram: *histogram, Requests: *requests}}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return w.Run(ctx, *interval)
}

func pipelineName(s string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("--pipeline %q: want NAMESPACE/NAME", s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// kubeClient is a client of the Kubernetes API server this process runs under (in a pod, or
// $KUBECONFIG / ~/.kube/config) that knows the ReadingPipeline type.
func kubeClient() (client.Client, error) {
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes API server to talk to: %w", err)
	}
	return client.New(cfg, client.Options{Scheme: operator.Scheme()})
}
