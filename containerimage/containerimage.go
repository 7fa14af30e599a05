// Package containerimage builds dogear's OCI image without Docker: one layer holding the static
// binary, run as a non-root user, written as an OCI layout with its SPDX SBOM attached.
package containerimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// Paths and the user inside the image. The user is the conventional "nonroot" of distroless
// images, so volume permissions written for those fit dogear too.
const (
	BinaryPath = "/usr/local/bin/dogear"
	SBOMPath   = "/usr/share/doc/dogear/sbom.spdx.json"
	DataDir    = "/var/lib/dogear"
	User       = 65532
)

// SBOMMediaType is the SBOM's media type, as the attached artifact's artifactType.
const SBOMMediaType = "application/spdx+json"

// Options say what goes into the image.
type Options struct {
	// Binary is a statically linked dogear (CGO_ENABLED=0): the image has no libc.
	Binary string
	// Tag names the image in the layout's index (org.opencontainers.image.ref.name).
	Tag string
	// Created is the image's creation time and every file's; zero uses SOURCE_DATE_EPOCH, else
	// the Unix epoch, so two builds of one binary give one digest.
	Created time.Time
}

// Build writes the image and its SBOM into the OCI layout dir (created or replaced) and returns
// the image's digest.
func Build(dir string, o Options) (v1.Hash, error) {
	if err := checkStatic(o.Binary); err != nil {
		return v1.Hash{}, err
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return v1.Hash{}, err
	}
	info, err := buildinfo.ReadFile(o.Binary)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%s: no Go build information (%v): is it dogear?", o.Binary, err)
	}
	created, err := creationTime(o.Created)
	if err != nil {
		return v1.Hash{}, err
	}
	sbom, err := spdxSBOM(info, bin, created)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := image(bin, sbom, info, created)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	tag := o.Tag
	if tag == "" {
		tag = version(info)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}),
		layout.WithPlatform(platform(info))); err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	return digest, attachSBOM(lp, img, sbom)
}

// checkStatic refuses a binary that needs a dynamic loader: the image has none.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not a Linux (ELF) executable: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and the image has no libc: build it with CGO_ENABLED=0 go build -trimpath ./cmd/dogear", path)
		}
	}
	return nil
}

func creationTime(t time.Time) (time.Time, error) {
	if !t.IsZero() {
		return t.UTC(), nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}

func version(info *buildinfo.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "dev"
}

func platform(info *buildinfo.BuildInfo) v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	for _, s := range info.Settings {
		switch s.Key {
		case "GOOS":
			p.OS = s.Value
		case "GOARCH":
			p.Architecture = s.Value
		}
	}
	return p
}

// image is one layer (the binary, the SBOM, a passwd naming the user, the data and temp
// folders) and a config that runs `dogear serve` as that user.
func image(bin, sbom []byte, info *buildinfo.BuildInfo, created time.Time) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []struct {
		path string
		mode int64
		uid  int
	}{
		{"etc/", 0o755, 0}, {"tmp/", 0o1777, 0}, {"usr/", 0o755, 0}, {"usr/local/", 0o755, 0}, {"usr/local/bin/", 0o755, 0},
		{"usr/share/", 0o755, 0}, {"usr/share/doc/", 0o755, 0}, {"usr/share/doc/dogear/", 0o755, 0},
		{"var/", 0o755, 0}, {"var/lib/", 0o755, 0}, {strings.TrimPrefix(DataDir, "/") + "/", 0o700, User},
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.path, Mode: d.mode, Uid: d.uid, Gid: d.uid, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		path string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", User, User, DataDir)},
		{"etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", User)},
		{strings.TrimPrefix(BinaryPath, "/"), 0o755, bin},
		{strings.TrimPrefix(SBOMPath, "/"), 0o644, sbom},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.path, Mode: f.mode, Size: int64(len(f.data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	p := platform(info)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = p.OS, p.Architecture, v1.Time{Time: created}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", User, User),
		Entrypoint:   []string{BinaryPath},
		Cmd:          []string{"serve"},
		WorkingDir:   DataDir,
		Env:          []string{"DOGEAR_DATA_DIR=" + DataDir, "DOGEAR_ADDR=:8080"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Volumes:      map[string]struct{}{DataDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":   "dogear",
			"org.opencontainers.image.version": version(info),
			"org.opencontainers.image.source":  "https://" + info.Main.Path,
		},
	}
	cf.History = []v1.History{{Created: v1.Time{Time: created}, CreatedBy: "dogear image", Comment: "static dogear binary and its SBOM"}}
	return mutate.ConfigFile(img, cf)
}

// attachSBOM adds the SBOM to the layout as an OCI 1.1 artifact whose subject is the image, so
// `oras discover` or a registry's referrers API finds it beside the image.
func attachSBOM(lp layout.Path, img v1.Image, sbom []byte) error {
	subject, err := descriptorOf(img)
	if err != nil {
		return err
	}
	emptyConfig := []byte("{}")
	blobs := [][]byte{emptyConfig, sbom}
	m := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: SBOMMediaType,
		Config:  v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: int64(len(emptyConfig)), Digest: hashOf(emptyConfig)},
		Layers:  []v1.Descriptor{{MediaType: SBOMMediaType, Size: int64(len(sbom)), Digest: hashOf(sbom)}},
		Subject: &subject,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	for _, b := range append(blobs, raw) {
		if err := lp.WriteBlob(hashOf(b), io.NopCloser(bytes.NewReader(b))); err != nil {
			return err
		}
	}
	return lp.AppendDescriptor(v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: SBOMMediaType, Size: int64(len(raw)), Digest: hashOf(raw)})
}

func descriptorOf(img v1.Image) (v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, err
}

func hashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// spdxSBOM describes the binary in SPDX 2.3: dogear itself and every module compiled into it, with
// the module checksums Go recorded, and the Go toolchain. Its namespace is derived from the
// binary's hash, so the same binary always has the same SBOM.
func spdxSBOM(info *buildinfo.BuildInfo, bin []byte, created time.Time) ([]byte, error) {
	sum := sha256.Sum256(bin)
	pkg := func(id, path, ver, sumH1 string) *spdx.Package {
		p := &spdx.Package{
			PackageName: path, PackageSPDXIdentifier: common.ElementID(id), PackageVersion: ver,
			PackageDownloadLocation: "NOASSERTION", PackageLicenseConcluded: "NOASSERTION", PackageLicenseDeclared: "NOASSERTION",
			PackageCopyrightText: "NOASSERTION",
			PackageExternalReferences: []*spdx.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl",
				Locator: "pkg:golang/" + path + "@" + ver}},
		}
		if sumH1 != "" {
			p.PackageComment = "go.sum " + sumH1
		}
		return p
	}
	main := pkg("SPDXRef-Package-dogear", info.Main.Path, version(info), "")
	main.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: hex.EncodeToString(sum[:])}}
	doc := &spdx.Document{
		SPDXVersion: spdx.Version, DataLicense: spdx.DataLicense, SPDXIdentifier: "DOCUMENT",
		DocumentName:      "dogear-" + version(info),
		DocumentNamespace: "https://dogear.dev/spdx/dogear/" + hex.EncodeToString(sum[:]),
		CreationInfo: &spdx.CreationInfo{Created: created.Format(time.RFC3339),
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "dogear-image"}}},
		Packages: []*spdx.Package{main, pkg("SPDXRef-Package-go", "stdlib", info.GoVersion, "")},
		Relationships: []*spdx.Relationship{
			{RefA: common.MakeDocElementID("", "DOCUMENT"), RefB: common.MakeDocElementID("", "SPDXRef-Package-dogear"), Relationship: "DESCRIBES"},
			{RefA: common.MakeDocElementID("", "SPDXRef-Package-dogear"), RefB: common.MakeDocElementID("", "SPDXRef-Package-go"), Relationship: "DEPENDS_ON"},
		},
	}
	for i, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		id := fmt.Sprintf("SPDXRef-Package-%d", i)
		doc.Packages = append(doc.Packages, pkg(id, d.Path, d.Version, d.Sum))
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{RefA: common.MakeDocElementID("", "SPDXRef-Package-dogear"),
			RefB: common.MakeDocElementID("", id), Relationship: "DEPENDS_ON"})
	}
	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf, spdxjson.Indent("  ")); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
