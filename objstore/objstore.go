// Package objstore is the seam to object storage: a local folder in embedded mode, S3-compatible
// storage in distributed mode. The archive and the model registry keep their files in it.
package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/dogear-dev/dogear/internal/atomicfile"
)

// Store is the seam to object storage. Implementations: a local folder (embedded mode) and S3.
type Store interface {
	// Put writes an object whole; readers see the old or the new object, never a part.
	Put(ctx context.Context, key string, data []byte) error
	// Get reads an object; ErrNotFound when it does not exist.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the keys under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
}

// ErrNotFound means no object has the key.
var ErrNotFound = errors.New("objstore: no such object")

// Open opens a store from a URL: file:///path (or a plain path) or
// s3://bucket/prefix?endpoint=http://host:port&region=us-east-1 (endpoint and region optional;
// credentials from the usual AWS environment variables).
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "s3" && u.Scheme != "file" && u.Scheme != "") {
		return nil, fmt.Errorf("archive URL %q: want file:///path or s3://bucket/prefix", rawURL)
	}
	if u.Scheme == "s3" {
		q := u.Query()
		return NewS3(S3Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: q.Get("endpoint"), Region: q.Get("region")})
	}
	dir := u.Path
	if u.Scheme == "" {
		dir = rawURL
	}
	return NewDir(dir)
}

// Dir is a Store in a local folder; keys are relative paths.
type Dir struct{ root string }

// NewDir opens (creating) a folder store.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	return &Dir{root: root}, nil
}

func (d *Dir) path(key string) (string, error) {
	p := filepath.Join(d.root, filepath.FromSlash(key))
	if !strings.HasPrefix(p, filepath.Clean(d.root)+string(filepath.Separator)) {
		return "", fmt.Errorf("archive: key %q leaves the archive folder", key)
	}
	return p, nil
}

// Put implements Store: write a temporary file, fsync, rename.
func (d *Dir) Put(_ context.Context, key string, data []byte) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	return atomicfile.Write(p, data, 0o644)
}

// Get implements Store.
func (d *Dir) Get(_ context.Context, key string) ([]byte, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	return b, err
}

// List implements Store.
func (d *Dir) List(_ context.Context, prefix string) ([]string, error) {
	var keys []string
	err := filepath.WalkDir(d.root, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return err
		}
		rel, _ := filepath.Rel(d.root, p)
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	sort.Strings(keys)
	return keys, err
}

// Delete implements Store.
func (d *Dir) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// S3Config locates a bucket and a key prefix in S3 or an S3-compatible server.
type S3Config struct {
	Bucket, Prefix   string
	Endpoint, Region string // Endpoint set: path-style addressing (MinIO, Ceph, test servers)
}

// S3 is a Store in an S3 bucket, through aws-sdk-go-v2.
type S3 struct {
	cl     *s3.Client
	bucket string
	prefix string
}

// NewS3 makes an S3 store. Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func NewS3(c S3Config) (*S3, error) {
	if c.Bucket == "" {
		return nil, errors.New("archive: s3 URL needs a bucket: s3://bucket/prefix")
	}
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := s3.Options{Region: region,
		Credentials: credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"))}
	if c.Endpoint != "" {
		opts.BaseEndpoint = aws.String(c.Endpoint)
		opts.UsePathStyle = true
	}
	prefix := strings.Trim(c.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{cl: s3.New(opts), bucket: c.Bucket, prefix: prefix}, nil
}

// Put implements Store (a single PUT is atomic in S3).
func (s *S3) Put(ctx context.Context, key string, data []byte) error {
	_, err := s.cl.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key), Body: bytes.NewReader(data)})
	return err
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.cl.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.cl, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(o.Key), s.prefix))
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	_, err := s.cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	return err
}
