package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// Controller scales one role of a ReadingPipeline: each interval it reads the role's load,
// asks the policy, and sets the role's workload through its scale subresource, which the
// operator keeps within the role's bounds. Every change is recorded as an event on the pipeline
// and a log line, with the inputs it was made from.
type Controller struct {
	Client   client.Client
	Pipeline types.NamespacedName
	Role     string
	Policy   Policy
	// Load returns the role's load now, in the capacity model's units. (Lag is not read live, so
	// the keda policy is for replays only.)
	Load   func(ctx context.Context) (float64, error)
	Logger *slog.Logger
}

// Step makes one decision at now and applies it; it returns the replicas set.
func (c *Controller) Step(ctx context.Context, now time.Time) (int, error) {
	var p v1alpha1.ReadingPipeline
	if err := c.Client.Get(ctx, c.Pipeline, &p); err != nil {
		return 0, err
	}
	st, ok := p.Status.Roles[c.Role]
	if !ok {
		return 0, fmt.Errorf("pipeline %s reports no role %q yet", c.Pipeline, c.Role)
	}
	kind, name, _ := strings.Cut(st.Workload, "/")
	var workload client.Object = &appsv1.Deployment{}
	if kind == "StatefulSet" {
		workload = &appsv1.StatefulSet{}
	}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: name}, workload); err != nil {
		return 0, err
	}
	var scale autoscalingv1.Scale
	if err := c.Client.SubResource("scale").Get(ctx, workload, &scale); err != nil {
		return 0, err
	}
	demand, err := c.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("load of role %s: %w", c.Role, err)
	}
	current := int(scale.Spec.Replicas)
	desired := c.Policy.Desired(Observation{Time: now, Demand: demand, Ready: int(st.ReadyReplicas), Current: current})
	if desired == current {
		return current, nil
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error { // the operator may write the workload meanwhile
		if err := c.Client.SubResource("scale").Get(ctx, workload, &scale); err != nil {
			return err
		}
		scale.Spec.Replicas = int32(desired)
		return c.Client.SubResource("scale").Update(ctx, workload, client.WithSubResourceBody(&scale))
	})
	if err != nil {
		return current, err
	}
	note := fmt.Sprintf("role %s: %d → %d replicas (policy %s; load %.4g, %d ready)", c.Role, current, desired, c.Policy.Name(), demand, st.ReadyReplicas)
	if pr, ok := c.Policy.(*Predictive); ok {
		note += fmt.Sprintf("; reactive %d, proactive %d from an upper forecast of %.4g (quantile %.2g)", pr.Last.Reactive, pr.Last.Proactive, pr.Last.Upper, pr.Last.Quantile)
	}
	c.Logger.Info("scaled", "pipeline", c.Pipeline.String(), "role", c.Role, "from", current, "to", desired, "load", demand, "policy", c.Policy.Name())
	return desired, record(ctx, c.Client, &p, "Scaled", "Scale", note)
}

// Run steps every interval until ctx ends; a failed step is logged and retried next interval.
func (c *Controller) Run(ctx context.Context, interval time.Duration) error {
	every(ctx, interval, func() bool {
		switch _, err := c.Step(ctx, time.Now()); {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, ErrNoRateYet):
			c.Logger.Debug("waiting for a second scrape", "role", c.Role)
		default:
			c.Logger.Warn("orchestrator step failed", "role", c.Role, "err", err)
		}
		return false
	})
	return nil
}

// every calls step now and then every interval, until step says it is done or ctx ends.
func every(ctx context.Context, interval time.Duration, step func() (done bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !step() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record writes an event on the pipeline (events.k8s.io), the record kubectl describe shows.
func record(ctx context.Context, c client.Client, p *v1alpha1.ReadingPipeline, reason, action, note string) error {
	host, _ := os.Hostname()
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: p.Name + "-", Namespace: p.Namespace},
		EventTime:           metav1.NowMicro(),
		ReportingController: "dogear.dev/orchestrator",
		ReportingInstance:   "dogear-orchestrator-" + host,
		Action:              action,
		Reason:              reason,
		Type:                corev1.EventTypeNormal,
		Note:                note,
		Regarding: corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ReadingPipeline",
			Namespace: p.Namespace, Name: p.Name, UID: p.UID},
	}
	if len(ev.Note) > 1024 { // the API's limit
		ev.Note = ev.Note[:1021] + "..."
	}
	return c.Create(ctx, ev)
}
