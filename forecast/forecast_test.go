package forecast_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dogear-dev/dogear/forecast"
)

// truth is a load with a daily and a weekly rhythm at one sample a minute: quiet nights, an
// evening peak, busier weekends.
func truth(t int) float64 {
	day := float64(t%1440) / 1440
	weekday := (t / 1440) % 7
	v := 100 + 60*math.Sin(2*math.Pi*(day-0.3)) + 30*math.Exp(-math.Pow((day-0.85)*12, 2))
	if weekday >= 5 {
		v *= 1.3
	}
	return v
}

// run feeds days of truth plus noise (and whatever edit does) and returns the forecaster and the
// mean absolute error of its h-step forecasts against the unedited truth over the last day.
func run(t *testing.T, days, h int, edit func(i int, y float64) float64) (*forecast.Forecaster, float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	f := forecast.New(forecast.Default(h))
	n := days * 1440
	var sum float64
	var count int
	for i := range n {
		y := truth(i) + rng.NormFloat64()*4
		if edit != nil {
			y = edit(i, y)
		}
		if i >= n-1440 && i+h < n {
			sum += math.Abs(f.Forecast(h) - truth(i+h))
			count++
		}
		f.Observe(y)
	}
	return f, sum / float64(count)
}

func TestLearnsDailyAndWeeklySeasons(t *testing.T) {
	_, mae := run(t, 21, 10, nil)
	// The noise alone is 4; a forecast that ignored either season would be off by tens.
	if mae > 6 {
		t.Fatalf("10-minute forecasts off by %.1f on average after three weeks, want under 6", mae)
	}
	t.Logf("mean absolute error %.2f", mae)
}

func TestGapsDoNotDerailIt(t *testing.T) {
	// Six hours of missing metrics every third day.
	_, mae := run(t, 21, 10, func(i int, y float64) float64 {
		if (i/1440)%3 == 1 && i%1440 < 360 {
			return math.NaN()
		}
		return y
	})
	if mae > 6 {
		t.Fatalf("with gaps, forecasts off by %.1f", mae)
	}
}

func TestSpikesAreNotLearnt(t *testing.T) {
	// One minute in 200 is ten times the load, at random minutes: the forecast must not follow.
	spiky := rand.New(rand.NewPCG(3, 4))
	_, mae := run(t, 21, 10, func(i int, y float64) float64 {
		if spiky.IntN(200) == 0 {
			return y * 10
		}
		return y
	})
	if mae > 8 {
		t.Fatalf("spikes moved the forecast: off by %.1f", mae)
	}
}

func TestRecurringSpikesAreLearnt(t *testing.T) {
	// A job at 02:00 every day triples the load for five minutes.
	job := func(i int, y float64) float64 {
		if m := i % 1440; m >= 120 && m < 125 {
			return y * 3
		}
		return y
	}
	f, _ := run(t, 14, 10, job)
	// After 14 days the next sample is day 15's first; the job is at 02:00, 120 minutes on.
	at := f.Forecast(122)
	if want := 3 * truth(14*1440+122); at < 0.8*want {
		t.Fatalf("forecast at 02:02 is %.0f, the recurring job makes it about %.0f", at, want)
	}
}

func TestLevelShiftIsFollowed(t *testing.T) {
	// From day 14 on, half again as much load (a launch that stays).
	shift := func(i int, y float64) float64 {
		if i >= 14*1440 {
			return y * 1.5
		}
		return y
	}
	f := forecast.New(forecast.Default(10))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 14*1440 + 120 { // two hours after the shift
		f.Observe(shift(i, truth(i)+rng.NormFloat64()*4))
	}
	next := 14*1440 + 120 + 10
	got, want := f.Forecast(10), 1.5*truth(next)
	if math.Abs(got-want) > 0.1*want {
		t.Fatalf("two hours after a 50%% level shift the forecast is %.0f, want about %.0f", got, want)
	}
}

func TestIntervalsCoverWhatTheySay(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	f := forecast.New(forecast.Default(5))
	var inside, total int
	for i := range 21 * 1440 {
		if i >= 14*1440 && i%7 == 0 {
			// Score the 90% upper bound made now against the sample 5 steps on.
			upper := f.Upper(5, 0.9)
			if truth(i+4)+rng.NormFloat64()*4 <= upper {
				inside++
			}
			total++
		}
		f.Observe(truth(i) + rng.NormFloat64()*4)
	}
	if cover := float64(inside) / float64(total); cover < 0.85 || cover > 0.95 {
		t.Fatalf("the 90%% upper bound held %.1f%% of the time", 100*cover)
	}
}
