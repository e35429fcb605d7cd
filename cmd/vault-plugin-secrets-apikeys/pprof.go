//go:build pprof

package main

import (
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

// pprofAddrEnv names the loopback address a plugin built with the pprof tag
// serves net/http/pprof on, for the bench to profile the plugin process
// (vault's sys/pprof profiles only the server). Release builds have no such
// listener: this file is compiled only with -tags pprof.
const pprofAddrEnv = "APIKEYS_PPROF_ADDR"

func init() {
	addr := os.Getenv(pprofAddrEnv)
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		// Only ever on loopback: profiles are no one else's business.
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return
	}
	go func() { _ = http.Serve(ln, nil) }()
}
