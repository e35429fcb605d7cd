package backend

// stackSink keeps growStack's frame from being optimized away.
var stackSink byte

// growStack grows the calling goroutine's stack by one large frame. The SDK's
// gRPC server runs each request on a new goroutine with a small stack, which
// an issue outgrows several times (each gRPC call back into Vault is deep),
// and every growth copies the stack and walks all its frames: grown once
// while the stack is still shallow, the copies that follow are not needed.
//
//go:noinline
func growStack() {
	var frame [8 << 10]byte
	stackSink = frame[int(stackSink)%len(frame)]
}
