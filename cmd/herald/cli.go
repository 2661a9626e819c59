package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/internal/config"
)

// The exit statuses, documented in herald --help and the README.
const (
	exitOK     = 0
	exitFailed = 1 // the command failed, or the server refused it
	exitUsage  = 2 // an unknown command or flag, a bad argument or setting
)

const rootLong = `Herald pushes typed events from backend services to browsers:
publishers call a gRPC (or REST) API with protobuf payloads, browsers
receive them as JSON Server-Sent Events.`

const rootFooter = `Flags take two dashes and may come anywhere after the command, e.g.
herald publish --topic orders.eu --type google.protobuf.Empty. Every flag may
also be set as an environment variable: HERALD_ and the flag's name in capitals,
with _ for - (--server: HERALD_SERVER); herald serve also reads a YAML file
(--config). Flags win over the environment, which wins over the file.

Results go to stdout, notes and errors to stderr.

Exit status:
  0  success
  1  the command failed, or the server refused it
  2  usage error: an unknown command or flag, a bad argument or setting`

// execute runs the herald command line args and returns the exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	args = longFlagsWithOneDash(root, args)
	cmd, err := unknownCommand(root, args)
	if err == nil {
		root.SetArgs(args)
		cmd, err = root.ExecuteContextC(ctx)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "herald:", err)
	if errors.As(err, new(*usageError)) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitFailed
}

// newRoot returns the command tree, writing results to stdout and notes to
// stderr.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "herald",
		Short:   "Herald pushes typed events from backend services to browsers",
		Long:    rootLong,
		Version: buildVersion().String(),
		// Errors are printed once, by execute, with a one-line hint
		// instead of the usage.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { writeHelp(c.OutOrStdout(), c) })
	root.SetUsageFunc(func(c *cobra.Command) error { writeUsage(c.ErrOrStderr(), c); return nil })
	root.SetFlagErrorFunc(flagError)
	root.SetVersionTemplate("{{.Version}}")
	root.Flags().BoolP("version", "v", false, "print the version (as herald version does)")
	root.AddCommand(newServeCmd(), newPublishCmd(), newTailCmd(), newSchemasCmd(), newTokenCmd(), newRevokeCmd(), newHealthCmd(), newVersionCmd())
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return applySettings(cmd) }
	// What cobra would add when executing, added now so that the checks
	// below see the whole tree.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	visit(root, func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		if c.Args != nil {
			c.Args = usageArgs(c.Args)
		}
	})
	return root
}

func visit(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		visit(sub, fn)
	}
}

// A usageError is a mistake in the command line or the settings: exit
// status 2, and a hint to --help.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error of cmd, prefixed with its name under herald
// like every error of a subcommand ("publish: ...").
func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{fmt.Errorf("%s"+format, append([]any{prefix(cmd)}, args...)...)}
}

// asUsage marks err, already prefixed with the command, as a usage error.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err}
}

// prefix is "publish: " for herald publish, "" for herald itself.
func prefix(cmd *cobra.Command) string {
	path := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name())
	if path = strings.TrimSpace(path); path == "" {
		return ""
	}
	return path + ": "
}

func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		err := check(cmd, args)
		if err != nil && !errors.As(err, new(*usageError)) {
			return usagef(cmd, "%v", err)
		}
		return err
	}
}

// noArgs refuses arguments, which a command without positional
// arguments would otherwise ignore (publish ... stray-word published).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "unexpected argument %q (%s takes flags only)", args[0], cmd.CommandPath())
	}
	return nil
}

// exactArgs wants n arguments, described by what ("a message type").
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usagef(cmd, "name %s", what)
		case len(args) > n:
			return usagef(cmd, "unexpected argument %q (want %s only)", args[n], what)
		}
		return nil
	}
}

// minArgs wants at least n arguments, described by what.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef(cmd, "name %s", what)
		}
		return nil
	}
}

// unknownCommand returns a usage error, and the command to ask --help of,
// when args name a subcommand that does not exist. It runs before cobra
// parses flags, so that "herald pubish --topic x" is told about the
// command rather than the flag.
func unknownCommand(root *cobra.Command, args []string) (*cobra.Command, error) {
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		return root, nil // the shell asking what to complete: errors are cobra's to report
	}
	cmd, rest, _ := root.Find(args)
	if !cmd.HasAvailableSubCommands() {
		return cmd, nil
	}
	name := firstArgument(cmd, rest)
	if name == "" || name == "help" {
		return cmd, nil
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return cmd, usagef(cmd, "%s", msg)
}

// firstArgument is the first argument in args that is neither a flag nor
// a flag's value, as cobra finds subcommands.
func firstArgument(cmd *cobra.Command, args []string) string {
	takesValue := func(name string) bool {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			f = cmd.InheritedFlags().Lookup(name)
		}
		return f == nil || f.NoOptDefVal == ""
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case strings.HasPrefix(a, "--") && !strings.Contains(a, "="):
			if takesValue(a[2:]) {
				i++
			}
		case len(a) == 2 && a[0] == '-':
			if f := cmd.Flags().ShorthandLookup(a[1:]); f == nil || f.NoOptDefVal == "" {
				i++
			}
		case !strings.HasPrefix(a, "-"):
			return a
		}
	}
	return ""
}

// flagError makes a flag's parse error a usage error, with the flag the
// user may have meant.
func flagError(cmd *cobra.Command, err error) error {
	var missing *pflag.NotExistError
	if errors.As(err, &missing) {
		typed := missing.GetSpecifiedName()
		if s := missing.GetSpecifiedShortnames(); s != "" {
			typed = s // -server: the long name given one dash
		}
		if s := suggestFlags(cmd, typed); len(s) > 0 {
			return usagef(cmd, "%v (did you mean --%s?)", err, strings.Join(s, " or --"))
		}
	}
	return usagef(cmd, "%v", err)
}

// suggestFlags returns the names of cmd's flags close to typed: at most
// two edits away, or starting with it.
func suggestFlags(cmd *cobra.Command, typed string) []string {
	typed = strings.TrimLeft(typed, "-")
	if i := strings.IndexByte(typed, '='); i >= 0 {
		typed = typed[:i]
	}
	var out []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Deprecated != "" {
			return
		}
		if editDistance(strings.ToLower(typed), f.Name) <= 2 || (len(typed) >= 3 && strings.HasPrefix(f.Name, typed)) {
			out = append(out, f.Name)
		}
	})
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// longFlagsWithOneDash rewrites -name and -name=value to --name and
// --name=value when name is a long flag of some command: the flag package
// of earlier versions took both forms, and scripts written for them keep
// working. One-letter flags (-h, -v) are left to pflag.
func longFlagsWithOneDash(root *cobra.Command, args []string) []string {
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		return args
	}
	names := map[string]bool{"help": true, "version": true}
	visit(root, func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		}
	})
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		if name, _, _ := strings.Cut(a[1:], "="); len(name) > 1 && names[name] {
			out[i] = "-" + a
		}
	}
	return out
}

// settingAnnotation marks the flags that are settings: given on the
// command line, as HERALD_* variables or (serve) in the YAML file. Cobra's
// own flags (--help, completion's) are not.
const settingAnnotation = "herald_setting"

// markSettings marks every flag cmd defines so far as a setting.
func markSettings(cmd *cobra.Command) {
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Annotations == nil {
				f.Annotations = map[string][]string{}
			}
			f.Annotations[settingAnnotation] = []string{"true"}
		})
	}
}

func isSetting(f *pflag.Flag) bool { _, ok := f.Annotations[settingAnnotation]; return ok }

// settingsOf returns cmd's settings, inherited ones included, as a flag
// set of their own: setting one sets cmd's flag.
func settingsOf(cmd *cobra.Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd.CommandPath(), pflag.ContinueOnError)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if isSetting(f) {
			fs.AddFlag(f)
		}
	})
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
		if isSetting(f) && fs.Lookup(f.Name) == nil {
			fs.AddFlag(f)
		}
	})
	return fs
}

// applySettings fills the settings of cmd that its command line left
// unset from the environment and, for serve, the --config file.
func applySettings(cmd *cobra.Command) error {
	if err := config.Apply(settingsOf(cmd), os.Getenv); err != nil {
		return usagef(cmd, "%v", err)
	}
	return nil
}
