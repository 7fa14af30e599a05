package operator_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Every ReadingPipeline in docs/kubernetes.md is admitted by the API server as written.
func TestDocumentedPipelinesAreValid(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t)
	var objs []*unstructured.Unstructured
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(block)), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("a yaml block of docs/kubernetes.md: %v\n%s", err, block)
			}
			if m["kind"] == "ReadingPipeline" {
				u := &unstructured.Unstructured{Object: m}
				u.SetNamespace(ns)
				objs = append(objs, u)
			}
		}
	}
	if kinds := dryRun(t, objs); kinds["ReadingPipeline"] != 3 {
		t.Errorf("found %d ReadingPipelines in docs/kubernetes.md, want the 3 written there", kinds["ReadingPipeline"])
	}
}
