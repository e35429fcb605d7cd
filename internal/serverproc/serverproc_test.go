package serverproc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopEndsTheProcessGroup: what the server started (Vault's plugin
// processes) must not outlive it.
func TestStopEndsTheProcessGroup(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "sleep 600 & echo child=$!; wait"), filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	child := childPID(t, p)
	p.Stop()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	// SIGKILL is delivered, not awaited: give the child a bounded number
	// of looks to go.
	for i := 0; alive(child); i++ {
		if i == 1000 {
			t.Fatalf("child %d outlived Stop", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Kill() // a second end is harmless
}

// childPID waits (bounded in count, for a shell that starts in
// milliseconds) for the shell to log its child's pid.
func childPID(t *testing.T, p *Process) int {
	t.Helper()
	for range 1000 {
		for _, line := range strings.Split(p.Log(), "\n") {
			if v, ok := strings.CutPrefix(line, "child="); ok {
				if pid, err := strconv.Atoi(v); err == nil {
					return pid
				}
			}
		}
		select {
		case <-p.Exited():
			t.Fatalf("the shell exited: %q", p.Log())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("the child's pid never reached the log: %q", p.Log())
	return 0
}

// alive reports whether pid runs: a killed child not yet reaped by init
// is a zombie, which no longer runs.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

func TestLogTail(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "printf 'a\\nb\\nc\\n'"), filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	if got := p.LogTail(2); got != "b\nc" {
		t.Fatalf("LogTail(2) = %q", got)
	}
	if got := LogTail(filepath.Join(t.TempDir(), "missing"), 2); !strings.HasPrefix(got, "(cannot read ") {
		t.Fatalf("LogTail of a missing file = %q", got)
	}
}
