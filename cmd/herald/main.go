// Command herald runs and talks to Herald, the gRPC-to-SSE bridge.
//
//	herald serve     run a Herald node
//	herald publish   publish one event over gRPC
//	herald tail      print the events of topics as they arrive over SSE
//	herald schemas   push, list and describe payload types
//	herald token     mint a development token
//
// Run "herald <command> --help" for each command's settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/heraldhq/herald/internal/config"
)

const usage = `Herald pushes typed events from backend services to browsers:
publishers call a gRPC (or REST) API with protobuf payloads, browsers
receive them as JSON Server-Sent Events.

Usage:
  herald serve [flags]     run a Herald node (HTTP :8080, gRPC :9090)
  herald publish [flags]   publish one event over gRPC
  herald tail [flags]      print events of topics as they arrive over SSE
  herald schemas push|list|get   manage the payload types Herald knows
  herald token [flags]     mint a development token

Run "herald <command> --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "publish":
		return publish(ctx, args, stdout, stderr)
	case "tail":
		return tail(ctx, args, stdout, stderr)
	case "schemas":
		return schemas(ctx, args, stdout, stderr)
	case "token":
		return token(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// newFlagSet returns a flag set whose --help lists, for every flag, its
// HERALD_* environment variable.
func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: herald %s [flags]\n\n%s\n\nFlags (each also settable as the environment variable shown", name, synopsis)
		if fs.Lookup(config.FileFlag) != nil {
			fmt.Fprint(out, ", or as a key of the --config YAML file; flags win over the environment, which wins over the file")
		}
		fmt.Fprint(out, "):\n")
		fs.VisitAll(func(f *flag.Flag) {
			typ, help := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  --%s %s\n", f.Name, typ)
			fmt.Fprintf(out, "        %s\n", help)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" {
				fmt.Fprintf(out, "        default: %s\n", f.DefValue)
			}
			if config.IsList(f) {
				fmt.Fprintf(out, "        env: %s (a comma-separated list)\n", config.EnvName(f.Name))
			} else {
				fmt.Fprintf(out, "        env: %s\n", config.EnvName(f.Name))
			}
		})
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	return config.Parse(fs, args, os.Getenv)
}

// regroup undoes the environment's split of a repeatable flag whose items
// are key=value with commas in the value (config.SplitList): an item without
// "=" continues the one before it.
func regroup(items []string) []string {
	var out []string
	for _, item := range items {
		if n := len(out); n > 0 && !strings.Contains(item, "=") {
			out[n-1] += "," + item
			continue
		}
		out = append(out, item)
	}
	return out
}
