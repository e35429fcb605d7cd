package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// The shared call outlives the caller that started it, within its own bound,
// and the caller that stops waiting gets an error naming the call.
func TestSharedCalls_RunDetachedFromTheCallerThatStartedThem(t *testing.T) {
	s := SharedCalls{Provider: "storyden"}
	running, finish := make(chan context.Context, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		_, err := s.Do(ctx, "signin", "sign in as admin", func(callCtx context.Context) (any, error) {
			running <- callCtx
			<-finish
			return "session", callCtx.Err()
		})
		waited <- err
	}()
	callCtx := <-running
	cancel()
	err := <-waited
	var ue *UpstreamError
	if !errors.As(err, &ue) || !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "storyden: sign in as admin failed") {
		t.Errorf("the caller that gave up got %v, want an upstream error naming the sign-in and its cancellation", err)
	}
	if callCtx.Err() != nil {
		t.Errorf("the shared call was cancelled with its first caller: %v", callCtx.Err())
	}
	if _, bounded := callCtx.Deadline(); !bounded {
		t.Error("the shared call has no deadline of its own")
	}
	close(finish)
}
