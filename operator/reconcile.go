package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// Finalizer holds a ReadingPipeline until its objects are gone, ingest first.
const Finalizer = "dogear.dev/teardown"

// fieldOwner is the operator's name in server-side apply's managed fields.
const fieldOwner = client.FieldOwner("dogear-operator")

// Reconciler makes a ReadingPipeline's objects what its spec says and reports what they are.
type Reconciler struct {
	Client   client.Client
	Scheme   *runtime.Scheme
	Recorder recorder.EventRecorder
	// reconciles counts Reconcile calls, for the no-reconcile-storm check.
	reconciles atomic.Int64
}

// Reconciles is how many times Reconcile has run.
func (r *Reconciler) Reconciles() int64 { return r.reconciles.Load() }

// setup registers the reconciler with mgr. The pipeline is watched for spec changes only
// (its generation), so status writes, the operator's own included, do not start another round;
// the workloads are watched fully, because their readiness is what the status reports.
func (r *Reconciler) setup(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ReadingPipeline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Complete(r)
}

// Reconcile applies the pipeline's objects, removes those it no longer has, and writes status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.reconciles.Add(1)
	var p v1alpha1.ReadingPipeline
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.teardown(ctx, &p)
	}
	if controllerutil.AddFinalizer(&p, Finalizer) {
		if err := r.Client.Update(ctx, &p); err != nil {
			return ctrl.Result{}, err
		}
	}

	workloads, err := r.workloads(ctx, &p)
	if err != nil {
		return ctrl.Result{}, err
	}
	current := map[string]*int32{}
	for role, w := range workloads {
		current[role] = w.replicas
	}
	desired, err := render(&p, current)
	if err != nil {
		return ctrl.Result{}, r.setStatus(ctx, &p, nil, err)
	}
	// The replicas kept were read from the cache, which may be behind a scale just made (by the
	// orchestrator, an HPA): apply only over the workload version they were read from, so a
	// stale count cannot overwrite a newer one. A conflict means look again.
	for _, o := range desired {
		for role, w := range workloads {
			if o.GetName() == objectName(&p, role) && o.GetObjectKind().GroupVersionKind().Kind == w.kind {
				o.SetResourceVersion(w.resourceVersion)
			}
		}
	}
	if err := r.apply(ctx, &p, desired); apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	} else if err != nil {
		return ctrl.Result{}, r.setStatus(ctx, &p, nil, err)
	}
	for _, name := range Roles {
		rl := roleOf(&p, name)
		if c := current[name]; c != nil && rl.enabled() && rl.spec.Replicas == nil && replicasFor(rl, c) != *c {
			r.Recorder.Eventf(&p, nil, corev1.EventTypeNormal, "Bounded", "Scale",
				"role %s was scaled to %d, outside [%d, %d]: set to %d", name, *c, rl.spec.MinReplicas, rl.spec.MaxReplicas, replicasFor(rl, c))
		}
	}
	if err := r.prune(ctx, &p, desired); err != nil {
		return ctrl.Result{}, r.setStatus(ctx, &p, nil, err)
	}
	roles, err := r.roleStatus(ctx, &p)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.setStatus(ctx, &p, roles, nil)
}

// apply writes each object with server-side apply: an unchanged object is not rewritten, so a
// round with nothing to do changes nothing and wakes no watcher.
func (r *Reconciler) apply(ctx context.Context, p *v1alpha1.ReadingPipeline, objs []client.Object) error {
	for _, o := range objs {
		if err := controllerutil.SetControllerReference(p, o, r.Scheme); err != nil {
			return err
		}
		u, err := toUnstructured(o)
		if err != nil {
			return err
		}
		if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), fieldOwner, client.ForceOwnership); err != nil {
			return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

func toUnstructured(o client.Object) (*unstructured.Unstructured, error) {
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u, nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	// Fields a typed object always carries but the operator does not own.
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	if vcts, ok, _ := unstructured.NestedSlice(u.Object, "spec", "volumeClaimTemplates"); ok {
		for _, v := range vcts {
			vm := v.(map[string]any)
			unstructured.RemoveNestedField(vm, "status")
			unstructured.RemoveNestedField(vm, "metadata", "creationTimestamp")
		}
		_ = unstructured.SetNestedSlice(u.Object, vcts, "spec", "volumeClaimTemplates")
	}
	return u, nil
}

// managedKinds are the kinds the operator creates, in the order teardown removes them.
var managedKinds = []schema.GroupVersionKind{
	appsv1.SchemeGroupVersion.WithKind("Deployment"),
	appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
	corev1.SchemeGroupVersion.WithKind("Service"),
	policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"),
	networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
	{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
	{Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule"},
	{Group: "security.istio.io", Version: "v1", Kind: "AuthorizationPolicy"},
	{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"},
}

// owned lists the pipeline's objects of one kind; a kind the cluster does not serve (Istio's,
// without Istio) has none.
func (r *Reconciler) owned(ctx context.Context, p *v1alpha1.ReadingPipeline, gvk schema.GroupVersionKind) ([]unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	err := r.Client.List(ctx, list, client.InNamespace(p.Namespace), client.MatchingLabels{labelInstance: p.Name, labelManagedBy: managedBy})
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return nil, nil
	}
	var mine []unstructured.Unstructured
	for _, o := range list.Items {
		if metav1.IsControlledBy(&o, p) {
			mine = append(mine, o)
		}
	}
	return mine, err
}

// prune deletes the pipeline's objects that are no longer wanted: a role turned off, the mesh
// or canary removed.
func (r *Reconciler) prune(ctx context.Context, p *v1alpha1.ReadingPipeline, desired []client.Object) error {
	want := map[string]bool{}
	for _, o := range desired {
		want[o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName()] = true
	}
	for _, gvk := range managedKinds {
		objs, err := r.owned(ctx, p, gvk)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if !want[gvk.Kind+"/"+o.GetName()] {
				if err := r.Client.Delete(ctx, &o); client.IgnoreNotFound(err) != nil {
					return err
				}
			}
		}
	}
	return nil
}

// teardown deletes the pipeline's objects, ingest's workloads first so no event is acknowledged
// while the rest goes, then lets the pipeline go. Volume claims of embedded state are kept.
func (r *Reconciler) teardown(ctx context.Context, p *v1alpha1.ReadingPipeline) error {
	if !controllerutil.ContainsFinalizer(p, Finalizer) {
		return nil
	}
	for _, gvk := range managedKinds {
		objs, err := r.owned(ctx, p, gvk)
		if err != nil {
			return err
		}
		slices.SortStableFunc(objs, func(a, b unstructured.Unstructured) int {
			return slices.Index(Roles, a.GetLabels()[labelComponent]) - slices.Index(Roles, b.GetLabels()[labelComponent])
		})
		for _, o := range objs {
			if err := r.Client.Delete(ctx, &o, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "TornDown", "Delete", "deleted the pipeline's objects; volume claims of embedded state are kept")
	controllerutil.RemoveFinalizer(p, Finalizer)
	return r.Client.Update(ctx, p)
}

// workloads reads each role's Deployment or StatefulSet that exists.
func (r *Reconciler) workloads(ctx context.Context, p *v1alpha1.ReadingPipeline) (map[string]*workloadState, error) {
	out := map[string]*workloadState{}
	for _, name := range Roles {
		w, err := r.workload(ctx, p, roleOf(p, name))
		if err != nil {
			return nil, err
		}
		if w != nil {
			out[name] = w
		}
	}
	return out, nil
}

type workloadState struct {
	kind, ref, resourceVersion string
	replicas                   *int32
	ready                      int32
}

// workload reads the role's Deployment or StatefulSet; nil when it does not exist.
func (r *Reconciler) workload(ctx context.Context, p *v1alpha1.ReadingPipeline, rl role) (*workloadState, error) {
	key := client.ObjectKey{Namespace: p.Namespace, Name: objectName(p, rl.name)}
	if stateful(p, rl) {
		var s appsv1.StatefulSet
		if err := r.Client.Get(ctx, key, &s); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		return &workloadState{"StatefulSet", "StatefulSet/" + s.Name, s.ResourceVersion, s.Spec.Replicas, s.Status.ReadyReplicas}, nil
	}
	var d appsv1.Deployment
	if err := r.Client.Get(ctx, key, &d); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return &workloadState{"Deployment", "Deployment/" + d.Name, d.ResourceVersion, d.Spec.Replicas, d.Status.ReadyReplicas}, nil
}

func (r *Reconciler) roleStatus(ctx context.Context, p *v1alpha1.ReadingPipeline) (map[string]v1alpha1.RoleStatus, error) {
	out := map[string]v1alpha1.RoleStatus{}
	for _, name := range Roles {
		rl := roleOf(p, name)
		if !rl.enabled() {
			continue
		}
		w, err := r.workload(ctx, p, rl)
		if err != nil {
			return nil, err
		}
		if w == nil {
			return nil, errors.New("workload of role " + name + " missing after apply")
		}
		out[name] = v1alpha1.RoleStatus{Workload: w.ref, Replicas: *w.replicas, ReadyReplicas: w.ready}
	}
	return out, nil
}

// setStatus writes the status when it differs from what is stored, so an unchanged round writes
// nothing. failure is the reconcile error, reported in the Reconciled condition and returned.
func (r *Reconciler) setStatus(ctx context.Context, p *v1alpha1.ReadingPipeline, roles map[string]v1alpha1.RoleStatus, failure error) error {
	next := p.Status.DeepCopy()
	next.ObservedGeneration = p.Generation
	if failure != nil {
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: "Reconciled", Status: metav1.ConditionFalse, Reason: "ApplyFailed",
			Message: failure.Error(), ObservedGeneration: p.Generation})
	} else {
		next.Roles = roles
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: "Reconciled", Status: metav1.ConditionTrue, Reason: "Applied",
			Message: "every object of the pipeline is applied", ObservedGeneration: p.Generation})
		var waiting []string
		for _, name := range Roles {
			if s, ok := roles[name]; ok && s.ReadyReplicas < s.Replicas {
				waiting = append(waiting, fmt.Sprintf("%s %d/%d", name, s.ReadyReplicas, s.Replicas))
			}
		}
		ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "RolesReady",
			Message: "every role has its replicas ready", ObservedGeneration: p.Generation}
		if len(waiting) > 0 {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "RolesNotReady", "waiting for ready replicas: "+strings.Join(waiting, ", ")
		}
		meta.SetStatusCondition(&next.Conditions, ready)
	}
	if equality.Semantic.DeepEqual(&p.Status, next) {
		return failure
	}
	p.Status = *next
	if err := r.Client.Status().Update(ctx, p); err != nil {
		return errors.Join(failure, err)
	}
	return failure
}
