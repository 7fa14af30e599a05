package operator_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/ledger"
	"github.com/dogear-dev/dogear/operator"
	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

func bounds(min, max int32) *v1alpha1.RoleSpec {
	return &v1alpha1.RoleSpec{MinReplicas: min, MaxReplicas: max}
}

// pipeline is a ReadingPipeline over Kafka and Cassandra with every role.
func pipeline(ns string) *v1alpha1.ReadingPipeline {
	return &v1alpha1.ReadingPipeline{
		ObjectMeta: metav1.ObjectMeta{Name: "books", Namespace: ns},
		Spec: v1alpha1.ReadingPipelineSpec{
			Image:   "registry.example/dogear:v1",
			Log:     v1alpha1.LogSpec{Brokers: []string{"kafka-0.kafka:9092", "kafka-1.kafka:9092"}, Topic: "reading-events", Partitions: 12},
			State:   v1alpha1.StateSpec{Kind: "cassandra", Cassandra: &v1alpha1.CassandraSpec{Hosts: []string{"cassandra-0"}, Keyspace: "dogear"}},
			Archive: &v1alpha1.ObjectStoreSpec{URL: "s3://reading-archive/events", CredentialsSecret: "s3"},
			Models:  &v1alpha1.ObjectStoreSpec{URL: "s3://reading-models/registry", CredentialsSecret: "s3"},
			Auth:    v1alpha1.AuthSpec{SecretName: "dogear-auth"},
			Roles: v1alpha1.RolesSpec{
				Ingest: bounds(2, 6), Process: bounds(1, 12), API: bounds(2, 4),
				Train: bounds(1, 1), Archive: bounds(1, 1),
			},
		},
	}
}

func get[T client.Object](t *testing.T, ns, name string, obj T) error {
	t.Helper()
	return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
}

func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// markReady does what the Deployment controller (not part of envtest) would: report every
// replica of the workload ready.
func markReady(t *testing.T, ns, name string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var d appsv1.Deployment
		if err := get(t, ns, name, &d); err != nil {
			return err
		}
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = *d.Spec.Replicas, *d.Spec.Replicas, *d.Spec.Replicas
		return k8s.Status().Update(context.Background(), &d)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// edit changes the pipeline as a user would while the operator works on it: read, change,
// write, again if the operator wrote in between.
func edit(t *testing.T, ns, name string, change func(*v1alpha1.ReadingPipeline), status bool) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p v1alpha1.ReadingPipeline
		if err := get(t, ns, name, &p); err != nil {
			return err
		}
		change(&p)
		if status {
			return k8s.Status().Update(context.Background(), &p)
		}
		return k8s.Update(context.Background(), &p)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCreateRendersEveryRoleAndReportsReadiness(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for _, role := range operator.Roles {
		var d appsv1.Deployment
		eventually(t, 10*time.Second, role+" deployment", func() error { return get(t, ns, "books-"+role, &d) })
		c := d.Spec.Template.Spec.Containers[0]
		env := envOf(c)
		if env["DOGEAR_ROLES"] != role || c.Image != p.Spec.Image || !slices.Equal(c.Args, []string{"serve"}) {
			t.Errorf("%s: roles %q image %q args %v", role, env["DOGEAR_ROLES"], c.Image, c.Args)
		}
		if env["DOGEAR_LOG"] != "kafka://kafka-0.kafka:9092,kafka-1.kafka:9092/reading-events" || env["DOGEAR_PARTITIONS"] != "12" {
			t.Errorf("%s: DOGEAR_LOG = %q, DOGEAR_PARTITIONS = %q", role, env["DOGEAR_LOG"], env["DOGEAR_PARTITIONS"])
		}
		if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: probes %+v %+v", role, c.ReadinessProbe, c.LivenessProbe)
		}
		if sc := c.SecurityContext; !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*d.Spec.Template.Spec.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: security context %+v", role, sc)
		}
		if ref := metav1.GetControllerOf(&d); ref == nil || ref.Kind != "ReadingPipeline" || ref.Name != "books" {
			t.Errorf("%s: controller %+v", role, ref)
		}
		for _, obj := range []client.Object{&corev1.Service{}, &corev1.ServiceAccount{}, &policyv1.PodDisruptionBudget{}} {
			if err := get(t, ns, "books-"+role, obj); err != nil {
				t.Errorf("%s: %T: %v", role, obj, err)
			}
		}
	}
	var ingest, process, train, api appsv1.Deployment
	for name, d := range map[string]*appsv1.Deployment{"ingest": &ingest, "process": &process, "train": &train, "api": &api} {
		if err := get(t, ns, "books-"+name, d); err != nil {
			t.Fatal(err)
		}
	}
	if *ingest.Spec.Replicas != 2 || *api.Spec.Replicas != 2 || *process.Spec.Replicas != 1 {
		t.Errorf("new workloads start at minReplicas: ingest %d api %d process %d", *ingest.Spec.Replicas, *api.Spec.Replicas, *process.Spec.Replicas)
	}
	if e := envOf(process.Spec.Template.Spec.Containers[0]); e["DOGEAR_STATE"] != "cassandra://cassandra-0/dogear" || e["DOGEAR_PARTITIONS"] != "12" {
		t.Errorf("process env %v", e)
	}
	if e := envOf(train.Spec.Template.Spec.Containers[0]); e["DOGEAR_MODELS"] != "s3://reading-models/registry" || e["DOGEAR_TRAIN_INTERVAL"] != "6h" {
		t.Errorf("train env %v", e)
	}
	if e := envOf(ingest.Spec.Template.Spec.Containers[0]); e["DOGEAR_STATE"] != "" {
		t.Errorf("ingest reads no state, got DOGEAR_STATE=%q", e["DOGEAR_STATE"])
	}

	var got v1alpha1.ReadingPipeline
	eventually(t, 10*time.Second, "status with every role, not ready", func() error {
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if !slices.Contains(got.Finalizers, operator.Finalizer) {
			return fmt.Errorf("finalizers %v", got.Finalizers)
		}
		c := meta.FindStatusCondition(got.Status.Conditions, "Ready")
		if c == nil || c.Status != metav1.ConditionFalse || len(got.Status.Roles) != 5 || got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
	if s := got.Status.Roles["ingest"]; s.Workload != "Deployment/books-ingest" || s.Replicas != 2 {
		t.Errorf("ingest status %+v", s)
	}
	for _, role := range operator.Roles {
		markReady(t, ns, "books-"+role)
	}
	eventually(t, 10*time.Second, "Ready once every replica is", func() error {
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, "Ready"); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Ready %+v", c)
		}
		if got.Status.Roles["api"].ReadyReplicas != 2 {
			return fmt.Errorf("api %+v", got.Status.Roles["api"])
		}
		return nil
	})
}

func TestEmbeddedStateRunsProcessorsAsAStatefulSet(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	p.Spec.State = v1alpha1.StateSpec{Kind: "embedded", Storage: v1alpha1.StorageSpec{Size: "20Gi"}}
	p.Spec.Roles.API, p.Spec.Roles.Train = bounds(0, 0), bounds(0, 0)
	p.Spec.Roles.Process = &v1alpha1.RoleSpec{Replicas: new(int32(3)), MinReplicas: 1, MaxReplicas: 12}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var s appsv1.StatefulSet
	eventually(t, 10*time.Second, "process statefulset", func() error { return get(t, ns, "books-process", &s) })
	if *s.Spec.Replicas != 3 || len(s.Spec.VolumeClaimTemplates) != 1 ||
		s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "20Gi" {
		t.Errorf("statefulset replicas %d claims %+v", *s.Spec.Replicas, s.Spec.VolumeClaimTemplates)
	}
	if e := envOf(s.Spec.Template.Spec.Containers[0]); e["DOGEAR_STATE"] != "partitioned:///var/lib/dogear/state" {
		t.Errorf("DOGEAR_STATE = %q", e["DOGEAR_STATE"])
	}
	var svc corev1.Service
	if err := get(t, ns, "books-process", &svc); err != nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || s.Spec.ServiceName != "books-process" {
		t.Errorf("governing service: %v %q", err, svc.Spec.ClusterIP)
	}
	eventually(t, 10*time.Second, "status", func() error {
		var got v1alpha1.ReadingPipeline
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if got.Status.Roles["process"].Workload != "StatefulSet/books-process" {
			return fmt.Errorf("roles %+v", got.Status.Roles)
		}
		if _, ok := got.Status.Roles["api"]; ok {
			return fmt.Errorf("api is off, status has %+v", got.Status.Roles["api"])
		}
		return nil
	})
	if err := get(t, ns, "books-api", &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("api role is off, its deployment: %v", err)
	}
}

func TestUpdateRollsImagesAndRemovesWhatIsNoLongerWanted(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "archive deployment", func() error { return get(t, ns, "books-archive", &appsv1.Deployment{}) })

	edit(t, ns, "books", func(p *v1alpha1.ReadingPipeline) {
		p.Spec.Image = "registry.example/dogear:v2"
		p.Spec.Roles.Archive = bounds(0, 0)
		p.Spec.Canary = &v1alpha1.CanarySpec{Image: "registry.example/dogear:v3-rc1", Weight: 10}
	}, false)
	eventually(t, 10*time.Second, "new image on every role", func() error {
		return everyRoleRuns(t, ns, "registry.example/dogear:v2")
	})
	eventually(t, 10*time.Second, "archive role removed", func() error {
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}} {
			if err := get(t, ns, "books-archive", obj); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T: %v", obj, err)
			}
		}
		return nil
	})
	for _, role := range []string{"ingest", "api"} {
		var d appsv1.Deployment
		if err := get(t, ns, "books-"+role+"-canary", &d); err != nil {
			t.Fatalf("canary of %s: %v", role, err)
		}
		if d.Spec.Template.Spec.Containers[0].Image != "registry.example/dogear:v3-rc1" || d.Spec.Selector.MatchLabels["dogear.dev/track"] != "canary" {
			t.Errorf("canary %s: %+v", role, d.Spec)
		}
	}
	var got v1alpha1.ReadingPipeline
	eventually(t, 10*time.Second, "observed generation", func() error {
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observed %d of %d", got.Status.ObservedGeneration, got.Generation)
		}
		return nil
	})
}

func TestScaleSubresourceWithinBounds(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	if err := k8s.Create(context.Background(), pipeline(ns)); err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	eventually(t, 10*time.Second, "ingest deployment", func() error { return get(t, ns, "books-ingest", &d) })
	scale := func(n int32) {
		t.Helper()
		s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "books-ingest", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
		if err := k8s.SubResource("scale").Update(context.Background(), &d, client.WithSubResourceBody(s)); err != nil {
			t.Fatal(err)
		}
	}
	replicas := func(want int32) func() error {
		return func() error {
			var got v1alpha1.ReadingPipeline
			if err := get(t, ns, "books", &got); err != nil {
				return err
			}
			if err := get(t, ns, "books-ingest", &d); err != nil {
				return err
			}
			if *d.Spec.Replicas != want || got.Status.Roles["ingest"].Replicas != want {
				return fmt.Errorf("deployment %d, status %d", *d.Spec.Replicas, got.Status.Roles["ingest"].Replicas)
			}
			return nil
		}
	}
	scale(5)
	eventually(t, 10*time.Second, "scaled to 5 (within 2..6) and kept", replicas(5))
	time.Sleep(500 * time.Millisecond) // the operator has seen the change; it must not undo it
	if err := replicas(5)(); err != nil {
		t.Fatalf("after the operator's round: %v", err)
	}
	scale(9)
	eventually(t, 10*time.Second, "scaled to 9, kept within maxReplicas 6", replicas(6))
	eventually(t, 10*time.Second, "an event saying so", func() error {
		var evs eventsv1.EventList
		if err := k8s.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "Bounded" && strings.Contains(e.Note, "role ingest was scaled to 9, outside [2, 6]: set to 6") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none Bounded", len(evs.Items))
	})
}

func TestInvalidSpecsAreRefusedAtAdmission(t *testing.T) {
	ns := namespace(t)
	for _, c := range []struct {
		name, want string
		edit       func(*v1alpha1.ReadingPipeline)
	}{
		{"two trainers", "at most one trainer", func(p *v1alpha1.ReadingPipeline) { p.Spec.Roles.Train = bounds(1, 2) }},
		{"min above max", "minReplicas is above maxReplicas", func(p *v1alpha1.ReadingPipeline) { p.Spec.Roles.API = bounds(3, 2) }},
		{"replicas out of bounds", "replicas is outside [minReplicas, maxReplicas]", func(p *v1alpha1.ReadingPipeline) {
			p.Spec.Roles.Ingest = &v1alpha1.RoleSpec{Replicas: new(int32(9)), MinReplicas: 1, MaxReplicas: 4}
		}},
		{"more processors than partitions", "roles.process.maxReplicas is above log.partitions", func(p *v1alpha1.ReadingPipeline) {
			p.Spec.Roles.Process = bounds(1, 13)
		}},
		{"api over embedded state", "the api and train roles read shared state", func(p *v1alpha1.ReadingPipeline) {
			p.Spec.State = v1alpha1.StateSpec{Kind: "embedded"}
		}},
		{"cassandra without hosts", "state.kind cassandra needs state.cassandra", func(p *v1alpha1.ReadingPipeline) { p.Spec.State.Cassandra = nil }},
		{"keys with an archive", "keys and the archive role exclude each other", func(p *v1alpha1.ReadingPipeline) {
			p.Spec.Keys = &v1alpha1.CassandraSpec{Hosts: []string{"c"}, Keyspace: "keys"}
		}},
		{"bad topic", "spec.log.topic", func(p *v1alpha1.ReadingPipeline) { p.Spec.Log.Topic = "reading events" }},
		{"no image", "spec.image", func(p *v1alpha1.ReadingPipeline) { p.Spec.Image = "" }},
		{"unknown mesh", "spec.mesh", func(p *v1alpha1.ReadingPipeline) { p.Spec.Mesh = "linkerd" }},
		{"bad interval", "spec.recommender.interval", func(p *v1alpha1.ReadingPipeline) { p.Spec.Recommender.Interval = "daily" }},
		{"own TLS inside a mesh", "spec.tls is dogear's own TLS", func(p *v1alpha1.ReadingPipeline) {
			p.Spec.Mesh, p.Spec.TLS = "istio", &v1alpha1.TLSSpec{SecretName: "tls"}
		}},
		{"canary weight", "spec.canary.weight", func(p *v1alpha1.ReadingPipeline) {
			p.Spec.Canary = &v1alpha1.CanarySpec{Image: "x", Weight: 101}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := pipeline(ns)
			p.Name = strings.ReplaceAll(c.name, " ", "-")
			c.edit(p)
			err := k8s.Create(context.Background(), p)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want Invalid naming %q, got %v", c.want, err)
			}
		})
	}
	// The same checks on update: a valid pipeline cannot be edited into an invalid one.
	p := pipeline(ns)
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	p.Spec.Roles.Archive = bounds(1, 3)
	if err := k8s.Update(context.Background(), p); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "at most one archiver") {
		t.Fatalf("update to three archivers: %v", err)
	}
}

func TestDeleteTearsDownThroughTheFinalizer(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "every role", func() error {
		var got v1alpha1.ReadingPipeline
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if len(got.Status.Roles) != 5 {
			return fmt.Errorf("roles %v", got.Status.Roles)
		}
		return nil
	})
	if err := k8s.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// envtest runs no garbage collector: what is gone, the operator deleted itself.
	eventually(t, 10*time.Second, "pipeline and its objects gone", func() error {
		if err := get(t, ns, "books", &v1alpha1.ReadingPipeline{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("pipeline: %v", err)
		}
		for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ServiceAccountList{}, &policyv1.PodDisruptionBudgetList{}} {
			if err := k8s.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": "books"}); err != nil {
				return err
			}
			if n := meta.LenList(list); n > 0 {
				return fmt.Errorf("%d left in %T", n, list)
			}
		}
		return nil
	})
}

func TestStatusUpdatesStartNoReconcile(t *testing.T) {
	ns := namespace(t)
	op, _ := start(t, operator.Options{Namespace: ns})
	p := pipeline(ns)
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.ReadingPipeline
	eventually(t, 10*time.Second, "settled", func() error {
		if err := get(t, ns, "books", &got); err != nil {
			return err
		}
		if len(got.Status.Roles) != 5 {
			return fmt.Errorf("roles %v", got.Status.Roles)
		}
		return nil
	})
	settled := func() int64 {
		// Quiet for a second: the rounds the creation started are over.
		for {
			before := op.Reconciler.Reconciles()
			time.Sleep(time.Second)
			if op.Reconciler.Reconciles() == before {
				return before
			}
		}
	}
	before := settled()
	const updates = 20
	for i := range updates {
		edit(t, ns, "books", func(p *v1alpha1.ReadingPipeline) {
			meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{Type: "Audited", Status: metav1.ConditionTrue,
				Reason: "External", Message: fmt.Sprintf("audit %d", i)})
		}, true)
	}
	after := settled()
	t.Logf("%d reconciles to settle a new pipeline; %d more after %d status updates", before, after-before, updates)
	if after != before {
		t.Errorf("%d status updates started %d reconciles, want 0", updates, after-before)
	}
	// A spec change still does.
	edit(t, ns, "books", func(p *v1alpha1.ReadingPipeline) { p.Spec.Image = "registry.example/dogear:v2" }, false)
	if n := settled(); n == after {
		t.Errorf("a spec change started no reconcile")
	}
}

func TestLeaderElectionOneReconcilesAtATime(t *testing.T) {
	ns := namespace(t)
	opts := operator.Options{Namespace: ns, LeaderElection: true, LeaderElectionNamespace: ns, LeaseDuration: 4 * time.Second}
	first, stopFirst := start(t, opts)
	select {
	case <-first.Elected():
	case <-time.After(20 * time.Second):
		t.Fatal("first operator never elected")
	}
	second, _ := start(t, opts)
	if err := k8s.Create(context.Background(), pipeline(ns)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the leader reconciles", func() error { return get(t, ns, "books-ingest", &appsv1.Deployment{}) })
	select {
	case <-second.Elected():
		t.Fatal("two leaders at once")
	default:
	}
	stopFirst() // releases the Lease on the way out
	if n := second.Reconciler.Reconciles(); n != 0 {
		t.Fatalf("the follower reconciled %d times while the first led", n)
	}
	select {
	case <-second.Elected():
	case <-time.After(20 * time.Second):
		t.Fatal("the second operator did not take over")
	}
	p2 := pipeline(ns)
	p2.Name = "stories"
	if err := k8s.Create(context.Background(), p2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the new leader reconciles", func() error { return get(t, ns, "stories-ingest", &appsv1.Deployment{}) })
}

// fullPipeline sets every option: mesh, canary, keys, selectors for Kafka and Cassandra,
// tracing, resources, pinned replicas.
func fullPipeline(ns string) *v1alpha1.ReadingPipeline {
	p := pipeline(ns)
	p.Spec.Mesh = "istio"
	p.Spec.Canary = &v1alpha1.CanarySpec{Image: "registry.example/dogear:v2-rc1", Weight: 5}
	p.Spec.Keys = &v1alpha1.CassandraSpec{Hosts: []string{"cassandra-0:9042"}, Keyspace: "dogear_keys"}
	p.Spec.Roles.Archive = bounds(0, 0)
	p.Spec.Log.PodSelector = map[string]string{"strimzi.io/cluster": "reading"}
	p.Spec.Log.Mirrors = []string{"eu.reading-events"}
	p.Spec.State.Cassandra.PodSelector = map[string]string{"cassandra.datastax.com/cluster": "reading"}
	p.Spec.Tracing = &v1alpha1.TracingSpec{Endpoint: "otel-collector.observability:4318", SampleRatio: "0.05"}
	p.Spec.Roles.Process = &v1alpha1.RoleSpec{Replicas: new(int32(4)), MinReplicas: 2, MaxReplicas: 12,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}
	return p
}

// TestRenderedObjectsPassTheAPIServer sends every object of several pipelines to the API server
// as a strict dry run: Kubernetes' own validation and Istio's CRD schemas, unknown fields refused.
func TestRenderedObjectsPassTheAPIServer(t *testing.T) {
	ns := namespace(t)
	embedded := pipeline(ns)
	embedded.Spec.State = v1alpha1.StateSpec{Kind: "embedded"}
	embedded.Spec.Roles.API, embedded.Spec.Roles.Train = bounds(0, 0), bounds(0, 0)
	embedded.Spec.TLS = &v1alpha1.TLSSpec{SecretName: "dogear-tls", Mutual: true}
	for name, p := range map[string]*v1alpha1.ReadingPipeline{"default": pipeline(ns), "full": fullPipeline(ns), "embedded": embedded} {
		t.Run(name, func(t *testing.T) {
			// The pipeline itself must pass admission too.
			if err := k8s.Create(context.Background(), p.DeepCopy(), client.DryRunAll); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			objs, err := operator.Rendered(p)
			if err != nil {
				t.Fatal(err)
			}
			kinds := dryRun(t, objs)
			if name == "full" {
				// Istio's schema is in force: a wrong value in a mesh object is refused.
				bad := objs[slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "PeerAuthentication" })].DeepCopy()
				_ = unstructured.SetNestedField(bad.Object, "SOMETIMES", "spec", "mtls", "mode")
				if err := k8s.Create(context.Background(), bad, client.DryRunAll, client.FieldValidation("Strict")); !apierrors.IsInvalid(err) {
					t.Errorf("PeerAuthentication with mtls mode SOMETIMES: %v, want Invalid", err)
				}
			}
			if name == "full" {
				// Istio: one PeerAuthentication; an AuthorizationPolicy per role plus Kafka's
				// and Cassandra's; a DestinationRule per role; a VirtualService per HTTP role.
				wantKinds(t, kinds, map[string]int{"PeerAuthentication": 1, "AuthorizationPolicy": 4 + 2, "DestinationRule": 4, "VirtualService": 2, "Deployment": 4 + 2})
			}
		})
	}
}

// TestUpdateLatency measures how long a ReadingPipeline change takes to reach the workloads:
// from the update to every role's Deployment carrying the new image and the status observing
// the new generation. docs/benchmarks.md compares it with the configuration ledger's.
func TestUpdateLatency(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	if err := k8s.Create(context.Background(), pipeline(ns)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "api deployment", func() error { return get(t, ns, "books-api", &appsv1.Deployment{}) })
	var took []time.Duration
	for i := range 10 {
		image := fmt.Sprintf("registry.example/dogear:v%d", i+2)
		began := time.Now()
		edit(t, ns, "books", func(p *v1alpha1.ReadingPipeline) { p.Spec.Image = image }, false)
		eventually(t, 10*time.Second, "the new image on every role, observed", func() error {
			if err := everyRoleRuns(t, ns, image); err != nil {
				return err
			}
			var p v1alpha1.ReadingPipeline
			if err := get(t, ns, "books", &p); err != nil {
				return err
			}
			if p.Status.ObservedGeneration != p.Generation {
				return fmt.Errorf("observed %d of %d", p.Status.ObservedGeneration, p.Generation)
			}
			return nil
		})
		took = append(took, time.Since(began))
	}
	slices.Sort(took)
	t.Logf("%d updates, update to applied and observed: p50 %v, p99 %v", len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)*99/100].Round(time.Millisecond))
}

// TestLedgerAppliesToThePipeline applies an agreed ledger state to a pipeline, as `dogear ledger
// follow --pipeline` does: the image the parties agreed on reaches every role, and the pipeline
// shows the ledger height and app hash it holds.
func TestLedgerAppliesToThePipeline(t *testing.T) {
	ns := namespace(t)
	start(t, operator.Options{Namespace: ns})
	if err := k8s.Create(context.Background(), pipeline(ns)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "api deployment", func() error { return get(t, ns, "books-api", &appsv1.Deployment{}) })
	a := &ledger.PipelineApplier{Client: k8s, Namespace: ns, Name: "books"}
	snap := ledger.Snapshot{Height: 41, AppHash: bytes.Repeat([]byte{0xAB}, 32),
		Config: map[string]string{"pipeline.image": "registry.example/dogear:agreed", "recommender.interval": "2h", "retention.days": "365"}}
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the agreed image on every role", func() error {
		return everyRoleRuns(t, ns, "registry.example/dogear:agreed")
	})
	var p v1alpha1.ReadingPipeline
	if err := get(t, ns, "books", &p); err != nil {
		t.Fatal(err)
	}
	if p.Annotations[ledger.AnnotationHeight] != "41" || p.Annotations[ledger.AnnotationAppHash] != strings.Repeat("AB", 32) || p.Spec.Recommender.Interval != "2h" {
		t.Fatalf("pipeline after the ledger: annotations %v, recommender %+v", p.Annotations, p.Spec.Recommender)
	}
	// A value the CRD refuses is refused at admission, and the follower reports it.
	snap.Config["recommender.interval"] = "every day"
	if err := a.Apply(context.Background(), snap); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Fatalf("an interval the CRD refuses: %v", err)
	}
}

// everyRoleRuns says which of pipeline books' stateless roles does not run image yet.
func everyRoleRuns(t *testing.T, ns, image string) error {
	for _, role := range []string{"ingest", "process", "api", "train"} {
		var d appsv1.Deployment
		if err := get(t, ns, "books-"+role, &d); err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != image {
			return fmt.Errorf("%s runs %s", role, img)
		}
	}
	return nil
}

// TestMemoryLimitHoldsTheGoHeap: a role with a memory limit runs with GOMEMLIMIT at 90% of it,
// since its block caches and memtables live in Go's heap; a role without one is left alone.
func TestMemoryLimitHoldsTheGoHeap(t *testing.T) {
	p := fullPipeline("default")
	p.Spec.Roles.Process.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}
	objs, err := operator.Rendered(p)
	if err != nil {
		t.Fatal(err)
	}
	limits := map[string]string{}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			t.Fatal(err)
		}
		limits[d.Name] = envOf(d.Spec.Template.Spec.Containers[0])["GOMEMLIMIT"]
	}
	if got, want := limits["books-process"], strconv.Itoa(2<<30/10*9); got != want {
		t.Errorf("process, limited to 2Gi: GOMEMLIMIT=%q, want %q", got, want)
	}
	if got := limits["books-ingest"]; got != "" {
		t.Errorf("ingest, with no memory limit: GOMEMLIMIT=%q, want none", got)
	}
}
