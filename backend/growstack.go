package backend

// stackIndex is never written. The frame is read at it, an index the
// compiler cannot know, so the frame is not optimized away; read only, it
// is safe from any number of requests at once.
var stackIndex int

// growStack grows the calling goroutine's stack by one large frame. The SDK's
// gRPC server runs each request on a new goroutine with a small stack, which
// an issue outgrows several times (each gRPC call back into Vault is deep),
// and every growth copies the stack and walks all its frames: grown once
// while the stack is still shallow, the copies that follow are not needed.
//
//go:noinline
func growStack() {
	var frame [8 << 10]byte
	if frame[stackIndex] != 0 {
		panic("growStack: a zeroed frame holds a byte")
	}
}
