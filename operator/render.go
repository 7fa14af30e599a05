package operator

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// Roles in the order the operator creates them and, reversed, deletes them: ingest is the first
// to stop, so nothing is acknowledged while the rest of the pipeline goes away.
var Roles = []string{"ingest", "process", "api", "train", "archive"}

// httpRoles take traffic from outside the pipeline, so they get a canary and a VirtualService.
var httpRoles = []string{"ingest", "api"}

// stateRoles read and write state (Cassandra, or local volumes); every role opens the log.
var stateRoles = []string{"process", "api", "train"}

const (
	port      = 8080
	dataDir   = "/var/lib/dogear"
	runAsUser = 65532 // the image's non-root user (containerimage.User)

	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelTrack     = "dogear.dev/track"
	managedBy      = "dogear-operator"
)

// role is one role of a pipeline with the spec that sizes it (defaults filled in).
type role struct {
	name string
	spec v1alpha1.RoleSpec
}

// roleOf returns the role's spec, or one replica when the pipeline leaves the role out.
func roleOf(p *v1alpha1.ReadingPipeline, name string) role {
	var s *v1alpha1.RoleSpec
	switch name {
	case "ingest":
		s = p.Spec.Roles.Ingest
	case "process":
		s = p.Spec.Roles.Process
	case "api":
		s = p.Spec.Roles.API
	case "train":
		s = p.Spec.Roles.Train
	case "archive":
		s = p.Spec.Roles.Archive
	}
	if s == nil {
		return role{name, v1alpha1.RoleSpec{MinReplicas: 1, MaxReplicas: 1}}
	}
	return role{name, *s}
}

// enabled reports whether the role runs at all: maxReplicas 0 turns a role off.
func (r role) enabled() bool { return r.spec.MaxReplicas > 0 }

// stateful reports whether the role owns local state: processors with embedded state.
func stateful(p *v1alpha1.ReadingPipeline, r role) bool {
	return r.name == "process" && p.Spec.State.Kind == "embedded"
}

// objectName is the name of the role's objects.
func objectName(p *v1alpha1.ReadingPipeline, r string) string { return p.Name + "-" + r }

// labels are on every object of the role; selector is the stable track's pods.
func labels(p *v1alpha1.ReadingPipeline, r string) map[string]string {
	return map[string]string{labelName: "dogear", labelInstance: p.Name, labelComponent: r, labelManagedBy: managedBy}
}

func selector(p *v1alpha1.ReadingPipeline, r, track string) map[string]string {
	return map[string]string{labelInstance: p.Name, labelComponent: r, labelTrack: track}
}

// replicasFor is what the role's workload should run: the pinned count, else what the workload
// runs now (someone scaled it through its scale subresource) kept within the role's bounds, else
// minReplicas for a new workload.
func replicasFor(r role, current *int32) int32 {
	switch {
	case r.spec.Replicas != nil:
		return *r.spec.Replicas
	case current == nil:
		return r.spec.MinReplicas
	default:
		return min(max(*current, r.spec.MinReplicas), r.spec.MaxReplicas)
	}
}

// render returns every object the pipeline should have. current holds the replicas each role's
// workload runs now (absent for a new one). Istio objects are added by renderMesh.
func render(p *v1alpha1.ReadingPipeline, current map[string]*int32) ([]client.Object, error) {
	var objs []client.Object
	for _, name := range Roles {
		r := roleOf(p, name)
		if !r.enabled() {
			continue
		}
		pod, err := podTemplate(p, r, p.Spec.Image, "stable")
		if err != nil {
			return nil, err
		}
		replicas := replicasFor(r, current[name])
		objs = append(objs, serviceAccount(p, r), service(p, r), podDisruptionBudget(p, r), networkPolicy(p, r))
		if stateful(p, r) {
			objs = append(objs, statefulSet(p, r, pod, replicas))
		} else {
			objs = append(objs, deployment(p, objectName(p, name), r, pod, replicas, "stable"))
		}
		if c := p.Spec.Canary; c != nil && slices.Contains(httpRoles, name) {
			pod, err := podTemplate(p, r, c.Image, "canary")
			if err != nil {
				return nil, err
			}
			objs = append(objs, deployment(p, objectName(p, name)+"-canary", r, pod, 1, "canary"))
		}
	}
	if p.Spec.Mesh == "istio" {
		mesh, err := renderMesh(p)
		if err != nil {
			return nil, err
		}
		objs = append(objs, mesh...)
	}
	for _, o := range objs {
		o.SetNamespace(p.Namespace)
	}
	return objs, nil
}

func objectMeta(p *v1alpha1.ReadingPipeline, name, r string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: labels(p, r)}
}

func serviceAccount(p *v1alpha1.ReadingPipeline, r role) *corev1.ServiceAccount {
	// Each role has its own identity, so mesh policy can tell the roles apart.
	return &corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: objectMeta(p, objectName(p, r.name), r.name),
		AutomountServiceAccountToken: new(false)}
}

func service(p *v1alpha1.ReadingPipeline, r role) *corev1.Service {
	s := &corev1.Service{TypeMeta: typeMeta("v1", "Service"), ObjectMeta: objectMeta(p, objectName(p, r.name), r.name),
		Spec: corev1.ServiceSpec{
			// Both tracks: without a mesh, the canary's share is its share of the replicas.
			Selector: map[string]string{labelInstance: p.Name, labelComponent: r.name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromString("http"), AppProtocol: new("http")}},
		}}
	if stateful(p, r) {
		s.Spec.ClusterIP = corev1.ClusterIPNone // the StatefulSet's governing service: stable pod names
		s.Spec.PublishNotReadyAddresses = true
	}
	return s
}

func podDisruptionBudget(p *v1alpha1.ReadingPipeline, r role) *policyv1.PodDisruptionBudget {
	// One at a time: a processor that goes hands its partitions to the others, who must not all be
	// moving at once; an HTTP role keeps the rest of its replicas answering.
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{TypeMeta: typeMeta("policy/v1", "PodDisruptionBudget"), ObjectMeta: objectMeta(p, objectName(p, r.name), r.name),
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelInstance: p.Name, labelComponent: r.name}}}}
}

func networkPolicy(p *v1alpha1.ReadingPipeline, r role) *networkingv1.NetworkPolicy {
	from := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}} // this namespace
	if r.name == "ingest" {
		from = nil // devices and apps post events from anywhere
	}
	httpPort := intstr.FromInt32(port)
	return &networkingv1.NetworkPolicy{TypeMeta: typeMeta("networking.k8s.io/v1", "NetworkPolicy"), ObjectMeta: objectMeta(p, objectName(p, r.name), r.name),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelInstance: p.Name, labelComponent: r.name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: []networkingv1.NetworkPolicyPort{{Port: &httpPort}}}},
		}}
}

func deployment(p *v1alpha1.ReadingPipeline, name string, r role, pod corev1.PodTemplateSpec, replicas int32, track string) *appsv1.Deployment {
	return &appsv1.Deployment{TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: objectMeta(p, name, r.name),
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: selector(p, r.name, track)}, Template: pod}}
}

func statefulSet(p *v1alpha1.ReadingPipeline, r role, pod corev1.PodTemplateSpec, replicas int32) *appsv1.StatefulSet {
	size := p.Spec.State.Storage.Size
	if size == "" {
		size = "10Gi"
	}
	// The claim below replaces the emptyDir data volume.
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "data" })
	return &appsv1.StatefulSet{TypeMeta: typeMeta("apps/v1", "StatefulSet"), ObjectMeta: objectMeta(p, objectName(p, r.name), r.name),
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: objectName(p, r.name),
			Selector: &metav1.LabelSelector{MatchLabels: selector(p, r.name, "stable")},
			Template: pod,
			// Processors hand partitions over through the consumer group, not by pod order.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: p.Spec.State.Storage.StorageClassName,
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
				},
			}},
			// State is a cache of the log: a deleted pipeline's volumes are kept for an operator to
			// remove on purpose, a scaled-down processor's are dropped (its partitions refold elsewhere).
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
			},
		}}
}

// podTemplate is the role's pod: dogear serve with the role's settings as DOGEAR_* variables,
// probes on /healthz and /readyz, non-root on a read-only root filesystem.
func podTemplate(p *v1alpha1.ReadingPipeline, r role, image, track string) (corev1.PodTemplateSpec, error) {
	env, err := environment(p, r)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	podLabels := labels(p, r.name)
	podLabels[labelTrack] = track
	scheme := corev1.URISchemeHTTP
	if p.Spec.TLS != nil {
		scheme = corev1.URISchemeHTTPS
	}
	probe := func(path string, failures int32) *corev1.Probe {
		pr := &corev1.Probe{PeriodSeconds: 10, FailureThreshold: failures,
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http"), Scheme: scheme}}}
		if p.Spec.TLS != nil && p.Spec.TLS.Mutual {
			// The kubelet has no client certificate: with mutual TLS a probe can only connect.
			pr.ProbeHandler = corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}
		}
		return pr
	}
	mounts := []corev1.VolumeMount{
		{Name: "data", MountPath: dataDir},
		{Name: "tmp", MountPath: "/tmp"},
		{Name: "auth", MountPath: dataDir + "/token.secret", SubPath: "token.secret", ReadOnly: true},
		{Name: "auth", MountPath: dataDir + "/keys.json", SubPath: "keys.json", ReadOnly: true},
	}
	volumes := []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "auth", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: p.Spec.Auth.SecretName}}},
	}
	if p.Spec.TLS != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: "tls", MountPath: "/etc/dogear/tls", ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: p.Spec.TLS.SecretName}}})
	}
	var envFrom []corev1.EnvFromSource
	if s := credentialsFor(p, r.name); s != "" {
		envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: s}}})
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
		Spec: corev1.PodSpec{
			ServiceAccountName:           objectName(p, r.name),
			AutomountServiceAccountToken: new(false),
			// Long enough for a processor to commit its partitions and leave the group cleanly.
			TerminationGracePeriodSeconds: new(int64(60)),
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: new(int64(runAsUser)), RunAsGroup: new(int64(runAsUser)),
				FSGroup: new(int64(runAsUser)), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "dogear", Image: image, ImagePullPolicy: p.Spec.ImagePullPolicy,
				Args:      []string{"serve"},
				Env:       env,
				EnvFrom:   envFrom,
				Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
				Resources: r.spec.Resources,
				// Startup covers a processor refolding a moved partition before it first answers.
				StartupProbe:   probe("/healthz", 60),
				LivenessProbe:  probe("/healthz", 3),
				ReadinessProbe: probe("/readyz", 1),
				VolumeMounts:   mounts,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
			Volumes: volumes,
		},
	}, nil
}

// environment is the role's `dogear serve` configuration, one DOGEAR_<FLAG> variable a flag.
func environment(p *v1alpha1.ReadingPipeline, r role) ([]corev1.EnvVar, error) {
	s := p.Spec
	env := []corev1.EnvVar{
		{Name: "DOGEAR_ROLES", Value: r.name},
		{Name: "DOGEAR_ADDR", Value: ":" + strconv.Itoa(port)},
		{Name: "DOGEAR_DATA_DIR", Value: dataDir},
		{Name: "DOGEAR_LOG", Value: "kafka://" + strings.Join(s.Log.Brokers, ",") + "/" + s.Log.Topic},
		{Name: "DOGEAR_GROUP", Value: p.Name + "-processors"},
	}
	add := func(name, value string) { env = append(env, corev1.EnvVar{Name: name, Value: value}) }
	// Every role opens the topic, and refuses one whose partition count differs from its own.
	add("DOGEAR_PARTITIONS", strconv.Itoa(int(partitions(p))))
	if len(s.Log.Mirrors) > 0 && r.name == "process" {
		add("DOGEAR_MIRROR", strings.Join(s.Log.Mirrors, ","))
	}
	if slices.Contains(stateRoles, r.name) {
		switch s.State.Kind {
		case "cassandra":
			if s.State.Cassandra == nil {
				return nil, fmt.Errorf("state.kind cassandra needs state.cassandra")
			}
			add("DOGEAR_STATE", cassandraURL(*s.State.Cassandra))
		case "embedded":
			add("DOGEAR_STATE", "partitioned://"+dataDir+"/state")
		}
	}
	if s.Keys != nil && (r.name == "ingest" || r.name == "process") {
		add("DOGEAR_KEYS", cassandraURL(*s.Keys))
	}
	if s.Archive != nil && r.name == "archive" {
		add("DOGEAR_ARCHIVE", s.Archive.URL)
	}
	if s.Models != nil && (r.name == "train" || r.name == "api") {
		add("DOGEAR_MODELS", s.Models.URL)
	}
	// The image's static dogear keeps Pebble's block caches and memtables in Go's heap, which
	// the garbage collector lets grow to twice what is live: held to 90% of the container's
	// memory limit instead, it collects sooner rather than be killed, and the rest is left to
	// goroutine stacks and the kernel's buffers.
	if limit, ok := r.spec.Resources.Limits[corev1.ResourceMemory]; ok {
		add("GOMEMLIMIT", strconv.FormatInt(limit.Value()/10*9, 10))
	}
	if r.name == "train" {
		add("DOGEAR_TRAIN_INTERVAL", orDefault(s.Recommender.Interval, "6h"))
		add("DOGEAR_TRAIN_SEARCH_BUDGET", orDefault(s.Recommender.SearchBudget, "45s"))
	}
	if s.TLS != nil && s.Mesh != "istio" {
		add("DOGEAR_TLS_CERT", "/etc/dogear/tls/tls.crt")
		add("DOGEAR_TLS_KEY", "/etc/dogear/tls/tls.key")
		if s.TLS.Mutual {
			add("DOGEAR_TLS_CLIENT_CA", "/etc/dogear/tls/ca.crt")
		}
	}
	if t := s.Tracing; t != nil {
		// The OpenTelemetry SDK's own variables, which dogear's tracing reads.
		add("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+t.Endpoint)
		add("OTEL_SERVICE_NAME", "dogear-"+r.name)
		add("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
		add("OTEL_TRACES_SAMPLER_ARG", orDefault(t.SampleRatio, "0.1"))
		add("DOGEAR_TRACING", "otlp")
	}
	return env, nil
}

// credentialsFor is the Secret with the role's S3 credentials: no role uses both stores.
func credentialsFor(p *v1alpha1.ReadingPipeline, r string) string {
	switch {
	case r == "archive" && p.Spec.Archive != nil:
		return p.Spec.Archive.CredentialsSecret
	case (r == "train" || r == "api") && p.Spec.Models != nil:
		return p.Spec.Models.CredentialsSecret
	}
	return ""
}

func cassandraURL(c v1alpha1.CassandraSpec) string {
	return "cassandra://" + strings.Join(c.Hosts, ",") + "/" + c.Keyspace
}

func partitions(p *v1alpha1.ReadingPipeline) int32 {
	if p.Spec.Log.Partitions == 0 {
		return 16
	}
	return p.Spec.Log.Partitions
}

// portOf is the port of the first host:port in hosts, or def.
func portOf(hosts []string, def int) int {
	if len(hosts) > 0 {
		if _, ps, err := net.SplitHostPort(hosts[0]); err == nil {
			if n, err := strconv.Atoi(ps); err == nil {
				return n
			}
		}
	}
	return def
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
