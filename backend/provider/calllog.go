package provider

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// CallLog collects the upstream calls Client makes under a context, so that
// the engine logs them with the outcome of the request they served, in one
// line written after Vault has its answer, instead of one trace line each
// while the request waits. Trace replays them as those lines, for a request
// that failed.
type CallLog struct {
	mu    sync.Mutex
	calls []loggedCall
}

// loggedCall is one HTTP exchange; status 0 means no answer arrived.
type loggedCall struct {
	method, path string
	status       int
	duration     time.Duration
}

type callLogKey struct{}

// WithCallLog returns a context under which Client records its calls in
// log instead of writing a trace line for each.
func WithCallLog(ctx context.Context, log *CallLog) context.Context {
	return context.WithValue(ctx, callLogKey{}, log)
}

func callLogFrom(ctx context.Context) *CallLog {
	log, _ := ctx.Value(callLogKey{}).(*CallLog)
	return log
}

func (l *CallLog) add(c loggedCall) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

// String lists the calls in order, e.g. "POST /api/auth/access-keys 200
// 312µs"; "" when there were none.
func (l *CallLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i, c := range l.calls {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(c.method + " " + c.path + " ")
		if c.status == 0 {
			b.WriteString("no answer")
		} else {
			b.WriteString(strconv.Itoa(c.status))
		}
		b.WriteString(" " + c.duration.String())
	}
	return b.String()
}

// Trace writes each call as the trace line Client writes when it has no
// CallLog.
func (l *CallLog) Trace(logger hclog.Logger, providerName string) {
	l.mu.Lock()
	calls := l.calls
	l.mu.Unlock()
	for _, c := range calls {
		traceCall(logger, providerName, c)
	}
}

// traceCall writes the trace line of one exchange.
func traceCall(logger hclog.Logger, providerName string, c loggedCall) {
	if c.status == 0 {
		logger.Trace("upstream call failed", "provider", providerName, "method", c.method, "path", c.path, "duration", c.duration.String())
		return
	}
	logger.Trace("upstream call", "provider", providerName, "method", c.method, "path", c.path, "status", c.status, "duration", c.duration.String())
}
