package recommend

import (
	"testing"
)

// BenchmarkTrainALS trains iALS with the blend's settings on Amazon-book's train.txt, when
// ../shared/data holds it (go test ./recommend -run '^$' -bench TrainALS -benchtime 1x).
func BenchmarkTrainALS(b *testing.B) {
	d, err := LoadKGAT("../../shared/data/amazon-book")
	if err != nil {
		b.Skip("Amazon-book is not here:", err)
	}
	p := ALSParams{Factors: 128, Iterations: 8, Lambda: 10, Alpha: 20, CGSteps: 3, Seed: 1}
	for b.Loop() {
		TrainALS(d.Train, p, nil)
	}
}
