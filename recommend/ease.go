package recommend

import (
	"errors"
	"sort"
)

// EASEMaxItems bounds the catalogues EASE is tried on: it inverts a dense books × books matrix,
// n³ multiply-adds: 10⁹ at 1,000 books, 1.5·10¹³ for Amazon-book's 24,915.
const EASEMaxItems = 1000

// TrainEASE computes EASE's item-to-item weights (Steck 2019): with P = (XᵀX + λI)⁻¹,
// B[i][j] = −P[i][j] / P[j][j] off the diagonal and 0 on it; a reader's score for book j is
// Σ over their books i of weight × B[i][j]. Each item keeps its positive weights as neighbours,
// strongest first, so EASE serves through the same path as the neighbour models.
func TrainEASE(ui *Matrix, lambda float64) (*Neighbors, error) {
	n := ui.Cols
	if n > EASEMaxItems {
		return nil, errors.New("recommend: catalogue too large for EASE")
	}
	g := make([]float64, n*n)
	for u := 0; u < ui.Rows; u++ {
		items, vals := ui.Row(u)
		for a, i := range items {
			for b, j := range items {
				g[int(i)*n+int(j)] += float64(vals[a]) * float64(vals[b])
			}
		}
	}
	for i := range n {
		g[i*n+i] += lambda
	}
	if err := invertSPD(g, n); err != nil {
		return nil, err
	}
	nb := &Neighbors{Items: n, Ptr: make([]int64, n+1)}
	type w struct {
		j int32
		v float32
	}
	row := make([]w, 0, n)
	for i := range n {
		row = row[:0]
		for j := range n {
			if j != i {
				if v := -g[i*n+j] / g[j*n+j]; v > 0 {
					row = append(row, w{int32(j), float32(v)})
				}
			}
		}
		sort.Slice(row, func(a, b int) bool { return row[a].v > row[b].v })
		for _, x := range row {
			nb.Idx, nb.Sim = append(nb.Idx, x.j), append(nb.Sim, x.v)
		}
		nb.Ptr[i+1] = int64(len(nb.Idx))
	}
	return nb, nil
}

// invertSPD inverts a symmetric positive definite n × n matrix in place (Gauss–Jordan; no pivoting
// is needed for a positive definite matrix, which XᵀX + λI with λ > 0 is).
func invertSPD(a []float64, n int) error {
	for k := range n {
		p := a[k*n+k]
		if p <= 0 {
			return errors.New("recommend: matrix not positive definite")
		}
		inv := 1 / p
		rowK := a[k*n : (k+1)*n]
		for j := range n {
			rowK[j] *= inv
		}
		rowK[k] = inv
		for i := range n {
			if i == k {
				continue
			}
			rowI := a[i*n : (i+1)*n]
			f := rowI[k]
			if f == 0 {
				continue
			}
			for j := range n {
				rowI[j] -= f * rowK[j]
			}
			rowI[k] = -f * inv
		}
	}
	return nil
}
