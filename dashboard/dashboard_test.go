package dashboard_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/internal/servertest"
)

// TestDashboardInRealBrowser loads the page in headless Chromium against a real server and checks
// what a person would see: the reader's daily minutes as bars, their streak, the book's
// abandonment curve, and recommendations with reasons.
func TestDashboardInRealBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (.ci/run installs Debian's chromium)")
	}
	srv, url := servertest.Start(t, nil)

	// ann reads 20, 40 and 60 minutes on the last three days; bob abandons b1 at 35 %.
	today := time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)
	var lines []string
	for i, minutes := range []int{20, 40, 60} {
		at := today.AddDate(0, 0, i-2)
		lines = append(lines, fmt.Sprintf(`{"id":"s%d","type":"session","reader":"ann","book":"b1","time":%q,"duration_ms":%d,"tz":"UTC"}`, i, at.Format(time.RFC3339), minutes*60000))
	}
	old := today.AddDate(0, 0, -60).Format(time.RFC3339)
	lines = append(lines, fmt.Sprintf(`{"id":"b1","type":"progress","reader":"bob","book":"b1","time":%q,"position":0.35}`, old),
		fmt.Sprintf(`{"id":"b2","type":"finish","reader":"bob","book":"b2","time":%q}`, old))
	resp, err := http.Post(url+"/v1/events", "application/x-ndjson", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("seed: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	servertest.WaitProcessed(t, srv)

	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", url+"/?reader=ann&book=b1")
	cmd.Stderr = os.Stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	page := string(dom)
	values := func(svgID string) []string {
		i := strings.Index(page, `id="`+svgID+`"`)
		if i < 0 {
			t.Fatalf("no #%s in the page", svgID)
		}
		end := strings.Index(page[i:], "</svg>")
		var out []string
		for _, m := range regexp.MustCompile(`data-value="([0-9.]+)"`).FindAllStringSubmatch(page[i:i+end], -1) {
			out = append(out, m[1])
		}
		return out
	}
	days := values("reader-chart")
	if len(days) != 30 || strings.Join(days[27:], ",") != "20,40,60" {
		t.Fatalf("reader chart bars: %v", days)
	}
	if !strings.Contains(page, `<b id="streak">3</b>`) {
		t.Fatal("streak of 3 days not shown")
	}
	curve := values("book-chart")
	if len(curve) != 10 || curve[3] != "1" {
		t.Fatalf("abandonment curve: %v (bob stopped at 35%%)", curve)
	}
	if !strings.Contains(page, `id="recs"`) || !strings.Contains(page, "trending now") && !strings.Contains(page, "popular with readers") {
		t.Fatal("no recommendations with reasons on the page")
	}
	if dau := values("dau-chart"); len(dau) != 30 || dau[29] != "1" {
		t.Fatalf("daily active readers chart: %v", dau)
	}
}
