package operator

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// Istio's API versions: the objects are written as unstructured, which keeps Istio's Go module
// (and its protobuf tree) out of the build; the API server checks them against Istio's CRDs.
const (
	istioSecurity   = "security.istio.io/v1"
	istioNetworking = "networking.istio.io/v1"
)

// outlierDetection ejects a pod that answers five 5xx in a row for 30 s (longer each time it
// repeats), never more than half of a role, so one bad pod cannot take its share of traffic.
var outlierDetection = map[string]any{
	"consecutive5xxErrors": int64(5),
	"interval":             "10s",
	"baseEjectionTime":     "30s",
	"maxEjectionPercent":   int64(50),
}

// renderMesh is the pipeline's Istio objects: strict mTLS between its pods, who may call each
// role, outlier detection on every role's service, and canary weights on the HTTP roles.
func renderMesh(p *v1alpha1.ReadingPipeline) ([]client.Object, error) {
	objs := []client.Object{
		istio(p, istioSecurity, "PeerAuthentication", p.Name, "", map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{labelInstance: p.Name}},
			"mtls":     map[string]any{"mode": "STRICT"},
		}),
	}
	for _, name := range Roles {
		r := roleOf(p, name)
		if !r.enabled() {
			continue
		}
		objs = append(objs, istio(p, istioSecurity, "AuthorizationPolicy", objectName(p, name), name, map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{labelInstance: p.Name, labelComponent: name}},
			"action":   "ALLOW",
			"rules":    authorizationRules(p, name),
		}))
		host := fmt.Sprintf("%s.%s.svc.cluster.local", objectName(p, name), p.Namespace)
		rule := map[string]any{
			"host":          host,
			"trafficPolicy": map[string]any{"tls": map[string]any{"mode": "ISTIO_MUTUAL"}, "outlierDetection": outlierDetection},
		}
		if slices.Contains(httpRoles, name) {
			rule["subsets"] = []any{
				map[string]any{"name": "stable", "labels": map[string]any{labelTrack: "stable"}},
				map[string]any{"name": "canary", "labels": map[string]any{labelTrack: "canary"}},
			}
			weight := int64(0)
			if p.Spec.Canary != nil {
				weight = int64(p.Spec.Canary.Weight)
			}
			route := func(subset string, w int64) map[string]any {
				return map[string]any{"destination": map[string]any{"host": host, "subset": subset, "port": map[string]any{"number": int64(port)}}, "weight": w}
			}
			objs = append(objs, istio(p, istioNetworking, "VirtualService", objectName(p, name), name, map[string]any{
				"hosts": []any{host},
				"http":  []any{map[string]any{"route": []any{route("stable", 100-weight), route("canary", weight)}}},
			}))
		}
		objs = append(objs, istio(p, istioNetworking, "DestinationRule", objectName(p, name), name, rule))
	}
	// Kafka's and Cassandra's client ports only for the roles that use them; their other ports
	// (between brokers, between Cassandra nodes) are left as they were.
	if sel := p.Spec.Log.PodSelector; len(sel) > 0 {
		// Every role opens the topic: ingest appends, process and archive read, api and train
		// check that it answers.
		objs = append(objs, backendPolicy(p, "kafka", sel, portOf(p.Spec.Log.Brokers, 9092), Roles))
	}
	if c := p.Spec.State.Cassandra; p.Spec.State.Kind == "cassandra" && c != nil && len(c.PodSelector) > 0 {
		users := stateRoles
		if p.Spec.Keys != nil {
			users = []string{"ingest", "process", "api", "train"}
		}
		objs = append(objs, backendPolicy(p, "cassandra", c.PodSelector, portOf(c.Hosts, 9042), users))
	}
	return objs, nil
}

// authorizationRules say who may call a role: anyone may post events to ingest; the api answers
// reads from this namespace (the gateway and the dashboard's server); the other roles only
// show health and metrics inside the namespace.
func authorizationRules(p *v1alpha1.ReadingPipeline, r string) []any {
	inNamespace := []any{map[string]any{"source": map[string]any{"namespaces": []any{p.Namespace}}}}
	switch r {
	case "ingest":
		return []any{map[string]any{"to": []any{map[string]any{"operation": map[string]any{"ports": []any{fmt.Sprint(port)}}}}}}
	case "api":
		return []any{map[string]any{"from": inNamespace,
			"to": []any{map[string]any{"operation": map[string]any{"methods": []any{"GET", "HEAD"}}}}}}
	default:
		return []any{map[string]any{"from": inNamespace,
			"to": []any{map[string]any{"operation": map[string]any{"methods": []any{"GET"}, "paths": []any{"/healthz", "/readyz", "/metrics"}}}}}}
	}
}

func backendPolicy(p *v1alpha1.ReadingPipeline, backend string, podSelector map[string]string, clientPort int, users []string) client.Object {
	var principals []any
	for _, r := range users {
		if roleOf(p, r).enabled() {
			principals = append(principals, fmt.Sprintf("cluster.local/ns/%s/sa/%s", p.Namespace, objectName(p, r)))
		}
	}
	match := map[string]any{}
	for k, v := range podSelector {
		match[k] = v
	}
	ports := []any{fmt.Sprint(clientPort)}
	return istio(p, istioSecurity, "AuthorizationPolicy", p.Name+"-"+backend, backend, map[string]any{
		"selector": map[string]any{"matchLabels": match},
		"action":   "ALLOW",
		"rules": []any{
			map[string]any{"from": []any{map[string]any{"source": map[string]any{"principals": principals}}},
				"to": []any{map[string]any{"operation": map[string]any{"ports": ports}}}},
			map[string]any{"to": []any{map[string]any{"operation": map[string]any{"notPorts": ports}}}},
		},
	})
}

func istio(p *v1alpha1.ReadingPipeline, apiVersion, kind, name, component string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
	u.SetName(name)
	u.SetNamespace(p.Namespace)
	l := labels(p, component)
	if component == "" {
		delete(l, labelComponent)
	}
	u.SetLabels(l)
	return u
}
