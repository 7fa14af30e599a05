package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/api"
	"github.com/dogear-dev/dogear/bench"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/server"
	"github.com/dogear-dev/dogear/trainer"
)

// clustered posts reading histories with structure a recommender can learn: readers of one
// "genre" finish books of that genre only. It returns each reader's books.
func clustered(t *testing.T, srv *server.Server, url string) map[string][]string {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	read := map[string][]string{}
	var lines []string
	at := time.Now().UTC().Add(-10 * 24 * time.Hour).Truncate(time.Second)
	for r := 0; r < 240; r++ {
		reader := fmt.Sprintf("r%03d", r)
		genre := r % 6
		for _, k := range rng.Perm(20)[:6] {
			book := fmt.Sprintf("g%d-b%02d", genre, k)
			read[reader] = append(read[reader], book)
			at = at.Add(time.Minute)
			lines = append(lines, fmt.Sprintf(`{"id":"%s-%s","type":"finish","reader":"%s","book":"%s","time":"%s"}`,
				reader, book, reader, book, at.Format(time.RFC3339)))
		}
	}
	if r := post(t, url, []byte(strings.Join(lines, "\n")), nil); r.status != 200 || r.resp.Accepted != len(lines) {
		t.Fatalf("seeding: %d %+v", r.status, r.body)
	}
	waitProcessed(t, srv)
	return read
}

func recsOf(t *testing.T, url, reader string) api.Recommendations {
	t.Helper()
	var recs api.Recommendations
	if s := get(t, url+"/v1/readers/"+reader+"/recommendations?n=10", &recs); s != 200 {
		t.Fatalf("recommendations for %s: status %d", reader, s)
	}
	return recs
}

func TestRecommendationsServeTrainedModel(t *testing.T) {
	srv, url := start(t, nil)
	read := clustered(t, srv, url)

	// Before any model: a reader still gets a non-empty list (trending).
	if recs := recsOf(t, url, "r000"); len(recs.Items) == 0 || recs.ModelVersion != 0 {
		t.Fatalf("no model yet: %+v", recs)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/models/train", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("train: %v %v", err, resp.Status)
	}
	resp.Body.Close()

	inGenre := 0
	for reader, books := range read {
		recs := recsOf(t, url, reader)
		if recs.ModelVersion != 1 || len(recs.Items) != 10 {
			t.Fatalf("%s: %+v", reader, recs)
		}
		mine := map[string]bool{}
		for _, b := range books {
			mine[b] = true
		}
		genre := books[0][:2]
		for _, it := range recs.Items {
			if mine[it.Book] {
				t.Fatalf("%s was recommended %s, which they finished", reader, it.Book)
			}
			if it.Reason == "" {
				t.Fatalf("%s: item without a reason: %+v", reader, it)
			}
			if strings.HasPrefix(it.Book, genre) {
				inGenre++
				if !strings.HasPrefix(it.Reason, "because you read ") || !mine[it.Because] {
					t.Fatalf("%s: reason %q / because %q does not name a book they read", reader, it.Reason, it.Because)
				}
			}
		}
	}
	// Each reader has 14 unread books of their genre: the model should fill the top 10 with them.
	if share := float64(inGenre) / float64(10*len(read)); share < 0.95 {
		t.Fatalf("only %.0f%% of recommendations are in the reader's genre", share*100)
	}

	// A cold-start reader gets trending books, not an empty list.
	cold := recsOf(t, url, "newcomer")
	if len(cold.Items) == 0 || cold.Items[0].Reason != "trending now" {
		t.Fatalf("cold start: %+v", cold)
	}

	// "Readers also enjoyed" stays within the genre.
	var sim struct {
		Items []api.Item `json:"items"`
	}
	if s := get(t, url+"/v1/books/g2-b03/similar?n=5", &sim); s != 200 || len(sim.Items) != 5 {
		t.Fatalf("similar: %d %+v", s, sim)
	}
	for _, it := range sim.Items {
		if !strings.HasPrefix(it.Book, "g2-") {
			t.Fatalf("similar to g2-b03: %s", it.Book)
		}
	}
}

func TestFreshEventChangesRecommendations(t *testing.T) {
	srv, url := start(t, nil)
	clustered(t, srv, url)
	if _, err := srv.Trainer().TrainOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := recsOf(t, url, "r001")
	top := before.Items[0].Book
	newcomer := recsOf(t, url, "newcomer")
	// r001 finishes their top recommendation, and a newcomer finishes a genre-4 book: without
	// any retraining, the next answers drop the finished book and give the newcomer genre 4.
	now := time.Now().UTC().Format(time.RFC3339)
	body := fmt.Sprintf(`{"id":"fresh-1","type":"finish","reader":"r001","book":%q,"time":%q}
{"id":"fresh-2","type":"finish","reader":"newcomer","book":"g4-b00","time":%q}`, top, now, now)
	if r := post(t, url, []byte(body), nil); r.status != 200 {
		t.Fatalf("post: %d %v", r.status, r.body)
	}
	waitProcessed(t, srv)
	for _, it := range recsOf(t, url, "r001").Items {
		if it.Book == top {
			t.Fatalf("recommended %s right after the reader finished it", top)
		}
	}
	after := recsOf(t, url, "newcomer")
	if fmt.Sprint(after.Items) == fmt.Sprint(newcomer.Items) {
		t.Fatal("the newcomer's first event did not change their recommendations")
	}
	for _, it := range after.Items[:5] {
		if !strings.HasPrefix(it.Book, "g4-") || it.Because != "g4-b00" {
			t.Fatalf("after finishing g4-b00 the newcomer got %+v", after.Items)
		}
	}
}

func TestPromotionRefusesWorseModel(t *testing.T) {
	srv, url := start(t, nil)
	clustered(t, srv, url)
	good, err := srv.Trainer().TrainOnce(context.Background())
	if err != nil || !good.Metrics.Promoted {
		t.Fatalf("first model: %+v %v", good, err)
	}
	// A second trainer over the same state and registry, with one neighbour per book: it can
	// reach few of a reader's unread books, so it must lose the gate.
	worse := trainer.New(srv.State(), srv.Registry(), trainer.Config{Params: recommend.ModelParams{Kind: "rp3beta", K: 1, Alpha: 0.55, Beta: 0.2}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	v2, err := worse.TrainOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v2.Metrics.Promoted || v2.Metrics.Serving == nil || v2.Metrics.Candidate.Recall >= v2.Metrics.Serving.Recall {
		t.Fatalf("worse model was promoted or not compared: %+v", v2.Metrics)
	}
	var models struct {
		Models []registry.Version `json:"models"`
	}
	get(t, url+"/v1/models", &models)
	if len(models.Models) != 2 || !models.Models[1].Serving || models.Models[0].Serving {
		t.Fatalf("models: %+v", models.Models)
	}
	// An operator can still roll forward to it, and back.
	for _, v := range []int{2, 1} {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/models/%d/promote", url, v), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("promote %d: %v %v", v, err, resp.Status)
		}
		resp.Body.Close()
		if recs := recsOf(t, url, "r000"); recs.ModelVersion != v {
			t.Fatalf("after promoting %d, serving %d", v, recs.ModelVersion)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/models/99/promote", nil)
	resp, _ := http.DefaultClient.Do(req)
	if resp.StatusCode != 404 {
		t.Fatalf("promote unknown version: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// TestServedListsScoreAsEvaluated: a KGAT-format dataset (here made from a ratings CSV by
// convert-ratings' code) ingested as events and trained through the API serves lists that score
// on test what `dogear eval` reports for the model it selects ("selected, as served"), within 1%.
func TestServedListsScoreAsEvaluated(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var csv strings.Builder
	csv.WriteString("user_id,book_id,rating\n")
	for u := range 1500 {
		taste := u % 8
		for range 6 + rng.IntN(10) {
			book := taste*30 + rng.IntN(30) // mostly from the reader's taste
			if rng.IntN(5) == 0 {
				book = rng.IntN(240)
			}
			fmt.Fprintf(&csv, "%d,%d,%d\n", 100+u, 1000+book, 3+rng.IntN(3))
		}
	}
	dir := t.TempDir()
	if _, _, err := recommend.ConvertRatings(strings.NewReader(csv.String()), dir, recommend.RatingsOptions{MinRating: 4, TestFraction: 0.2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	ds, err := recommend.LoadKGAT(dir)
	if err != nil {
		t.Fatal(err)
	}
	budget := 10 * time.Minute // both searches run to the end, so they choose alike
	eval := recommend.EvalServed(ds, budget)

	srv, url := start(t, func(c *server.Config) { c.Recommender.SearchBudget = budget })
	var lines []string
	old := time.Now().UTC().AddDate(-1, 0, 0) // long before trending's window: no fill from it
	for _, it := range recommend.KGATInteractions(ds.Train) {
		at := old.Add(time.Duration(it.At) * time.Millisecond)
		lines = append(lines, fmt.Sprintf(`{"id":"%s-%s","type":"finish","reader":"%s","book":"%s","time":"%s"}`,
			it.Reader, it.Book, it.Reader, it.Book, at.Format(time.RFC3339)))
	}
	for i := 0; i < len(lines); i += 5000 {
		if r := post(t, url, []byte(strings.Join(lines[i:min(i+5000, len(lines))], "\n")), nil); r.status != 200 {
			t.Fatalf("ingest: %d %+v", r.status, r.body)
		}
	}
	waitProcessed(t, srv)
	v, err := srv.Trainer().TrainOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Params.String() != eval.Params {
		t.Fatalf("the trainer chose %s, the eval %s", v.Params, eval.Params)
	}
	served, users, err := bench.ServedRecall(context.Background(), url, ds.Test)
	if err != nil {
		t.Fatal(err)
	}
	if diff := served/eval.Test.Recall - 1; diff > 0.01 || diff < -0.01 {
		t.Fatalf("served Recall@20 %.4f, eval %.4f for %s: %.1f%% apart", served, eval.Test.Recall, eval.Params, 100*diff)
	}
	t.Logf("served Recall@20 %.4f, eval %.4f (%s, %d readers)", served, eval.Test.Recall, eval.Params, users)
}
