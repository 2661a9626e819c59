package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedCommandsParse: the herald commands that the README, docs/
// and the examples' READMEs print name commands and flags that exist; in
// code blocks, with the arguments the command takes, as a reader would
// paste them.
func TestDocumentedCommandsParse(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	examples, _ := filepath.Glob("../../examples/*/README.md")
	docs = append(append(docs, "../../README.md"), examples...)
	checked := 0
	for _, doc := range docs {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range documentedCommands(string(raw)) {
			checked++
			if err := checkCommand(c.words, c.inBlock); err != nil {
				t.Errorf("%s:%d: %s: %v", doc, c.line, strings.Join(c.words, " "), err)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d herald commands found in the docs", checked)
	}
}

// checkCommand parses a herald command line as herald would, without
// running it. For a command named in prose (not in a code block), only the
// command and the flags it names must exist.
func checkCommand(args []string, full bool) error {
	root := newRoot(io.Discard, io.Discard)
	if _, err := unknownCommand(root, args); err != nil {
		return err
	}
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	cmd.InitDefaultHelpFlag()
	if !full {
		for _, a := range rest {
			if name, ok := strings.CutPrefix(a, "--"); ok {
				name, _, _ = strings.Cut(name, "=")
				if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
					return flagError(cmd, &unknownFlag{name})
				}
			}
		}
		return nil
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return flagError(cmd, err)
	}
	if cmd.Args != nil {
		return cmd.Args(cmd, cmd.Flags().Args())
	}
	return nil
}

type unknownFlag struct{ name string }

func (e *unknownFlag) Error() string { return "unknown flag: --" + e.name }

type documentedCommand struct {
	words   []string
	line    int
	inBlock bool
}

// The ways the docs start a herald command: herald, bin/herald or go run
// ./cmd/herald, at the start of a word or of $(...).
var commandStart = regexp.MustCompile(`(?:^|[\s(])(?:go run \./cmd/herald|bin/herald|herald) `)

// documentedCommands finds the herald commands of a Markdown text: in its
// code blocks (a line ending in \ continues on the next) and its code
// spans. Commands with a ... placeholder are left out.
func documentedCommands(md string) []documentedCommand {
	var out []documentedCommand
	add := func(text string, line int, inBlock bool) {
		end := 0 // of the last command: a herald within it is an argument
		for _, loc := range commandStart.FindAllStringIndex(text, -1) {
			if loc[0] < end {
				continue
			}
			words, n, ok := shellWords(text[loc[1]:])
			end = loc[1] + n
			if !ok || len(words) == 0 || strings.Contains(strings.Join(words, " "), "...") {
				continue
			}
			// Only a command or a flag may follow: herald listening is
			// the name of a log line.
			if !strings.HasPrefix(words[0], "-") && !isCommand(words[0]) {
				continue
			}
			out = append(out, documentedCommand{words: words, line: line, inBlock: inBlock})
		}
	}
	lines := strings.Split(md, "\n")
	inBlock := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			start := i
			for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
				i++
				l = strings.TrimSuffix(l, "\\") + " " + lines[i]
			}
			add(l, start+1, true)
			continue
		}
		for _, span := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(l, -1) {
			add(span[1], i+1, false)
		}
	}
	return out
}

func isCommand(name string) bool {
	for _, c := range newRoot(io.Discard, io.Discard).Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// shellWords splits a command line as a shell would, up to the end of the
// command: a comment, a pipe, a redirection, ; or &&, or the ) of $(...).
// It knows quotes and backslashes, not expansions. n is the length of the
// command in s; ok is false for a quote left open.
func shellWords(s string) (words []string, n int, ok bool) {
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, len(s), false
			}
			w.WriteString(s[i+1 : i+1+j])
			inWord, i = true, i+1+j
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, len(s), false
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			flush()
		case strings.IndexByte("|;&<>)", c) >= 0, c == '#' && !inWord:
			flush()
			return words, i, true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, len(s), true
}
