package operator_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

var chartDir = filepath.Join("..", "deploy", "helm", "dogear")

// fullValues set every value the chart documents, a pipeline included.
func fullValues(t *testing.T, ns string) map[string]any {
	t.Helper()
	p := fullPipeline(ns)
	spec, err := yaml.Marshal(p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var specMap map[string]any
	if err := yaml.Unmarshal(spec, &specMap); err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"image":            map[string]any{"repository": "registry.example/dogear", "tag": "v1.0.0", "pullPolicy": "Always"},
		"imagePullSecrets": []any{map[string]any{"name": "registry"}},
		"operator": map[string]any{"replicas": 3, "leaderElect": true, "leaseDuration": "20s", "watchNamespace": ns, "logLevel": "debug",
			"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":  []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}}},
		"serviceAccount": map[string]any{"create": true, "name": "dogear-operator", "annotations": map[string]any{"example.com/owner": "platform"}},
		"metrics":        map[string]any{"service": true},
		"pipeline":       map[string]any{"create": true, "name": "reading", "spec": specMap},
	}
}

// renderChart renders the chart as `helm template` would, returning each manifest's objects.
func renderChart(t *testing.T, ns string, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: "dogear", Namespace: ns, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(files[name])), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, files[name])
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs
}

func TestChartLintsClean(t *testing.T) {
	for name, values := range map[string]map[string]any{"default": nil, "full": fullValues(t, "dogear")} {
		l := lint.All(chartDir, values, "dogear", false)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s values: %s", name, m)
			}
		}
	}
}

// TestChartRendersWhatTheAPIServerAccepts renders the chart with default and full values and
// sends every manifest to the API server as a strict dry run.
func TestChartRendersWhatTheAPIServerAccepts(t *testing.T) {
	for _, name := range []string{"default", "full"} {
		t.Run(name, func(t *testing.T) {
			ns := namespace(t)
			var values map[string]any
			if name == "full" {
				values = fullValues(t, ns)
			}
			objs := renderChart(t, ns, values)
			kinds := dryRun(t, objs)
			want := map[string]int{"Deployment": 1, "ServiceAccount": 1, "Service": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1}
			if name == "full" {
				// Watching one namespace: a Role there instead of a ClusterRole, and a pipeline.
				want = map[string]int{"Deployment": 1, "ServiceAccount": 1, "Service": 1, "Role": 2, "RoleBinding": 2, "ReadingPipeline": 1}
			}
			wantKinds(t, kinds, want)
			for _, o := range objs {
				if o.GetKind() != "Deployment" {
					continue
				}
				args, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				c := args[0].(map[string]any)
				if name == "full" && (c["image"] != "registry.example/dogear:v1.0.0" || !strings.Contains(strings.Join(toStrings(c["args"]), " "), "--namespace="+ns)) {
					t.Errorf("operator container %v", c)
				}
				if name == "default" && c["image"] != "ghcr.io/dogear-dev/dogear:0.1.0" {
					t.Errorf("default image %v", c["image"])
				}
			}
		})
	}
}

// TestChartPipelineIsTheOperatorsInput checks that the chart's pipeline value passes through
// unchanged: what the chart creates is what the operator reads.
func TestChartPipelineIsTheOperatorsInput(t *testing.T) {
	objs := renderChart(t, "dogear", fullValues(t, "dogear"))
	for _, o := range objs {
		if o.GetKind() != "ReadingPipeline" {
			continue
		}
		var p v1alpha1.ReadingPipeline
		b, _ := yaml.Marshal(o.Object)
		if err := yaml.UnmarshalStrict(b, &p); err != nil {
			t.Fatal(err)
		}
		if want := fullPipeline("dogear").Spec; p.Spec.Image != want.Image || p.Spec.Mesh != want.Mesh || p.Spec.Canary.Weight != want.Canary.Weight ||
			*p.Spec.Roles.Process.Replicas != *want.Roles.Process.Replicas {
			t.Errorf("rendered spec %+v", p.Spec)
		}
		return
	}
	t.Fatal("no ReadingPipeline rendered with pipeline.create")
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
