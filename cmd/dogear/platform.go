package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/dogear-dev/dogear/containerimage"
	"github.com/dogear-dev/dogear/operator"
)

// operatorCmd runs the Kubernetes operator for ReadingPipeline resources.
func operatorCmd(args []string) error {
	var o operator.Options
	fs := newFlags("operator", "Run the Kubernetes operator that turns ReadingPipeline resources into dogear's roles")
	fs.StringVar(&o.Namespace, "namespace", "", "watch only this namespace (default: all)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":8080", "serve the operator's Prometheus metrics here (0: off)")
	fs.StringVar(&o.ProbeAddr, "probe-addr", ":8081", "serve /healthz and /readyz here (0: off)")
	fs.BoolVar(&o.LeaderElection, "leader-elect", true, "contend for a Lease so that one replica reconciles at a time")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the Lease (default: the operator's own, in a cluster)")
	fs.DurationVar(&o.LeaseDuration, "lease-duration", 15*time.Second, "how long a silent leader keeps the Lease")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := logger(*level)
	if err != nil {
		return err
	}
	o.Logger = log
	cfg, err := config.GetConfig() // in-cluster, or $KUBECONFIG / ~/.kube/config
	if err != nil {
		return fmt.Errorf("no Kubernetes API server to talk to: %w", err)
	}
	op, err := operator.New(cfg, o)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return op.Run(ctx)
}

// imageCmd builds dogear's OCI image from a static binary, without Docker.
func imageCmd(args []string) error {
	var o containerimage.Options
	fs := newFlags("image", "Build dogear's OCI image (one layer, non-root, with an SPDX SBOM) from a static binary into an OCI layout folder")
	fs.StringVar(&o.Binary, "binary", "", "a static dogear binary: CGO_ENABLED=0 go build -trimpath -o dogear ./cmd/dogear (default: this one)")
	out := fs.String("out", "dogear-image", "OCI layout folder to write (replaced); push it with crane, skopeo or oras")
	fs.StringVar(&o.Tag, "tag", "", "the image's name in the layout (default: the binary's version)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Binary == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.Binary = self
	}
	digest, err := containerimage.Build(*out, o)
	if err != nil {
		return err
	}
	fmt.Printf("%s\t%s\n", *out, digest)
	return nil
}
