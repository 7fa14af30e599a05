package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/server"
	"github.com/dogear-dev/dogear/trainer"
)

// A model promoted by hand that finds fewer of the books readers go on to read than the one it
// replaced is promoted back by the train role's model watch.
func TestWorseModelIsPromotedBack(t *testing.T) {
	srv, url := start(t, func(c *server.Config) { c.ModelWatchInterval = 100 * time.Millisecond })
	read := clustered(t, srv, url)
	postOK := func(path string) {
		t.Helper()
		resp, err := http.Post(url+path, "application/json", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST %s: %v %v", path, err, resp.Status)
		}
		resp.Body.Close()
	}
	postOK("/v1/models/train")
	if _, v := srv.Registry().Serving(); v != 1 {
		t.Fatalf("serving %d after training, want 1", v)
	}
	// A worse model: popularity, from the same interactions.
	byReader, err := trainer.Interactions(t.Context(), srv.State(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var all []recommend.Interaction
	for _, l := range byReader {
		all = append(all, l...)
	}
	bad, err := srv.Registry().Save(recommend.TrainArtifact(all, recommend.ModelParams{Kind: "popularity"}), registry.Metrics{Reason: "injected for the test"})
	if err != nil {
		t.Fatal(err)
	}
	postOK(fmt.Sprintf("/v1/models/%d/promote", bad))
	time.Sleep(300 * time.Millisecond) // the watch sees the promotion

	// Readers read on in their genre, one more book a round, each round after the last.
	for round := 0; round < 12; round++ {
		if _, v := srv.Registry().Serving(); v == 1 {
			t.Logf("promoted back to version 1 after %d rounds of reading", round)
			return
		}
		at := time.Now().UTC().Add(time.Duration(round+1) * time.Minute).Truncate(time.Second)
		var lines []string
		for reader, books := range read {
			genre := books[0][:2]
			for k := range 20 {
				book := fmt.Sprintf("%s-b%02d", genre, k)
				if !slices.Contains(read[reader], book) {
					read[reader] = append(read[reader], book)
					lines = append(lines, fmt.Sprintf(`{"id":"%s-%s","type":"finish","reader":"%s","book":"%s","time":"%s"}`,
						reader, book, reader, book, at.Format(time.RFC3339)))
					break
				}
			}
		}
		if r := post(t, url, []byte(strings.Join(lines, "\n")), nil); r.status != 200 {
			t.Fatalf("round %d: %d %+v", round, r.status, r.body)
		}
		waitProcessed(t, srv)
		time.Sleep(250 * time.Millisecond) // a watch interval or two
	}
	t.Fatal("the worse model is still serving after 12 rounds of reading")
}
