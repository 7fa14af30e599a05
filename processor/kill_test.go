package processor_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// killingStore is the real Pebble store, in a child process that SIGKILLs itself at its
// killAt-th commit, when:
//   - before: the batch is folded and nothing of it written;
//   - after: the commit returned, state and offset written together but not synced, so the
//     kill may take them back (and earlier unsynced commits with them);
//   - synced: the commit returned and was synced, so it surely survives: a replay must start
//     at its offset, or its events would be applied twice.
type killingStore struct {
	*state.Pebble
	commits atomic.Int64 // partitions commit concurrently
	killAt  int64
	when    string
}

func (s *killingStore) Commit(slot int, offset int64, w *state.Writes) error {
	last := s.commits.Add(1) == s.killAt
	if last && s.when == "before" {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	if last && s.when == "synced" {
		w.MustBeDurable()
	}
	err := s.Pebble.Commit(slot, offset, w)
	if last {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	return err
}

// foldInChild is what the child process runs: fold the log in LOG_DIR into the state in
// STATE_DIR, killing itself at a commit as the environment says.
func foldInChild(t *testing.T) {
	log, err := eventlog.OpenPebble(os.Getenv("DOGEAR_KILL_LOG"), 0, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	st, err := state.OpenPebble(os.Getenv("DOGEAR_KILL_STATE"), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	killAt, _ := strconv.ParseInt(os.Getenv("DOGEAR_KILL_AT"), 10, 64)
	store := &killingStore{Pebble: st, killAt: killAt, when: os.Getenv("DOGEAR_KILL_WHEN")}
	if err := processor.New(log, store, processor.Config{Logger: quiet}).CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestKillAroundAStateCommitAppliesNothingTwice SIGKILLs a processor, again and again, right
// before or right after it commits a folded batch with its offset (killingStore), and restarts
// it each time on the same log and state. State and offset are one atomic write, so there is no
// moment between them to be killed in; a commit of state without its offset fails this test. Folding from the embedded log does not look event ids up
// (insights.Folder.ApplyUnique), so an event applied twice would show in the counts. In the end the
// state must equal one folded once from the same log.
func TestKillAroundAStateCommitAppliesNothingTwice(t *testing.T) {
	if os.Getenv("DOGEAR_KILL_STATE") != "" {
		foldInChild(t)
		return
	}
	if testing.Short() {
		t.Skip("runs and kills child processes")
	}
	dir := t.TempDir()
	logDir, stateDir := filepath.Join(dir, "log"), filepath.Join(dir, "state")
	const trials, perTrial = 12, 5000
	all := entries(t, trials*perTrial, 7)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 3))
	kills := 0
	for trial := range trials {
		// Each trial brings new events, so that there is always a fold to interrupt: at least
		// one commit per partition, 4 partitions.
		log, err := eventlog.OpenPebble(logDir, 4, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := log.Append(context.Background(), all[trial*perTrial:(trial+1)*perTrial]); err != nil {
			t.Fatal(err)
		}
		log.Close()
		killAt, when := 1+rng.IntN(4), []string{"before", "after", "synced"}[trial%3]
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillAroundAStateCommitAppliesNothingTwice$")
		cmd.Env = append(os.Environ(), "DOGEAR_KILL_LOG="+logDir, "DOGEAR_KILL_STATE="+stateDir,
			"DOGEAR_KILL_AT="+strconv.Itoa(killAt), "DOGEAR_KILL_WHEN="+when)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			kills++
		case err != nil:
			t.Fatalf("trial %d: child failed: %v\n%s", trial, err, out)
		}
	}
	if kills < trials {
		t.Fatalf("only %d of %d children were killed mid-fold: the test proved little", kills, trials)
	}

	// Finish the fold, then compare with a state folded once.
	st, err := state.OpenPebble(stateDir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log, err := eventlog.OpenPebble(logDir, 0, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	if err := processor.New(log, st, processor.Config{Logger: quiet}).CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	ref, err := state.OpenPebble(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if err := processor.New(log, ref, processor.Config{Logger: quiet}).CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff, err := state.Diff(st, ref); err != nil || diff != "" {
		t.Fatalf("after %d kills around commits the state differs from one folded once: %s %v", kills, diff, err)
	}
	t.Logf("%d children killed around a commit; the state equals a single fold", kills)
}
