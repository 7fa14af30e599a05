package operator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dogear-dev/dogear/operator"
)

// The operator's tests run against a real kube-apiserver and etcd (envtest), started once for
// the package. KUBEBUILDER_ASSETS names their folder; without it the tests build them from the
// Go module proxy with deploy/envtest/build (about 5 minutes the first time, cached after).
var (
	restConfig *rest.Config
	k8s        client.Client
)

// istioVersion is the Istio release whose CRDs the API server learns, to validate mesh objects.
const istioVersion = "v1.32.0"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	assets, err := envtestAssets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator tests:", err)
		return 1
	}
	istioCRDs, err := istioCRDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator tests:", err)
		return 1
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("..", "deploy", "helm", "dogear", "crds"), istioCRDs},
		ErrorIfCRDPathMissing: true,
	}
	// On loopback the API server's endpoint reconciler has no address to advertise.
	env.ControlPlane.GetAPIServer().Configure().Set("endpoint-reconciler-type", "none")
	restConfig, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator tests: starting kube-apiserver and etcd:", err)
		return 1
	}
	defer env.Stop()
	k8s, err = client.New(restConfig, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// envtestAssets is the folder with kube-apiserver and etcd.
func envtestAssets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command("bash", filepath.Join("..", "deploy", "envtest", "build"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("deploy/envtest/build: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// istioCRDs is the file of Istio's published CRDs, from istio.io/api's module.
func istioCRDs() (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", "istio.io/api@"+istioVersion).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download istio.io/api@%s: %w", istioVersion, err)
	}
	_, rest, ok := strings.Cut(string(out), `"Dir": "`)
	if !ok {
		return "", errors.New("go mod download printed no Dir for istio.io/api")
	}
	dir, _, _ := strings.Cut(rest, `"`)
	return filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml"), nil
}

var namespaces atomic.Int64

// namespace makes a namespace of the test's own.
func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", namespaces.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.TrimRight(name, "-")
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// start runs an operator until stop is called or the test ends.
func start(t *testing.T, o operator.Options) (op *operator.Operator, stop func()) {
	t.Helper()
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	level := slog.LevelError
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	op, err := operator.New(restConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("operator: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return op, stop
}

// eventually retries check until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dryRun sends each object to the API server as a strict server-side dry run (its validation,
// unknown fields refused), reports each refusal, and counts the objects by kind.
func dryRun(t *testing.T, objs []*unstructured.Unstructured) map[string]int {
	t.Helper()
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if err := k8s.Create(context.Background(), o, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
			t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	t.Logf("%v", kinds)
	return kinds
}

// wantKinds checks counts of objects by kind.
func wantKinds(t *testing.T, kinds, want map[string]int) {
	t.Helper()
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s, want %d", kinds[k], k, n)
		}
	}
}
