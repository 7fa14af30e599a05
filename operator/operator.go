// Package operator runs dogear on Kubernetes: it reconciles ReadingPipeline resources into each
// role's Deployment or StatefulSet, Services, disruption budgets, network and mesh policy.
package operator

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// LeaderElectionID names the Lease that operator replicas contend for; one reconciles at a time.
const LeaderElectionID = "dogear-operator.dogear.dev"

// Options configure the operator.
type Options struct {
	// Namespace to watch; empty watches all.
	Namespace string
	// MetricsAddr serves Prometheus metrics ("0" turns them off); ProbeAddr serves /healthz
	// and /readyz ("0" turns them off).
	MetricsAddr, ProbeAddr string
	// LeaderElection makes replicas contend for a Lease in LeaderElectionNamespace.
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaseDuration is how long a leader's Lease holds without renewal (default 15 s): a
	// crashed leader is replaced after about this long; one that stops cleanly gives it up at once.
	LeaseDuration time.Duration
	// Logger receives the operator's and controller-runtime's logs (default slog.Default()).
	Logger *slog.Logger
}

// skipNameValidation lets tests run several operators in one process (set in export_test.go);
// one process runs one operator otherwise, and controller-runtime refuses a second by name.
var skipNameValidation bool

// Scheme knows the kinds the operator reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Operator is a manager with the ReadingPipeline reconciler registered.
type Operator struct {
	Manager    ctrl.Manager
	Reconciler *Reconciler
}

// New makes an operator talking to the API server at cfg.
func New(cfg *rest.Config, o Options) (*Operator, error) {
	lease := o.LeaseDuration
	if lease == 0 {
		lease = 15 * time.Second
	}
	renew, retry := lease*2/3, lease/5
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	log.SetLogger(logr.FromSlogHandler(logger.Handler())) // client-go's own messages too
	mo := ctrl.Options{
		Logger:                        logr.FromSlogHandler(logger.Handler()),
		Scheme:                        Scheme(),
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.ProbeAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease, RenewDeadline: &renew, RetryPeriod: &retry,
	}
	if o.Namespace != "" {
		mo.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{o.Namespace: {}}}
	}
	if skipNameValidation {
		mo.Controller.SkipNameValidation = &skipNameValidation
	}
	mgr, err := ctrl.NewManager(cfg, mo)
	if err != nil {
		return nil, err
	}
	r := &Reconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Recorder: mgr.GetEventRecorder("dogear-operator")}
	if err := r.setup(mgr); err != nil {
		return nil, err
	}
	if o.ProbeAddr != "0" && o.ProbeAddr != "" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
			if !mgr.GetCache().WaitForCacheSync(req.Context()) {
				return errors.New("informer caches not synced")
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return &Operator{Manager: mgr, Reconciler: r}, nil
}

// Run runs the operator until ctx ends.
func (o *Operator) Run(ctx context.Context) error { return o.Manager.Start(ctx) }

// Elected is closed once this replica leads (at once without leader election).
func (o *Operator) Elected() <-chan struct{} { return o.Manager.Elected() }
