package pebbledb

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// holding lists the files under dir whose bytes contain needle.
func holding(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); bytes.Contains(b, needle) {
				out = append(out, path)
			}
		}
		return nil
	})
	return out
}

func fill(t *testing.T, db *pebble.DB, secret []byte) {
	t.Helper()
	for i := range 1000 {
		db.Set([]byte{byte(i >> 8), byte(i)}, bytes.Repeat([]byte{'v'}, 100), pebble.NoSync)
	}
	db.Set(secret, []byte("x"), pebble.Sync)
	db.Flush()
	db.Delete(secret, pebble.Sync) // a tombstone that a compaction could move to the last level unchanged
}

func TestRewriteLeavesNoDeletedKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	db, err := Open(dir, 1<<20, DefaultMemTableBytes)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("erased-reader-51c2")
	fill(t, db, secret)
	if db, err = Rewrite(db, dir, 1<<20, DefaultMemTableBytes); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if files := holding(t, filepath.Dir(dir), secret); len(files) > 0 {
		t.Fatalf("deleted key still in %v", files)
	}
	if _, closer, err := db.Get([]byte{0, 7}); err != nil {
		t.Fatalf("live key lost: %v", err)
	} else {
		closer.Close()
	}
}

// A crash at any step of a rewrite leaves a store that opens with every live key and without the
// deleted one.
func TestRewriteRecoversFromACrashAtEveryStep(t *testing.T) {
	secret := []byte("erased-reader-51c2")
	for name, crash := range map[string]func(dir string){
		"while copying": func(dir string) { // a partial copy beside the original
			os.MkdirAll(dir+".rewrite", 0o755)
			os.WriteFile(filepath.Join(dir+".rewrite", "000001.sst"), []byte("partial"), 0o644)
		},
		"between the renames": func(dir string) {
			db, _ := open(dir, 1<<20, DefaultMemTableBytes, false)
			copyLive(db, dir+".rewrite", 1<<20)
			db.Close()
			os.Rename(dir, dir+".old")
		},
		"before the old files were deleted": func(dir string) {
			db, _ := open(dir, 1<<20, DefaultMemTableBytes, false)
			copyLive(db, dir+".rewrite", 1<<20)
			db.Close()
			os.Rename(dir, dir+".old")
			os.Rename(dir+".rewrite", dir)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			db, err := Open(dir, 1<<20, DefaultMemTableBytes)
			if err != nil {
				t.Fatal(err)
			}
			fill(t, db, secret)
			db.Close()
			crash(dir)
			if db, err = Open(dir, 1<<20, DefaultMemTableBytes); err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if files := holding(t, filepath.Dir(dir), secret); len(files) > 0 {
				t.Fatalf("deleted key still in %v", files)
			}
			for _, leftover := range []string{dir + ".rewrite", dir + ".old"} {
				if _, err := os.Stat(leftover); err == nil {
					t.Fatalf("%s left behind", leftover)
				}
			}
			if _, closer, err := db.Get([]byte{3, 200}); err != nil {
				t.Fatalf("live key lost: %v", err)
			} else {
				closer.Close()
			}
		})
	}
}
