// Package v1alpha1 is the ReadingPipeline custom resource (group dogear.dev): one dogear
// deployment over Kafka, Cassandra or per-partition local state, and S3, as its operator reads it.
//
// +kubebuilder:object:generate=true
// +groupName=dogear.dev
package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of ReadingPipeline.
var GroupVersion = schema.GroupVersion{Group: "dogear.dev", Version: "v1alpha1"}

// AddToScheme adds ReadingPipeline to a scheme. The package depends on apimachinery alone, so
// that clients can import the types without controller-runtime.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ReadingPipeline{}, &ReadingPipelineList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// ReadingPipeline is one dogear deployment: its event log, state, archive, model store and the
// replicas of each role.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rp;rpipe,categories=dogear
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Ingest",type=integer,JSONPath=`.status.roles.ingest.readyReplicas`
// +kubebuilder:printcolumn:name="Process",type=integer,JSONPath=`.status.roles.process.readyReplicas`
// +kubebuilder:printcolumn:name="API",type=integer,JSONPath=`.status.roles.api.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ReadingPipeline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ReadingPipelineSpec   `json:"spec"`
	Status ReadingPipelineStatus `json:"status,omitempty"`
}

// ReadingPipelineList is a list of ReadingPipelines.
//
// +kubebuilder:object:root=true
type ReadingPipelineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReadingPipeline `json:"items"`
}

// ReadingPipelineSpec is what the pipeline should be.
//
// +kubebuilder:validation:XValidation:rule="self.state.kind != 'embedded' || ((!has(self.roles.api) || self.roles.api.maxReplicas == 0) && (!has(self.roles.train) || self.roles.train.maxReplicas == 0))",message="the api and train roles read shared state: with state.kind embedded (each processor's partitions on its own volume) set roles.api and roles.train maxReplicas to 0, or use state.kind cassandra"
// +kubebuilder:validation:XValidation:rule="!has(self.roles.process) || self.roles.process.maxReplicas <= self.log.partitions",message="roles.process.maxReplicas is above log.partitions: a processor beyond the partition count would own nothing"
// +kubebuilder:validation:XValidation:rule="!has(self.keys) || !has(self.roles.archive) || self.roles.archive.maxReplicas == 0",message="keys and the archive role exclude each other: the archive would hold sealed readers' events in plain Parquet, out of reach of their erasure"
// +kubebuilder:validation:XValidation:rule="!(has(self.mesh) && self.mesh == 'istio' && has(self.tls))",message="spec.tls is dogear's own TLS, for running without a mesh: with mesh istio, Istio's mTLS secures the roles"
type ReadingPipelineSpec struct {
	// Image is the dogear image every role runs.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`
	// ImagePullPolicy of every role's container.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Log is the Kafka topic every event is appended to.
	Log LogSpec `json:"log"`
	// State is where processors keep what they fold.
	State StateSpec `json:"state"`
	// Keys, when set, seals each reader's events with their own key before Kafka, so erasure
	// is crypto-shredding (the key store is a Cassandra keyspace).
	// +optional
	Keys *CassandraSpec `json:"keys,omitempty"`
	// Archive is where the archive role writes hourly Parquet.
	// +optional
	Archive *ObjectStoreSpec `json:"archive,omitempty"`
	// Models is the model registry's object store, shared by the train and api roles.
	// +optional
	Models *ObjectStoreSpec `json:"models,omitempty"`
	// Auth names a Secret holding token.secret (the HMAC secret every api pod signs and checks
	// tokens with) and keys.json (write keys, as `dogear keys create` writes them). Every pod
	// must share them: one generated per pod would refuse the others' tokens.
	Auth AuthSpec `json:"auth"`

	// Roles are the replicas and resources of each role.
	Roles RolesSpec `json:"roles"`
	// Recommender is the train role's schedule.
	// +optional
	Recommender RecommenderSpec `json:"recommender,omitempty"`

	// Mesh is istio to run inside an Istio mesh (mTLS, authorization and traffic policy are
	// rendered as Istio objects), or none to use dogear's own TLS (spec.tls).
	// +kubebuilder:validation:Enum=none;istio
	// +kubebuilder:default=none
	// +optional
	Mesh string `json:"mesh,omitempty"`
	// TLS names a kubernetes.io/tls Secret (tls.crt, tls.key, and ca.crt for mutual TLS between
	// roles) for dogear's own listener; only without a mesh.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
	// Canary runs one replica of another image beside the ingest and api roles and gives it
	// Weight percent of their traffic (exact with Istio; by replica ratio without).
	// +optional
	Canary *CanarySpec `json:"canary,omitempty"`
	// Tracing sends OpenTelemetry traces to an OTLP/HTTP collector.
	// +optional
	Tracing *TracingSpec `json:"tracing,omitempty"`
}

// LogSpec is the Kafka topic of the event log.
type LogSpec struct {
	// Brokers are Kafka bootstrap addresses, host:port.
	// +kubebuilder:validation:MinItems=1
	Brokers []string `json:"brokers"`
	// Topic holds the events, keyed by reader.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]{1,249}$`
	Topic string `json:"topic"`
	// Partitions of the topic: the most processors that can share the work.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	// +kubebuilder:default=16
	// +optional
	Partitions int32 `json:"partitions,omitempty"`
	// Mirrors are topics holding MirrorMaker 2 copies of other clusters' logs, folded too.
	// +optional
	Mirrors []string `json:"mirrors,omitempty"`
	// PodSelector, with a mesh, selects the Kafka pods in this namespace that the rendered
	// AuthorizationPolicy protects (only the roles that use the log may reach them).
	// +optional
	PodSelector map[string]string `json:"podSelector,omitempty"`
}

// StateSpec is where processors keep state.
//
// +kubebuilder:validation:XValidation:rule="self.kind != 'cassandra' || has(self.cassandra)",message="state.kind cassandra needs state.cassandra (hosts and keyspace)"
type StateSpec struct {
	// Kind is cassandra (shared: every role can read it) or embedded (each processor keeps
	// the state of the partitions it owns on its own volume; a partition that moves is refolded
	// from the log).
	// +kubebuilder:validation:Enum=cassandra;embedded
	Kind string `json:"kind"`
	// Cassandra is the cluster and keyspace for kind cassandra.
	// +optional
	Cassandra *CassandraSpec `json:"cassandra,omitempty"`
	// Storage is each processor's volume for kind embedded.
	// +optional
	Storage StorageSpec `json:"storage,omitempty"`
}

// CassandraSpec names a Cassandra keyspace.
type CassandraSpec struct {
	// +kubebuilder:validation:MinItems=1
	Hosts []string `json:"hosts"`
	// +kubebuilder:validation:Pattern=`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`
	Keyspace string `json:"keyspace"`
	// PodSelector, with a mesh, selects the Cassandra pods in this namespace that the rendered
	// AuthorizationPolicy protects.
	// +optional
	PodSelector map[string]string `json:"podSelector,omitempty"`
}

// StorageSpec is a volume claim.
type StorageSpec struct {
	// +kubebuilder:default="10Gi"
	// +optional
	Size string `json:"size,omitempty"`
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// ObjectStoreSpec is an S3 bucket and prefix.
type ObjectStoreSpec struct {
	// URL is s3://bucket/prefix, with ?endpoint=URL for S3-compatible stores.
	// +kubebuilder:validation:Pattern=`^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$`
	URL string `json:"url"`
	// CredentialsSecret holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	// +optional
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
}

// AuthSpec names the shared secrets of every pod.
type AuthSpec struct {
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
}

// TLSSpec names a TLS Secret.
type TLSSpec struct {
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
	// Mutual requires client certificates signed by the Secret's ca.crt.
	// +optional
	Mutual bool `json:"mutual,omitempty"`
}

// CanarySpec is a second image taking a share of the HTTP roles' traffic.
type CanarySpec struct {
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// TracingSpec is where traces go.
type TracingSpec struct {
	// Endpoint is the collector's OTLP/HTTP address, host:port.
	// +kubebuilder:validation:MinLength=1
	Endpoint string `json:"endpoint"`
	// SampleRatio of new traces kept (0 to 1, as a decimal string).
	// +kubebuilder:validation:Pattern=`^(0(\.[0-9]+)?|1(\.0+)?)$`
	// +kubebuilder:default="0.1"
	// +optional
	SampleRatio string `json:"sampleRatio,omitempty"`
}

// RolesSpec holds each role. A role left out runs minReplicas (1) replica.
type RolesSpec struct {
	// +optional
	Ingest *RoleSpec `json:"ingest,omitempty"`
	// +optional
	Process *RoleSpec `json:"process,omitempty"`
	// +optional
	API *RoleSpec `json:"api,omitempty"`
	// Train runs at most one replica: two would train the same model twice.
	// +kubebuilder:validation:XValidation:rule="self.maxReplicas <= 1",message="roles.train.maxReplicas: at most one trainer"
	// +optional
	Train *RoleSpec `json:"train,omitempty"`
	// Archive runs at most one replica: hourly files have one writer.
	// +kubebuilder:validation:XValidation:rule="self.maxReplicas <= 1",message="roles.archive.maxReplicas: at most one archiver"
	// +optional
	Archive *RoleSpec `json:"archive,omitempty"`
}

// RoleSpec is one role's size. Replicas pins the count; left out, whoever scales the role's
// Deployment or StatefulSet through its scale subresource (the orchestrator, an HPA) decides,
// and the operator only keeps it within [minReplicas, maxReplicas].
//
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas is above maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || (self.replicas >= self.minReplicas && self.replicas <= self.maxReplicas)",message="replicas is outside [minReplicas, maxReplicas]"
type RoleSpec struct {
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	MinReplicas int32 `json:"minReplicas"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=1
	// +optional
	MaxReplicas int32 `json:"maxReplicas"`
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// RecommenderSpec is when and how the train role retrains.
type RecommenderSpec struct {
	// Interval between training rounds, as a Go duration (6h, 90m); 0s trains only on request.
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:default="6h"
	// +optional
	Interval string `json:"interval,omitempty"`
	// SearchBudget is how long each round may spend choosing the model for the catalogue.
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:default="45s"
	// +optional
	SearchBudget string `json:"searchBudget,omitempty"`
}

// ReadingPipelineStatus is what the operator last saw.
type ReadingPipelineStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (every role has its replicas ready), Reconciled (every object applied).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Roles is each role's workload and replicas.
	// +optional
	Roles map[string]RoleStatus `json:"roles,omitempty"`
}

// RoleStatus is one role's workload as last seen.
type RoleStatus struct {
	// Workload is Deployment/NAME or StatefulSet/NAME: what to scale.
	Workload string `json:"workload"`
	// Replicas wanted and ready.
	Replicas      int32 `json:"replicas"`
	ReadyReplicas int32 `json:"readyReplicas"`
}
