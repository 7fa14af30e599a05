package segment_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	analytics "gopkg.in/segmentio/analytics-go.v3"

	"github.com/dogear-dev/dogear/internal/servertest"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if s := servertest.GetJSON(t, url, v); s != 200 {
		t.Fatalf("GET %s: %d", url, s)
	}
}

// TestAnalyticsGoClient sends real batches with Segment's own Go library (analytics-go v3) and
// checks that dogear's insights reflect them.
func TestAnalyticsGoClient(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	var failures []error
	client, err := analytics.NewWithConfig("test-write-key", analytics.Config{
		Endpoint: url, BatchSize: 4, Interval: 50 * time.Millisecond,
		Callback: callback{fail: func(err error) { failures = append(failures, err) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour).Add(9 * time.Hour)
	ctx := &analytics.Context{Timezone: "Europe/Berlin"}
	msgs := []analytics.Message{
		analytics.Identify{UserId: "ann", Traits: analytics.NewTraits().SetName("Ann"), Context: ctx},
		analytics.Track{UserId: "ann", Event: "Book Opened", Timestamp: day, Context: ctx,
			Properties: analytics.NewProperties().Set("book_id", "dune").Set("position", 0.0)},
		analytics.Track{UserId: "ann", Event: "Reading Session Ended", Timestamp: day, Context: ctx,
			Properties: analytics.NewProperties().Set("book_id", "dune").Set("duration_ms", 45*60*1000).Set("page_turns", 30)},
		analytics.Track{UserId: "ann", Event: "Page Turned", Timestamp: day.Add(time.Minute), Context: ctx,
			Properties: analytics.NewProperties().Set("book_id", "dune").Set("page", 31).Set("pages", 600).Set("session_id", "s1")},
		analytics.Track{UserId: "ann", Event: "Reading Progressed", Timestamp: day.Add(45 * time.Minute), Context: ctx,
			Properties: analytics.NewProperties().Set("book_id", "dune").Set("percentage", 25)},
		analytics.Track{UserId: "ann", Event: "Highlight Created", Timestamp: day.Add(10 * time.Minute), Context: ctx,
			Properties: analytics.NewProperties().Set("book_id", "dune").Set("text", "Fear is the mind-killer.")},
		analytics.Track{UserId: "bob", Event: "Book Finished", Timestamp: day, Properties: analytics.NewProperties().Set("book_id", "dune")},
		analytics.Track{UserId: "bob", Event: "Book Rated", Timestamp: day.Add(time.Minute), Properties: analytics.NewProperties().Set("book_id", "dune").Set("rating", 4)},
		analytics.Track{UserId: "bob", Event: "Newsletter Subscribed", Timestamp: day, Properties: analytics.NewProperties().Set("list", "weekly")},
		analytics.Page{UserId: "bob", Name: "Store", Timestamp: day},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(); err != nil { // flushes every queued batch
		t.Fatal(err)
	}
	if len(failures) > 0 {
		t.Fatalf("analytics-go reported failures: %v", failures)
	}
	servertest.WaitProcessed(t, srv)

	var ann struct {
		TZ       string  `json:"time_zone"`
		Minutes  float64 `json:"total_reading_minutes"`
		Continue []struct {
			Book     string  `json:"book"`
			Position float64 `json:"position"`
		} `json:"continue_reading"`
	}
	getJSON(t, url+"/v1/readers/ann/insights", &ann)
	if ann.TZ != "Europe/Berlin" || ann.Minutes != 45 || len(ann.Continue) != 1 || ann.Continue[0].Position != 0.25 {
		t.Fatalf("ann's insights do not reflect the Segment calls: %+v", ann)
	}
	var dune struct {
		Finished  int      `json:"readers_finished"`
		Avg       *float64 `json:"average_rating"`
		Highlight int      `json:"highlights"`
	}
	getJSON(t, url+"/v1/books/dune/stats", &dune)
	if dune.Finished != 1 || dune.Avg == nil || *dune.Avg != 4 || dune.Highlight != 1 {
		t.Fatalf("dune: %+v", dune)
	}
	var stats struct {
		Totals struct {
			Events int `json:"events"`
		} `json:"totals"`
	}
	getJSON(t, url+"/v1/stats", &stats)
	if stats.Totals.Events != len(msgs) {
		t.Fatalf("%d events in state, sent %d calls (generic ones count too)", stats.Totals.Events, len(msgs))
	}
}

type callback struct{ fail func(error) }

func (c callback) Success(analytics.Message)            {}
func (c callback) Failure(_ analytics.Message, e error) { c.fail(e) }

func TestSegmentRefusals(t *testing.T) {
	_, url := servertest.Start(t, nil)
	post := func(path, body, user string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, "")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	track := `{"userId":"ann","event":"Book Rated","messageId":"m1","timestamp":"2026-11-20T10:00:00Z","properties":{"book_id":"dune","rating":%s}}`
	if s, _ := post("/v1/track", strings.Replace(track, "%s", "5", 1), ""); s != 401 {
		t.Fatalf("no write key: %d", s)
	}
	if s, m := post("/v1/track", `{"writeKey":"k",`+strings.Replace(track, "%s", "5", 1)[1:], ""); s != 200 || m["accepted"] != 1.0 {
		t.Fatalf("writeKey in body: %d %v", s, m)
	}
	s, m := post("/v1/track", strings.Replace(strings.Replace(track, "%s", "9", 1), "m1", "m2", 1), "k")
	ref, _ := m["refused"].([]any)
	if s != 400 || len(ref) != 1 || ref[0].(map[string]any)["field"] != "properties.rating" {
		t.Fatalf("bad rating: %d %v", s, m)
	}
	big := `{"userId":"ann","event":"X","properties":{"blob":"` + strings.Repeat("a", 33_000) + `"}}`
	if s, _ := post("/v1/track", big, "k"); s != 413 {
		t.Fatalf("a 33 KB call: %d", s)
	}
	batch := `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{"type":"track","userId":"u","event":"E","properties":{"p":"`+strings.Repeat("b", 20_000)+`"}},`, 26), ",") + `]}`
	if s, _ := post("/v1/batch", batch, "k"); s != 413 {
		t.Fatalf("a 520 KB batch: %d", s)
	}
	s, m = post("/v1/batch", `{"batch":[{"type":"track","userId":"u","event":"Book Finished","properties":{}},{"type":"track","userId":"u","event":"Something Else"}]}`, "k")
	ref, _ = m["refused"].([]any)
	if s != 200 || m["accepted"] != 1.0 || m["generic"] != 1.0 || len(ref) != 1 || ref[0].(map[string]any)["field"] != "properties.book_id" {
		t.Fatalf("batch with a finish lacking its book: %d %v", s, m)
	}
}
