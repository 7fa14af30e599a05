package recommend

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// RatingsOptions turn explicit ratings into an implicit-feedback split.
type RatingsOptions struct {
	// MinRating: a rating at or above it is a positive interaction; lower ones are dropped.
	MinRating int
	// TestFraction of each reader's positives (at least one, for readers with two or more) goes
	// to test, drawn at random with Seed, as KGAT's datasets were split.
	TestFraction float64
	Seed         uint64
}

// ConvertRatings reads a ratings CSV (`user_id,book_id,rating`, header optional, as goodbooks-10k
// ships them) and writes a KGAT-format folder (train.txt, test.txt, user_list.txt,
// item_list.txt with the original ids), so `dogear eval --data` and `dogear bench recommend` run
// on it. It returns the readers and books kept.
func ConvertRatings(in io.Reader, dir string, o RatingsOptions) (readers, books int, err error) {
	r := csv.NewReader(bufio.NewReader(in))
	r.FieldsPerRecord = -1
	users, items := map[string]int32{}, map[string]int32{}
	var userIDs, itemIDs []string
	byUser := map[int32][]int32{}
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		if line == 1 && len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "user_id") {
			continue
		}
		if len(rec) < 3 {
			return 0, 0, fmt.Errorf("line %d: want user_id,book_id,rating, got %d fields", line, len(rec))
		}
		rating, err := strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("line %d, field rating: %q is not a number", line, rec[2])
		}
		if rating < float64(o.MinRating) {
			continue
		}
		u, ok := users[rec[0]]
		if !ok {
			u = int32(len(userIDs))
			users[rec[0]], userIDs = u, append(userIDs, rec[0])
		}
		it, ok := items[rec[1]]
		if !ok {
			it = int32(len(itemIDs))
			items[rec[1]], itemIDs = it, append(itemIDs, rec[1])
		}
		byUser[u] = append(byUser[u], it)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	train, test := &strings.Builder{}, &strings.Builder{}
	rng := rand.New(rand.NewPCG(o.Seed, 0x72617465))
	for u := range int32(len(userIDs)) {
		list := slices.Compact(slices.Sorted(slices.Values(byUser[u])))
		rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		nTest := 0
		if len(list) >= 2 {
			nTest = max(1, int(float64(len(list))*o.TestFraction))
		}
		write := func(b *strings.Builder, items []int32) {
			if len(items) == 0 {
				return
			}
			fmt.Fprint(b, u)
			for _, it := range slices.Sorted(slices.Values(items)) {
				fmt.Fprint(b, " ", it)
			}
			b.WriteByte('\n')
		}
		write(train, list[nTest:])
		write(test, list[:nTest])
	}
	lists := func(ids []string) string {
		var b strings.Builder
		b.WriteString("org_id remap_id\n")
		for i, id := range ids {
			fmt.Fprintf(&b, "%s %d\n", id, i)
		}
		return b.String()
	}
	for name, body := range map[string]string{"train.txt": train.String(), "test.txt": test.String(),
		"user_list.txt": lists(userIDs), "item_list.txt": lists(itemIDs)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return 0, 0, err
		}
	}
	return len(userIDs), len(itemIDs), nil
}
