// Package config fills a pflag.FlagSet from three layers, each overriding
// the one before: an optional YAML file, HERALD_* environment variables,
// and the command line. Every setting is a flag; the file's keys and the
// variables' names are derived from the flag names, so --help documents
// all three.
//
// The command line is parsed first, by whoever owns it (a cobra command,
// or Parse); Apply then fills the flags it left unset. That split lets a
// command parser that interleaves flags and arguments keep the layering.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable name.
const EnvPrefix = "HERALD_"

// FileFlag is the flag that names the YAML file.
const FileFlag = "config"

// EnvName returns the environment variable for a flag: "http-addr" →
// "HERALD_HTTP_ADDR".
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then applies the environment and the file
// (Apply).
func Parse(fs *pflag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return Apply(fs, getenv)
}

// Apply fills every flag of fs not set on the command line (not Changed:
// fs, or the flag set its flags come from, has been parsed, and nothing
// else has set them) from the environment, or
// else from the YAML file named by the "config" flag (when fs has one and
// it is set). A YAML key is a flag name; a value is written as on the
// command line (durations like "15s"; a list as a YAML sequence for a
// repeatable flag). A repeatable flag (StringList) takes a comma-separated
// list from one environment variable, since a variable cannot repeat.
func Apply(fs *pflag.FlagSet, getenv func(string) string) error {
	explicit := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { explicit[f.Name] = f.Changed })

	fromEnv := map[string]bool{}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if explicit[f.Name] {
			return
		}
		v := getenv(EnvName(f.Name))
		if v == "" {
			return
		}
		fromEnv[f.Name] = true
		items := []string{v}
		if IsList(f) {
			items = SplitList(v)
		}
		for _, item := range items {
			if err := set(fs, f.Name, item); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", EnvName(f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	file := fs.Lookup(FileFlag)
	if file == nil || file.Value.String() == "" {
		return nil
	}
	return applyFile(fs, file.Value.String(), func(name string) bool { return explicit[name] || fromEnv[name] })
}

func applyFile(fs *pflag.FlagSet, path string, skip func(string) bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(raw, &settings); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var errs []error
	for key, val := range settings {
		if fs.Lookup(key) == nil || key == FileFlag {
			errs = append(errs, fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of --help)", path, key))
			continue
		}
		if skip(key) {
			continue
		}
		values := []any{val}
		if list, ok := val.([]any); ok {
			values = list
		}
		for _, v := range values {
			if v == nil {
				continue
			}
			if err := set(fs, key, fmt.Sprint(v)); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %v", path, key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// set sets a flag as the command line would (so that it counts as
// changed), with the value's own error: the caller names the setting.
func set(fs *pflag.FlagSet, name, value string) error {
	err := fs.Set(name, value)
	if invalid := (*pflag.InvalidValueError)(nil); errors.As(err, &invalid) {
		return invalid.Unwrap()
	}
	return err
}

// StringList is a repeatable string flag. From the environment it takes a
// comma-separated list (SplitList); from the YAML file, a sequence. On the
// command line each use adds one item, commas included, like pflag's
// stringArray (whose type name it shares, so that shell completion offers
// the flag again).
type StringList []string

// IsList reports whether f is a repeatable flag.
func IsList(f *pflag.Flag) bool {
	v := f.Value
	if a, ok := v.(*alias); ok {
		v = a.Value
	}
	_, ok := v.(*StringList)
	return ok
}

// Alias defines old as another name of the flag current (which must be
// defined), on the command line, as an environment variable and as a YAML
// key, so that a renamed setting keeps working. Setting old sets *used,
// for the caller to warn.
func Alias(fs *pflag.FlagSet, old, current string, used *bool) {
	cur := fs.Lookup(current)
	fs.Var(&alias{Value: cur.Value, used: used}, old, "deprecated name of --"+current)
	fs.Lookup(old).NoOptDefVal = cur.NoOptDefVal
}

type alias struct {
	pflag.Value
	used *bool
}

func (a *alias) Set(v string) error {
	*a.used = true
	return a.Value.Set(v)
}

// SplitList splits an environment variable's value for a repeatable flag
// into its items: at commas, without the spaces around each item, skipping
// empty ones. An item cannot hold a comma; a flag whose items may (key=value
// pairs) must accept them split.
func SplitList(v string) []string {
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set appends v.
func (l *StringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// Type is the name pflag and cobra know a repeatable string flag by.
func (l *StringList) Type() string { return "stringArray" }
