package web_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/internal/servertest"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/server"
)

//go:embed testdata/axe.min.js
var axe string

// browser starts headless Chromium (the CI installs Debian's) at the given window width.
func browser(t testing.TB, width int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (.ci/run installs Debian's chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	// The viewport, not the window: a headless window is never narrower than 500 px.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), 1000)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// seed fills a server with a loadgen crowd, a catalog naming every book, and ann, whose reading
// the reader page shows: sessions on 12 of the last 20 days, two finished books with page turns,
// one in progress, two highlights and a rating.
func seed(t testing.TB, url string) {
	t.Helper()
	end := time.Now().UTC()
	crowd := loadgen.New(loadgen.Config{Readers: 200, Books: 40, Seed: 3, Start: end.Add(-25 * 24 * time.Hour), End: end}).Batch(4000)
	books := map[string]bool{}
	var lines []string
	for _, e := range crowd {
		books[e.Book] = true
		lines = append(lines, string(e.Marshal()))
	}
	ev := func(id, typ, book string, at time.Time, extra string) {
		lines = append(lines, fmt.Sprintf(`{"id":%q,"type":%q,"reader":"ann","book":%q,"time":%q,"tz":"UTC"%s}`, id, typ, book, at.Format(time.RFC3339), extra))
	}
	today := end.Truncate(24 * time.Hour).Add(9 * time.Hour)
	for i := range 20 {
		if i%5 == 1 || i%5 == 3 {
			continue // 12 reading days of 20
		}
		ev(fmt.Sprintf("s%d", i), "session", "ann-1", today.AddDate(0, 0, -i), fmt.Sprintf(`,"duration_ms":%d`, (20+i*3)*60000))
	}
	for b, pages := range map[string]int{"ann-1": 40, "ann-2": 30} {
		for p := 1; p <= pages; p++ {
			ev(fmt.Sprintf("%s-p%d", b, p), "page", b, today.AddDate(0, 0, -15).Add(time.Duration(p)*time.Minute), fmt.Sprintf(`,"page":%d,"pages":%d,"duration_ms":90000`, p, pages))
		}
	}
	ev("f1", "finish", "ann-1", today.AddDate(0, 0, -10), "")
	ev("f2", "finish", "ann-2", today.AddDate(0, 0, -2), "")
	ev("r1", "rating", "ann-2", today.AddDate(0, 0, -2), `,"rating":5`)
	ev("pr", "progress", "ann-3", today.Add(-time.Hour), `,"position":0.42`)
	ev("h1", "highlight", "ann-1", today.AddDate(0, 0, -12), `,"text":"It was a bright cold day in April"`)
	ev("h2", "highlight", "ann-2", today.AddDate(0, 0, -3), `,"text":"All happy families are alike"`)
	var catalog []map[string]any
	for _, b := range []string{"ann-1", "ann-2", "ann-3"} {
		books[b] = true
	}
	for b := range books {
		catalog = append(catalog, map[string]any{"id": b, "title": "Title of " + b, "authors": []string{"Author " + b}})
	}
	post(t, url+"/v1/catalog", "application/json", catalog)
	resp, err := http.Post(url+"/v1/events", "application/x-ndjson", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("seed: %v %v", err, resp.Status)
	}
	resp.Body.Close()
}

func post(t testing.TB, url, ctype string, v any) {
	t.Helper()
	body, _ := json.Marshal(v)
	resp, err := http.Post(url, ctype, strings.NewReader(string(body)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST %s: %v %v", url, err, resp.Status)
	}
	resp.Body.Close()
}

// chartText is what a person sees of each drawn chart: its text elements and the smallest
// rendered font size among them.
type chartText struct {
	ID      string   `json:"id"`
	Texts   []string `json:"texts"`
	MinFont float64  `json:"minFont"`
	Height  float64  `json:"height"`
}

const readCharts = `[...document.querySelectorAll(".chart:not([hidden])")].map((el) => {
  const texts = [...el.querySelectorAll("svg text")].filter((t) => t.textContent.trim() && t.getBoundingClientRect().height > 0);
  return {id: el.id, texts: texts.map((t) => t.textContent.trim()),
    minFont: Math.min(...texts.map((t) => parseFloat(getComputedStyle(t).fontSize))),
    height: el.getBoundingClientRect().height};
})`

// axeViolations runs axe-core in the page and returns its serious and critical violations.
const runAxe = `axe.run(document, {resultTypes: ["violations"]}).then((r) => r.violations
  .filter((v) => v.impact === "serious" || v.impact === "critical")
  .map((v) => v.id + ": " + v.help + " (" + v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ") + ")"))`

func load(t *testing.T, ctx context.Context, url string) []chartText {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("body[data-loaded]"))); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return charts(t, ctx)
}

func charts(t *testing.T, ctx context.Context) []chartText {
	t.Helper()
	drawn, err := chromedp.Run(ctx, chromedp.Evaluate[[]chartText](readCharts))
	if err != nil {
		t.Fatal(err)
	}
	return drawn
}

// checkCharts: every chart drawn has axis labels or a calendar's, in text of 12 px or more.
func checkCharts(t *testing.T, charts []chartText, want ...string) {
	t.Helper()
	drawn := map[string]chartText{}
	for _, c := range charts {
		drawn[c.ID] = c
	}
	for _, id := range want {
		c, ok := drawn[id]
		if !ok {
			t.Fatalf("chart #%s not drawn (drawn: %v)", id, charts)
		}
		if len(c.Texts) < 4 || c.MinFont < 12 || c.Height < 150 {
			t.Fatalf("chart #%s: %d labels, smallest %.1f px, %.0f px tall: %v", id, len(c.Texts), c.MinFont, c.Height, c.Texts)
		}
	}
}

// watchConsole collects the errors the page reports to its console (exceptions, refused content
// security policy, failed requests); the returned func tells those seen so far.
func watchConsole(ctx context.Context) func() []string {
	var mu sync.Mutex
	var errs []string
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				mu.Lock()
				errs = append(errs, m.String()+" "+m.URL)
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

func noErrors(t *testing.T, consoleErrors func() []string) {
	t.Helper()
	if errs := consoleErrors(); len(errs) > 0 {
		t.Fatalf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

func accessible(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](axe+";true")); err != nil {
		t.Fatal(err)
	}
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](runAxe, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if len(violations) > 0 {
		t.Fatalf("axe-core: %d serious or critical violations:\n%s", len(violations), strings.Join(violations, "\n"))
	}
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	return s
}

// TestReaderPage: a reader's page at phone and desktop width shows their reading with titles,
// charts with readable axes, and passes axe-core.
func TestReaderPage(t *testing.T) {
	srv, url := servertest.Start(t, nil)
	seed(t, url)
	servertest.WaitProcessed(t, srv)
	post(t, url+"/v1/models/train", "application/json", nil)
	for _, width := range []int{390, 1400} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			ctx := browser(t, width)
			consoleErrors := watchConsole(ctx)
			checkCharts(t, load(t, ctx, url+"/readers/ann"), "calendar", "weekly", "speed")
			if got := text(t, ctx, "#finished"); !strings.Contains(got, "Title of ann-2") || !strings.Contains(got, "Author ann-1") || !strings.Contains(got, "rated 5 of 5") {
				t.Fatalf("books finished: %q", got)
			}
			if got := text(t, ctx, "#continue"); !strings.Contains(got, "Title of ann-3") || !strings.Contains(got, "42%") {
				t.Fatalf("continue reading: %q", got)
			}
			if got := text(t, ctx, "#highlights"); !strings.Contains(got, "All happy families are alike") || !strings.Contains(got, "Title of ann-2") {
				t.Fatalf("highlights: %q", got)
			}
			if got := text(t, ctx, "#recs"); !strings.Contains(got, "Title of") {
				t.Fatalf("recommendations without titles: %q", got)
			}
			if got := text(t, ctx, "#year"); !strings.Contains(got, "books finished in") {
				t.Fatalf("year in books: %q", got)
			}
			if got := text(t, ctx, "#streaks"); !strings.Contains(got, "longest") {
				t.Fatalf("streaks: %q", got)
			}
			if overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > innerWidth`)); err != nil || overflow {
				t.Fatalf("the page is wider than a %d px window", width)
			}
			accessible(t, ctx)
			noErrors(t, consoleErrors)
			screenshot(t, ctx, fmt.Sprintf("reader-%d.png", width))
		})
	}
	t.Run("dark", func(t *testing.T) {
		ctx := browser(t, 1400)
		load(t, ctx, url+"/readers/ann")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#theme"))); err != nil {
			t.Fatal(err)
		}
		if theme, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.dataset.theme`)); err != nil || theme != "dark" {
			t.Fatalf("theme after the toggle: %q %v", theme, err)
		}
		accessible(t, ctx)
		screenshot(t, ctx, "reader-dark.png")
	})
}

// TestReaderPageStates: a reader with nothing recorded, a page without the token auth needs, and a
// token for someone else, say so; the reader's own token, given in the fragment, opens the page.
func TestReaderPageStates(t *testing.T) {
	_, url := servertest.Start(t, nil)
	ctx := browser(t, 1400)
	load(t, ctx, url+"/readers/nobody")
	if got := text(t, ctx, "#time-state"); !strings.Contains(got, "Nothing recorded for nobody yet") {
		t.Fatalf("empty state: %q", got)
	}
	accessible(t, ctx)

	dir := t.TempDir()
	_, authURL := servertest.Start(t, func(c *server.Config) { c.DataDir, c.RequireAuth = dir, true })
	ctx = browser(t, 1400)
	load(t, ctx, authURL+"/readers/ann")
	if got := text(t, ctx, "#time-state"); !strings.Contains(got, "#token=") {
		t.Fatalf("without a token: %q", got)
	}
	// With ann's token in the fragment the data opens (nothing recorded yet, rather than refused),
	// and the token leaves the address bar; bob's token does not open ann's page.
	tokens, err := auth.OpenTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	ann, _ := tokens.Issue(auth.RoleReader, "ann", time.Hour)
	bob, _ := tokens.Issue(auth.RoleReader, "bob", time.Hour)
	ctx = browser(t, 1400)
	load(t, ctx, authURL+"/readers/ann#token="+ann)
	if got := text(t, ctx, "#time-state"); !strings.Contains(got, "Nothing recorded for ann yet") {
		t.Fatalf("with ann's token: %q", got)
	}
	if href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); err != nil || strings.Contains(href, "token") {
		t.Fatalf("the token stayed in the address bar: %q %v", href, err)
	}
	ctx = browser(t, 1400)
	load(t, ctx, authURL+"/readers/ann#token="+bob)
	if got := text(t, ctx, "#time-state"); !strings.Contains(got, "does not open this") {
		t.Fatalf("with bob's token on ann's page: %q", got)
	}
}

// TestDashboard: the platform dashboard shows titles, readable charts, empty states that say
// what to do, and passes axe-core.
func TestDashboard(t *testing.T) {
	_, empty := servertest.Start(t, nil)
	ctx := browser(t, 1400)
	load(t, ctx, empty+"/")
	if got := text(t, ctx, "#platform-state"); !strings.Contains(got, "No events yet") {
		t.Fatalf("empty platform: %q", got)
	}
	if got := text(t, ctx, "#models-state"); !strings.Contains(got, "No model trained yet") {
		t.Fatalf("no models: %q", got)
	}
	accessible(t, ctx)

	srv, url := servertest.Start(t, nil)
	seed(t, url)
	servertest.WaitProcessed(t, srv)
	post(t, url+"/v1/models/train", "application/json", nil)
	ctx = browser(t, 1400)
	consoleErrors := watchConsole(ctx)
	checkCharts(t, load(t, ctx, url+"/"), "dau")
	if got := text(t, ctx, "#trending"); !strings.Contains(got, "Title of") {
		t.Fatalf("trending without titles: %q", got)
	}
	if got := text(t, ctx, "#models"); !strings.Contains(got, "serving") {
		t.Fatalf("models: %q", got)
	}
	// A book from the trending list: its numbers and, when readers abandoned it, where.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#trending a")), chromedp.WaitVisible(chromedp.CSS("#book .kpis"))); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#book"); !strings.Contains(got, "Title of") || !strings.Contains(got, "readers started") {
		t.Fatalf("book panel: %q", got)
	}
	accessible(t, ctx)
	noErrors(t, consoleErrors)
	screenshot(t, ctx, "dashboard.png")
}

// BenchmarkFirstVisit measures a first visit to each page, on loopback: the bytes transferred
// (compressed, headers included) and the time from navigation to the first chart drawn, each
// visit in a fresh browser context so nothing is cached.
//
//	go test ./web -run '^$' -bench FirstVisit -benchtime 10x
func BenchmarkFirstVisit(b *testing.B) {
	srv, url := servertest.Start(b, nil)
	seed(b, url)
	servertest.WaitProcessed(b, srv)
	post(b, url+"/v1/models/train", "application/json", nil)
	browserCtx := browser(b, 1400)
	for _, page := range []struct{ name, path string }{{"dashboard", "/"}, {"reader", "/readers/ann"}} {
		b.Run(page.name, func(b *testing.B) {
			var firstChart, bytes []float64
			for b.Loop() {
				ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
				err := chromedp.Do(ctx, chromedp.Navigate(url+page.path), chromedp.WaitVisible(chromedp.CSS("[data-drawn]")))
				if err != nil {
					b.Fatal(err)
				}
				m, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[
				  performance.getEntriesByName("dogear-first-chart")[0].startTime,
				  [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")].reduce((n, e) => n + e.transferSize, 0)]`))
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				firstChart, bytes = append(firstChart, m[0]), append(bytes, m[1])
			}
			b.ReportMetric(median(firstChart), "ms-to-first-chart")
			b.ReportMetric(median(bytes)/1024, "KiB-transferred")
		})
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	return s[len(s)/2]
}
