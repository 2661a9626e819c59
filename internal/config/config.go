// Package config fills a flag.FlagSet from three layers, each overriding
// the one before: an optional YAML file, HERALD_* environment variables,
// and the command line. Every setting is a flag; the file's keys and the
// variables' names are derived from the flag names, so --help documents
// all three.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

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

// Parse parses args into fs, then fills every flag not given on the command
// line from the environment, or else from the YAML file named by the
// "config" flag (when fs has one and it is set). A YAML key is a flag name;
// a value is written as on the command line (durations like "15s"; a list
// as a YAML sequence for a repeatable flag). A repeatable flag (StringList)
// takes a comma-separated list from one environment variable, since a
// variable cannot repeat.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	fromEnv := map[string]bool{}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
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
			if err := fs.Set(f.Name, item); err != nil {
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

func applyFile(fs *flag.FlagSet, path string, skip func(string) bool) error {
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
		f := fs.Lookup(key)
		if f == nil || key == FileFlag {
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
			if err := fs.Set(key, fmt.Sprint(v)); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %v", path, key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// StringList is a repeatable string flag. From the environment it takes a
// comma-separated list (SplitList); from the YAML file, a sequence.
type StringList []string

// IsList reports whether f is a repeatable flag.
func IsList(f *flag.Flag) bool {
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
func Alias(fs *flag.FlagSet, old, current string, used *bool) {
	fs.Var(&alias{Value: fs.Lookup(current).Value, used: used}, old, "deprecated name of --"+current)
}

type alias struct {
	flag.Value
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
