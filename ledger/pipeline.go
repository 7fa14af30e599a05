package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// Annotations a PipelineApplier sets on the ReadingPipeline it applied the ledger to, so that
// `kubectl get readingpipeline -o yaml` shows which agreed state the cluster runs.
const (
	AnnotationHeight  = "ledger.dogear.dev/height"
	AnnotationAppHash = "ledger.dogear.dev/app-hash"
)

// PipelineApplier applies the ledger to a ReadingPipeline on Kubernetes, where the operator
// carries it to the workloads: "pipeline.image" (the image every role runs: no single party rolls
// out code alone) and "recommender.interval". Both go in one merge patch with the height and app
// hash, so a pipeline never shows a height whose entries it does not hold.
type PipelineApplier struct {
	Client    client.Client
	Namespace string
	Name      string
}

// Apply implements Follower.Apply.
func (a *PipelineApplier) Apply(ctx context.Context, s Snapshot) error {
	spec := map[string]any{}
	if v := s.Config["pipeline.image"]; v != "" {
		spec["image"] = v
	}
	if v := s.Config["recommender.interval"]; v != "" {
		spec["recommender"] = map[string]any{"interval": v}
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationHeight: strconv.FormatInt(s.Height, 10), AnnotationAppHash: fmt.Sprintf("%X", s.AppHash)}}}
	if len(spec) > 0 {
		patch["spec"] = spec
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	p := &v1alpha1.ReadingPipeline{}
	p.Namespace, p.Name = a.Namespace, a.Name
	if err := a.Client.Patch(ctx, p, client.RawPatch("application/merge-patch+json", b)); err != nil {
		return fmt.Errorf("ReadingPipeline %s/%s: %w", a.Namespace, a.Name, err)
	}
	return nil
}
