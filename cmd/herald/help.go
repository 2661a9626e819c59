package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/internal/config"
)

// writeHelp writes cmd's --help: what it does, then its usage.
func writeHelp(w io.Writer, cmd *cobra.Command) {
	text := cmd.Long
	if text == "" {
		text = cmd.Short
	}
	fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(text))
	writeUsage(w, cmd)
}

// writeUsage lists cmd's subcommands and flags; each setting with its
// HERALD_* variable, since a flag's name is all the help says of the
// variable and the YAML key.
func writeUsage(w io.Writer, cmd *cobra.Command) {
	fmt.Fprintln(w, "Usage:")
	group := cmd.HasAvailableSubCommands()
	if group {
		fmt.Fprintf(w, "  %s <command> [flags]\n", cmd.CommandPath())
		fmt.Fprintln(w, "\nCommands:")
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() || sub.Name() == "help" {
				fmt.Fprintf(w, "  %-*s %s\n", cmd.NamePadding(), sub.Name(), sub.Short)
			}
		}
	} else {
		fmt.Fprintf(w, "  %s\n", cmd.UseLine())
	}

	settings := settingsOf(cmd)
	var others []*pflag.Flag
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if !isSetting(f) && !f.Hidden {
				others = append(others, f)
			}
		})
	}
	if settings.HasFlags() {
		fmt.Fprint(w, "\nFlags (each also settable as the environment variable shown")
		if settings.Lookup(config.FileFlag) != nil {
			fmt.Fprint(w, ", or as a key of the --config YAML file; flags win over the environment, which wins over the file")
		}
		fmt.Fprintln(w, "):")
		settings.VisitAll(func(f *pflag.Flag) {
			writeFlag(w, f)
			if config.IsList(f) {
				fmt.Fprintf(w, "        env: %s (a comma-separated list)\n", config.EnvName(f.Name))
			} else {
				fmt.Fprintf(w, "        env: %s\n", config.EnvName(f.Name))
			}
		})
		if len(others) > 0 {
			fmt.Fprintln(w)
		}
	} else if len(others) > 0 {
		fmt.Fprintln(w, "\nFlags:")
	}
	for _, f := range others {
		writeFlag(w, f)
	}
	if cmd.Root() == cmd {
		fmt.Fprintf(w, "\n%s\n", rootFooter)
	}
	if group {
		fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", cmd.CommandPath())
	}
}

// writeFlag writes a flag's name, the kind of value it takes, its help
// and its default, in the layout of Go's flag package, which the help had
// before (and herald-bench reads: a line per flag starting with its name).
func writeFlag(w io.Writer, f *pflag.Flag) {
	typ, help := pflag.UnquoteUsage(f)
	if config.IsList(f) && !strings.Contains(f.Usage, "`") {
		typ = "string"
	}
	name := "--" + f.Name
	if f.Shorthand != "" {
		name = "-" + f.Shorthand + ", " + name
	}
	if typ != "" {
		name += " " + typ
	}
	fmt.Fprintf(w, "  %s\n        %s\n", name, help)
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
	default:
		fmt.Fprintf(w, "        default: %s\n", f.DefValue)
	}
}
