package operator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator"
	"github.com/dogear-dev/dogear/operator/v1alpha1"
	"github.com/dogear-dev/dogear/orchestrator"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// eventWith waits for an event on the namespace's pipeline with reason and a note containing want.
func eventWith(t *testing.T, ns, reason, want string) {
	t.Helper()
	eventually(t, 10*time.Second, "event "+reason, func() error {
		var evs eventsv1.EventList
		if err := k8s.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.Regarding.Kind == "ReadingPipeline" && strings.Contains(e.Note, want) {
				return nil
			}
		}
		return fmt.Errorf("no %s event containing %q among %d", reason, want, len(evs.Items))
	})
}

// The orchestrator sets a role's replicas through the workload's scale subresource; the operator
// keeps the count (it is within the role's bounds) and reports it; the decision is recorded.
func TestOrchestratorScalesARoleThroughTheOperator(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	p.Spec.Roles.Ingest = bounds(1, 8)
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "ingest in status", func() error {
		var got v1alpha1.ReadingPipeline
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if _, ok := got.Status.Roles["ingest"]; !ok {
			return fmt.Errorf("roles %v", got.Status.Roles)
		}
		return nil
	})
	c := orchestrator.Capacity{PerReplica: 10, Startup: 5 * time.Minute, Interval: time.Minute, Min: 1, Max: 8, Target: 0.7}
	ctl := &orchestrator.Controller{Client: k8s, Pipeline: types.NamespacedName{Namespace: ns, Name: "books"}, Role: "ingest",
		Policy: orchestrator.NewHPA(c), Load: func(context.Context) (float64, error) { return 35, nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// One replica at 35 load against 10 per replica at 70%: ceil(1 × 3.5 / 0.7) = 5.
	got, err := ctl.Step(context.Background(), time.Now())
	if err != nil || got != 5 {
		t.Fatalf("step: %d %v, want 5", got, err)
	}
	eventually(t, 10*time.Second, "five replicas kept by the operator and reported", func() error {
		var d appsv1.Deployment
		var pl v1alpha1.ReadingPipeline
		if err := get(t, ns, "books-ingest", &d); err != nil {
			return err
		}
		if err := get(t, ns, "books", &pl); err != nil {
			return err
		}
		if *d.Spec.Replicas != 5 || pl.Status.Roles["ingest"].Replicas != 5 {
			return fmt.Errorf("deployment %d, status %d", *d.Spec.Replicas, pl.Status.Roles["ingest"].Replicas)
		}
		return nil
	})
	eventWith(t, ns, "Scaled", "role ingest: 1 → 5 replicas (policy hpa; load 35")
}

// A canary that is slower than the stable version is rolled back after three failed intervals,
// judged on the two versions' own /metrics (each a Prometheus registry with the query API's
// latency histogram and request counter): the orchestrator removes it from the pipeline, the
// operator deletes its Deployments, and the evidence is on the pipeline.
func TestSlowCanaryIsRolledBack(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	p.Spec.Canary = &v1alpha1.CanarySpec{Image: "registry.example/dogear:v2-slow", Weight: 10}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "canary deployment", func() error { return get(t, ns, "books-api-canary", &appsv1.Deployment{}) })

	rng := rand.New(rand.NewPCG(9, 9))
	track := func() (*httptest.Server, func(n int, median float64)) {
		reg := prometheus.NewRegistry()
		seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dogear_api_request_seconds",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"route"})
		requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dogear_api_requests_total"}, []string{"route", "status"})
		reg.MustRegister(seconds, requests)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		return srv, func(n int, median float64) {
			for range n {
				seconds.WithLabelValues("trending").Observe(median * (0.7 + 0.6*rng.Float64()))
				requests.WithLabelValues("trending", "200").Inc()
			}
		}
	}
	stableSrv, stable := track()
	canarySrv, canary := track()
	metrics := func(url string) *orchestrator.TrackMetrics {
		return &orchestrator.TrackMetrics{URL: url + "/metrics", Histogram: "dogear_api_request_seconds", Requests: "dogear_api_requests_total"}
	}
	a := orchestrator.NewAnalysis()
	w := &orchestrator.CanaryWatch{Client: k8s, Pipeline: types.NamespacedName{Namespace: ns, Name: "books"},
		Stable: metrics(stableSrv.URL), Canary: metrics(canarySrv.URL), Analysis: a,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for intervals := 0; ; intervals++ {
		stable(400, 0.020)
		canary(40, 0.032)
		back, err := w.Step(context.Background())
		if err != nil && !errors.Is(err, orchestrator.ErrNoRateYet) {
			t.Fatal(err)
		}
		if back {
			break
		}
		if intervals > 10 {
			t.Fatalf("not rolled back after %d intervals:\n%s", intervals, a.Summary())
		}
	}
	eventually(t, 10*time.Second, "canary deployments removed by the operator", func() error {
		for _, name := range []string{"books-api-canary", "books-ingest-canary"} {
			if err := get(t, ns, name, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s: %v", name, err)
			}
		}
		return nil
	})
	eventWith(t, ns, "RolledBack", "canary registry.example/dogear:v2-slow rolled back after 3 failed intervals")
	eventWith(t, ns, "RolledBack", "interval 3 failed: latency")
}
