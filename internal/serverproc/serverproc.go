// Package serverproc runs the real servers the tests and the sandbox start
// (Vault, the Storyden server, the Storj auth service): each in a process
// group of its own, so that stopping it also ends what it started, with its
// output in a log file that start-up errors quote.
package serverproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before it kills.
const stopGrace = 15 * time.Second

// Process is one started server.
type Process struct {
	// LogPath is the file holding its output.
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start runs cmd with its stdout and stderr in a new file at logPath.
func Start(cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Log is everything the process has written so far.
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.LogPath)
	return string(data)
}

// LogTail is the last n lines the process has written.
func (p *Process) LogTail(n int) string { return LogTail(p.LogPath, n) }

// Stop ends the process the way an operator would (SIGTERM), so that it
// stops what it started; after a grace period, and in any case once it has
// exited, it kills the whole process group, so nothing it started outlives
// it.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
	}
	p.Kill()
}

// Kill kills the process group at once and waits for the process to exit.
// It is safe to call twice.
func (p *Process) Kill() {
	if p == nil {
		return
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// LogTail is the last n lines of the file at path.
func LogTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
