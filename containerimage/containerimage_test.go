package containerimage_test

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/dogear-dev/dogear/containerimage"
)

// staticBinary builds a small static Go program, as dogear's release build would (CGO off,
// trimmed paths), so the test does not wait for all of dogear to link.
func staticBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tiny")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/tiny")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestImageLayout(t *testing.T) {
	bin := staticBinary(t)
	dir := filepath.Join(t.TempDir(), "oci")
	digest, err := containerimage.Build(dir, containerimage.Options{Binary: bin, Tag: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	index, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("index holds %d manifests, want the image and its SBOM", len(im.Manifests))
	}
	if d := im.Manifests[0]; d.Digest != digest || d.Annotations["org.opencontainers.image.ref.name"] != "v1.2.3" || d.Platform.OS != "linux" {
		t.Errorf("image descriptor %+v, digest %s", d, digest)
	}
	img, err := lp.Image(digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.HasPrefix(cf.Config.User, "0") {
		t.Errorf("user %q, want non-root 65532:65532", cf.Config.User)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != containerimage.BinaryPath || strings.Join(cf.Config.Cmd, " ") != "serve" {
		t.Errorf("entrypoint %v cmd %v", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	files := layerFiles(t, layers[0])
	want, _ := os.ReadFile(bin)
	if got := files[strings.TrimPrefix(containerimage.BinaryPath, "/")]; string(got) != string(want) {
		t.Errorf("binary in the layer: %d bytes, want the %d built", len(got), len(want))
	}
	for _, shell := range []string{"bin/sh", "bin/bash", "usr/bin/env"} {
		if _, ok := files[shell]; ok {
			t.Errorf("image has %s: no shell wanted", shell)
		}
	}
	// The SBOM: inside the image, and attached as an artifact whose subject is the image.
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(files[strings.TrimPrefix(containerimage.SBOMPath, "/")], &doc); err != nil || doc.SPDXVersion != "SPDX-2.3" {
		t.Fatalf("SBOM in the layer: %v, version %q", err, doc.SPDXVersion)
	}
	if doc.Packages[0].Name != "github.com/dogear-dev/dogear" {
		t.Errorf("SBOM describes %q", doc.Packages[0].Name)
	}
	sbom := im.Manifests[1]
	if sbom.ArtifactType != containerimage.SBOMMediaType {
		t.Fatalf("second manifest %+v is not the SBOM", sbom)
	}
	raw, err := lp.Blob(sbom.Digest)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.NewDecoder(raw).Decode(&m); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if m.Subject == nil || m.Subject.Digest != digest {
		t.Errorf("SBOM subject %+v, want the image %s", m.Subject, digest)
	}

	// Reproducible: a second build of the same binary has the same digest.
	again, err := containerimage.Build(filepath.Join(t.TempDir(), "oci"), containerimage.Options{Binary: bin, Tag: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if again != digest {
		t.Errorf("second build %s, first %s", again, digest)
	}
}

func TestDynamicBinaryRefused(t *testing.T) {
	_, err := containerimage.Build(t.TempDir(), containerimage.Options{Binary: "/bin/ls"})
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("building from /bin/ls: %v, want a refusal naming CGO_ENABLED=0", err)
	}
}

func layerFiles(t *testing.T, l v1.Layer) map[string][]byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
}
