package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// CounterRate is a load source over a role's own /metrics: the per-second rate of a counter
// (summed over its label sets) between two scrapes, such as dogear_ingest_events_total for
// ingest. The first call only takes the baseline and returns ErrNoRateYet.
type CounterRate struct {
	URL, Metric string
	Client      *http.Client
	last        float64
	lastAt      time.Time
}

// ErrNoRateYet is returned by the first scrape, which has nothing to compare with.
var ErrNoRateYet = errors.New("first scrape: no rate yet")

// Load scrapes the counter and returns its rate since the previous scrape. A counter that went
// down (the role restarted) counts from zero.
func (c *CounterRate) Load(ctx context.Context) (float64, error) {
	families, err := scrape(ctx, c.Client, c.URL)
	if err != nil {
		return 0, err
	}
	fam, ok := families[c.Metric]
	if !ok {
		return 0, fmt.Errorf("%s has no metric %s", c.URL, c.Metric)
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		total += m.GetCounter().GetValue()
	}
	now := time.Now()
	prev, prevAt := c.last, c.lastAt
	c.last, c.lastAt = total, now
	if prevAt.IsZero() {
		return 0, ErrNoRateYet
	}
	if total < prev {
		prev = 0
	}
	return (total - prev) / now.Sub(prevAt).Seconds(), nil
}

// scrape reads a /metrics page in Prometheus' text format.
func scrape(ctx context.Context, hc *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return families, nil
}
