// Package recommend learns which books a reader should read next from implicit feedback: item
// neighbours (cosine, RP3beta), iALS matrix factorization and popularity, with their evaluation.
package recommend

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Matrix is a sparse user × item matrix in compressed-row form: row u's items are
// Idx[Ptr[u]:Ptr[u+1]] (sorted) with weights Val. Rows and columns are dense integer ids.
type Matrix struct {
	Rows, Cols int
	Ptr        []int64
	Idx        []int32
	Val        []float32
}

// Entry is one weighted interaction.
type Entry struct {
	Row, Col int32
	Val      float32
}

// Build makes a matrix from entries; repeated (row, col) pairs keep their largest weight.
func Build(rows, cols int, entries []Entry) *Matrix {
	sort.Slice(entries, func(a, b int) bool {
		if entries[a].Row != entries[b].Row {
			return entries[a].Row < entries[b].Row
		}
		return entries[a].Col < entries[b].Col
	})
	m := &Matrix{Rows: rows, Cols: cols, Ptr: make([]int64, rows+1)}
	for i, e := range entries {
		if i > 0 && e.Row == entries[i-1].Row && e.Col == entries[i-1].Col {
			last := len(m.Val) - 1
			m.Val[last] = max(m.Val[last], e.Val)
			continue
		}
		m.Idx = append(m.Idx, e.Col)
		m.Val = append(m.Val, e.Val)
		m.Ptr[e.Row+1]++
	}
	for r := 0; r < rows; r++ {
		m.Ptr[r+1] += m.Ptr[r]
	}
	return m
}

// Row returns row u's columns and weights.
func (m *Matrix) Row(u int) ([]int32, []float32) {
	return m.Idx[m.Ptr[u]:m.Ptr[u+1]], m.Val[m.Ptr[u]:m.Ptr[u+1]]
}

// NNZ is the number of stored interactions.
func (m *Matrix) NNZ() int { return len(m.Idx) }

// Transpose returns the item × user matrix.
func (m *Matrix) Transpose() *Matrix {
	t := &Matrix{Rows: m.Cols, Cols: m.Rows, Ptr: make([]int64, m.Cols+1), Idx: make([]int32, len(m.Idx)), Val: make([]float32, len(m.Val))}
	for _, c := range m.Idx {
		t.Ptr[c+1]++
	}
	for c := 0; c < m.Cols; c++ {
		t.Ptr[c+1] += t.Ptr[c]
	}
	next := append([]int64(nil), t.Ptr[:m.Cols]...)
	for u := 0; u < m.Rows; u++ {
		items, vals := m.Row(u)
		for k, c := range items {
			t.Idx[next[c]] = int32(u)
			t.Val[next[c]] = vals[k]
			next[c]++
		}
	}
	return t
}

// Dataset is a train/test split of interactions in the standard KGAT format.
type Dataset struct {
	Train, Test *Matrix
}

// LoadKGAT reads train.txt and test.txt of a KGAT-format folder (one line per user:
// `user item item ...`, integer ids).
func LoadKGAT(dir string) (*Dataset, error) {
	var trainE, testE []Entry
	rows, cols := 0, 0
	for _, f := range []struct {
		name string
		dst  *[]Entry
	}{{"train.txt", &trainE}, {"test.txt", &testE}} {
		file, err := os.Open(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		r, c, err := readLines(file, f.name, f.dst)
		file.Close()
		if err != nil {
			return nil, err
		}
		rows, cols = max(rows, r), max(cols, c)
	}
	return &Dataset{Train: Build(rows, cols, trainE), Test: Build(rows, cols, testE)}, nil
}

func readLines(r io.Reader, name string, dst *[]Entry) (rows, cols int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		ids := make([]int, len(fields))
		for i, f := range fields {
			v, err := strconv.Atoi(f)
			if err != nil || v < 0 || v > 1<<30 {
				return 0, 0, fmt.Errorf("%s line %d field %d: %q is not a non-negative integer id", name, line, i+1, f)
			}
			ids[i] = v
		}
		u := ids[0]
		rows = max(rows, u+1)
		for _, it := range ids[1:] {
			cols = max(cols, it+1)
			*dst = append(*dst, Entry{Row: int32(u), Col: int32(it), Val: 1})
		}
	}
	return rows, cols, sc.Err()
}
