package main

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestFlagPlaceholdersAreWords: the word --help shows after each flag
// names its value (`--config file`, `--attr key=value`); it is never part
// of an example that a flag's usage quotes in backticks, which pflag takes
// for the name (as `--config http-addr: ":8080"` once did).
func TestFlagPlaceholdersAreWords(t *testing.T) {
	line := regexp.MustCompile(`^  (-[a-zA-Z], )?--[a-z0-9-]+( [A-Za-z0-9=,._-]+)?$`)
	checked := 0
	var visit func(*cobra.Command)
	visit = func(cmd *cobra.Command) {
		check := func(f *pflag.Flag) {
			var b bytes.Buffer
			writeFlag(&b, f)
			first, _, _ := strings.Cut(b.String(), "\n")
			checked++
			if !line.MatchString(first) {
				t.Errorf("%s --help: %q: the placeholder is not a word; quote examples in the usage with \" \", not backticks", cmd.CommandPath(), first)
			}
		}
		cmd.Flags().VisitAll(check)
		for _, sub := range cmd.Commands() {
			visit(sub)
		}
	}
	visit(newRoot(io.Discard, io.Discard))
	if checked < 50 {
		t.Fatalf("only %d flags checked", checked)
	}
	var b bytes.Buffer
	writeFlag(&b, &pflag.Flag{Name: "config", Usage: "YAML file of settings, e.g. `http-addr: \":8080\"`"})
	if first, _, _ := strings.Cut(b.String(), "\n"); line.MatchString(first) {
		t.Errorf("the check passes the rendering it exists to catch: %q", first)
	}
}
