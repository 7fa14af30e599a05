package operator

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

func init() { skipNameValidation = true }

// Rendered is every object the operator applies for a new pipeline p, as the API server gets it.
func Rendered(p *v1alpha1.ReadingPipeline) ([]*unstructured.Unstructured, error) {
	objs, err := render(p, nil)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		u, err := toUnstructured(o)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}
