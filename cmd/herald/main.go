// Command herald runs and talks to Herald, the gRPC-to-SSE bridge.
//
//	herald serve       run a Herald node
//	herald publish     publish one event over gRPC
//	herald tail        print the events of topics as they arrive over SSE
//	herald schemas     push, list and describe payload types
//	herald token       mint a development token
//	herald version     print the version, VCS revision and Go version
//	herald completion  print a shell completion script (bash, zsh, fish, powershell)
//
// Flags are GNU-style (--server, --topic=x) and may come anywhere after the
// command; every flag may also be set as a HERALD_* environment variable,
// and those of serve in a YAML file (--config). Run "herald <command>
// --help" for each command's flags.
//
// Results go to stdout and notes to stderr, so that ID=$(herald publish
// ...) captures the id alone. The exit status is 0 on success, 1 when the
// command failed or the server refused it, and 2 for a usage error: an
// unknown command or flag, a bad argument or setting (exitOK, exitFailed,
// exitUsage).
//
// Install it with make install (go install ./cmd/herald), or run it as go
// run ./cmd/herald, or as bin/herald after make build.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
