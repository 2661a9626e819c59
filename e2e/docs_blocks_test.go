package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// This file reads the shell blocks of the docs for TestDocsShellBlocks:
// which blocks there are, how they are marked, the commands in each and
// what the doc says each command prints.
//
// The markers, HTML comments on the line right before a block's fence
// (invisible on a rendered page):
//
//	<!-- not run: REASON -->       the block is not run; REASON says why
//	<!-- run: CLAUSE; CLAUSE -->   how to run it; each CLAUSE is one of
//	    after the block above      in the session of the file's previous shell block
//	    after CMD                  in a new session that first runs CMD, a command
//	                               that a shell block of the same file shows
//	    in DIR                     a new session starts in DIR (default: the repository root)
//	    needs PROG, PROG           skipped, loudly, where PROG is not installed
//	    without herald             a new session without the test's herald on PATH:
//	                               the blocks must install or build their own
//
// A block without a marker runs in a session of its own. So a new block
// runs unless its author says why not: nothing drifts silently.
//
// What a command prints, as the docs show it:
//   - a block without a language right after the shell block: the output of
//     its last command;
//   - a comment line right after a command that starts with `{` or `[`, or
//     `# prints ..., e.g. EXAMPLE`: the output (EXAMPLE) of that command;
//   - a comment on the command's own line that is a number (`# 404`);
//   - a comment on the command's own line that starts with `refused`: the
//     command must fail, and if the comment goes on `refused: REASON`, its
//     message must contain the words of REASON (those of four letters or
//     more), so that it fails for the reason the doc gives.
//
// Shown output is a shape, not a transcript: each shown line must match a
// line of the output, in order, where `...` stands for anything, a JSON
// string value for any string and an event id for any event id.

// docBlock is one shell block of a doc.
type docBlock struct {
	file   string // relative to the repository root
	line   int    // of the opening fence
	text   string
	output string // the block without a language right after it, if any
	notRun string // the reason, for a block marked not run

	continues bool     // after the block above
	after     string   // a command to run first, in a new session
	dir       string   // where a new session starts, relative to the root
	needs     []string // programs the session needs
	noHerald  bool     // the session has no herald on PATH but its own
}

func (b *docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// docCommand is one command of a block, as written.
type docCommand struct {
	text     string   // verbatim, continuation lines and all
	comment  string   // the comment on its own line, if any
	words    []string // its literal words (a non-literal word is "")
	expect   string   // the output the doc shows for it, or ""
	describe string   // `# prints ...` without an example: it prints something
	refused  bool
	why      string // the reason a refused command is refused, if the doc says
}

// shellLangs are the info strings of the blocks that are run;
// otherShellLangs are refused, so that no shell block escapes the test.
var (
	shellLangs      = []string{"sh", "bash", "shell"}
	otherShellLangs = []string{"console", "shell-session", "zsh", "shellsession"}
)

// docFiles lists the docs whose shell blocks are run, relative to root:
// README.md, docs/*.md and every README.md under examples/.
func docFiles(root string) ([]string, error) {
	files := []string{"README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		files = append(files, filepath.Join("docs", filepath.Base(d)))
	}
	err = filepath.WalkDir(filepath.Join(root, "examples"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.Name() == "README.md" {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}

var (
	markerRE = regexp.MustCompile(`^<!--\s*(not run|run)\s*:\s*(.*?)\s*-->$`)
	fenceRE  = regexp.MustCompile("^\\s*(```+|~~~+)\\s*([^`\\s]*)")
)

// parseDocBlocks returns the shell blocks of a markdown document, with
// their markers. A marker that is malformed or not followed by a shell
// block is an error.
func parseDocBlocks(file, md string) ([]*docBlock, error) {
	lines := strings.Split(md, "\n")
	var blocks []*docBlock
	var last *docBlock // the latest shell block, while only blank lines follow it
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " \t\r")
		if m := markerRE.FindStringSubmatch(line); m != nil {
			j := i + 1
			f := fenceRE.FindStringSubmatch(lineAt(lines, j))
			if f == nil || !slices.Contains(shellLangs, f[2]) {
				return nil, fmt.Errorf("%s:%d: %q is not right before a shell block's fence", file, i+1, line)
			}
			last = nil
			continue
		}
		f := fenceRE.FindStringSubmatch(line)
		if f == nil {
			if strings.HasPrefix(line, "<!--") && strings.Contains(line, "run") {
				return nil, fmt.Errorf("%s:%d: %q: a marker reads <!-- not run: REASON --> or <!-- run: CLAUSE -->", file, i+1, line)
			}
			if line != "" {
				last = nil
			}
			continue
		}
		if slices.Contains(otherShellLangs, f[2]) {
			return nil, fmt.Errorf("%s:%d: a %s block: write commands in an sh block (and output in a block without a language after it), so that they are run", file, i+1, f[2])
		}
		start := i
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), f[1]); i++ {
			body = append(body, lines[i])
		}
		text := strings.Join(body, "\n") + "\n"
		switch {
		case slices.Contains(shellLangs, f[2]):
			b := &docBlock{file: file, line: start + 1, text: text}
			if err := b.mark(strings.TrimSpace(lineAt(lines, start-1))); err != nil {
				return nil, fmt.Errorf("%s: %v", b, err)
			}
			blocks = append(blocks, b)
			last = b
		case f[2] == "" && last != nil:
			last.output = text
			last = nil
		default:
			last = nil
		}
	}
	return blocks, nil
}

func lineAt(lines []string, i int) string {
	if i < 0 || i >= len(lines) {
		return ""
	}
	return lines[i]
}

// mark reads the marker on the line before b's fence, if any.
func (b *docBlock) mark(prev string) error {
	m := markerRE.FindStringSubmatch(prev)
	if m == nil {
		return nil
	}
	if m[1] == "not run" {
		if m[2] == "" {
			return fmt.Errorf("<!-- not run: --> needs a reason")
		}
		b.notRun = m[2]
		return nil
	}
	for clause := range strings.SplitSeq(m[2], ";") {
		clause = strings.TrimSpace(clause)
		switch {
		case clause == "after the block above":
			b.continues = true
		case strings.HasPrefix(clause, "after "):
			b.after = strings.TrimPrefix(clause, "after ")
		case strings.HasPrefix(clause, "in "):
			b.dir = strings.TrimPrefix(clause, "in ")
		case clause == "without herald":
			b.noHerald = true
		case strings.HasPrefix(clause, "needs "):
			for p := range strings.SplitSeq(strings.TrimPrefix(clause, "needs "), ",") {
				b.needs = append(b.needs, strings.TrimSpace(p))
			}
		default:
			return fmt.Errorf("unknown run clause %q (after the block above, after CMD, in DIR, needs PROG, without herald)", clause)
		}
	}
	if b.continues && (b.after != "" || b.dir != "" || len(b.needs) > 0 || b.noHerald) {
		return fmt.Errorf("a block run after the block above takes no other clause")
	}
	return nil
}

// docSession is a sequence of blocks run in one network namespace, by one
// shell's state, in one copy of the repository.
type docSession struct {
	blocks []*docBlock
}

func (s *docSession) name() string { return s.blocks[0].String() }

// docSessions groups the blocks that are run into sessions and returns
// them with the blocks that are not run.
func docSessions(blocks []*docBlock) (sessions []*docSession, notRun []*docBlock, err error) {
	var prev *docBlock // the previous shell block of the same file
	for _, b := range blocks {
		if prev != nil && prev.file != b.file {
			prev = nil
		}
		if _, err := parseCommands(b.text); err != nil { // run or not, a block is shell
			return nil, nil, fmt.Errorf("%s: %v", b, err)
		}
		switch {
		case b.notRun != "":
			notRun = append(notRun, b)
		case b.continues:
			if prev == nil || prev.notRun != "" {
				return nil, nil, fmt.Errorf("%s: runs after the block above, but no run block is right above it", b)
			}
			s := sessions[len(sessions)-1]
			s.blocks = append(s.blocks, b)
		default:
			sessions = append(sessions, &docSession{blocks: []*docBlock{b}})
		}
		prev = b
	}
	// A command to run first must be one that the same file shows.
	for _, s := range sessions {
		b := s.blocks[0]
		if b.after == "" {
			continue
		}
		found := false
		for _, o := range blocks {
			if o.file != b.file {
				continue
			}
			cmds, err := parseCommands(o.text)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %v", o, err)
			}
			for _, c := range cmds {
				found = found || c.text == b.after
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("%s: runs after %q, which no shell block of %s shows", b, b.after, b.file)
		}
	}
	return sessions, notRun, nil
}

// parseCommands splits a block into its commands, each verbatim, with
// what the comments around it say it prints.
func parseCommands(text string) ([]docCommand, error) {
	f, err := syntax.NewParser(syntax.KeepComments(true), syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(text), "")
	if err != nil {
		return nil, err
	}
	var cmds []docCommand
	for i, st := range f.Stmts {
		start, end := int(st.Pos().Offset()), int(st.End().Offset())
		next := len(text)
		if i+1 < len(f.Stmts) {
			next = int(f.Stmts[i+1].Pos().Offset())
		}
		c := docCommand{text: text[start:end]}
		cmd := st.Cmd
		for {
			bin, ok := cmd.(*syntax.BinaryCmd) // a pipeline, &&, ||: its first command
			if !ok {
				break
			}
			cmd = bin.X.Cmd
		}
		if call, ok := cmd.(*syntax.CallExpr); ok {
			for _, w := range call.Args {
				c.words = append(c.words, w.Lit())
			}
		}
		// The comments between this command and the next.
		gap := strings.Split(text[end:next], "\n")
		if trailing, ok := strings.CutPrefix(strings.TrimSpace(gap[0]), "#"); ok {
			trailing = strings.TrimSpace(trailing)
			c.comment = trailing
			switch {
			case strings.HasPrefix(trailing, "refused"):
				c.refused = true
				if _, why, ok := strings.Cut(trailing, ":"); ok {
					c.why = strings.TrimSpace(why)
				}
			case regexp.MustCompile(`^\d+$`).MatchString(trailing):
				c.expect = trailing
			}
		}
		if len(gap) > 1 {
			if note, ok := strings.CutPrefix(strings.TrimSpace(gap[1]), "#"); ok {
				note = strings.TrimSpace(note)
				switch {
				case strings.HasPrefix(note, "{") || strings.HasPrefix(note, "["):
					c.expect = note
				case strings.HasPrefix(note, "prints "):
					if _, eg, ok := strings.Cut(note, "e.g. "); ok {
						c.expect = eg
					} else {
						c.describe = note
					}
				}
			}
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

// program is the command's program and subcommand, past variable
// assignments: "herald serve", "make run", "curl".
func (c *docCommand) program() string {
	w := c.words
	if len(w) == 0 {
		return ""
	}
	if len(w) > 1 && !strings.HasPrefix(w[1], "-") {
		return w[0] + " " + w[1]
	}
	return w[0]
}

// isServer: the command serves until stopped. It is started in the
// background, and the session goes on once it listens on its ports.
func (c *docCommand) isServer() bool {
	switch c.program() {
	case "herald serve", "make run", "npm start":
		return !c.refused
	}
	return false
}

// isStream: the command prints a stream until stopped (curl -N, herald
// tail). It is started in the background and stopped once it has printed
// what the doc shows.
func (c *docCommand) isStream() bool {
	if c.program() == "herald tail" {
		return true
	}
	return len(c.words) > 0 && c.words[0] == "curl" && (slices.Contains(c.words, "-N") || slices.Contains(c.words, "--no-buffer"))
}

var portRE = regexp.MustCompile(`:(\d{2,5})\b`)

// ports are the TCP ports a server listens on once ready: those of its
// address flags (--*-addr) and of the URLs its comment names, and Herald's
// defaults (HTTP 8080, gRPC 9090) where it does not set them.
func (c *docCommand) ports() []string {
	var ports []string
	for i, w := range c.words {
		if strings.HasPrefix(w, "--") && strings.HasSuffix(w, "-addr") && i+1 < len(c.words) {
			w = c.words[i+1]
		} else if name, addr, ok := strings.Cut(w, "="); ok && strings.HasSuffix(name, "-addr") {
			w = addr
		} else {
			continue
		}
		if m := portRE.FindStringSubmatch(w); m != nil {
			ports = append(ports, m[1])
		}
	}
	for _, m := range regexp.MustCompile(`https?://[^/\s:]+:(\d+)`).FindAllStringSubmatch(c.comment, -1) {
		ports = append(ports, m[1])
	}
	if p := c.program(); p == "herald serve" || p == "make run" {
		if !strings.Contains(c.text, "--http-addr") {
			ports = append(ports, "8080")
		}
		if !strings.Contains(c.text, "--grpc-addr") {
			ports = append(ports, "9090")
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

var (
	eventIDRE   = regexp.MustCompile(`\b[0-9a-z]{6,}-\d+\b`)
	jsonValueRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"(\s*:)?`)
)

// shapeRE turns a line of shown output into the pattern an output line must
// match: `...` is anything, a JSON string value any string, an event id any
// event id; the rest is literal.
func shapeRE(shown string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	rest := strings.TrimSpace(shown)
	for rest != "" {
		ell := strings.Index(rest, "...")
		str := jsonValueRE.FindStringSubmatchIndex(rest)
		id := eventIDRE.FindStringIndex(rest)
		next, kind := len(rest), ""
		if ell >= 0 && ell < next {
			next, kind = ell, "..."
		}
		if str != nil && str[0] < next {
			next, kind = str[0], "str"
		}
		if id != nil && id[0] < next {
			next, kind = id[0], "id"
		}
		b.WriteString(regexp.QuoteMeta(rest[:next]))
		switch kind {
		case "...":
			b.WriteString(".*")
			rest = rest[next+3:]
		case "str":
			if str[2] >= 0 { // a key: literal
				b.WriteString(regexp.QuoteMeta(rest[str[0]:str[1]]))
			} else {
				b.WriteString(`"(?:[^"\\]|\\.)*"`)
			}
			rest = rest[str[1]:]
		case "id":
			b.WriteString(eventIDRE.String())
			rest = rest[id[1]:]
		default:
			rest = ""
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// matchShown reports whether output shows every line of shown, in order.
// On a mismatch it names the first shown line not found.
func matchShown(shown, output string) (bool, string) {
	out := strings.Split(output, "\n")
	for line := range strings.SplitSeq(strings.TrimSpace(shown), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		re := shapeRE(line)
		for {
			if len(out) == 0 {
				return false, line
			}
			o := strings.TrimSpace(out[0])
			out = out[1:]
			if re.MatchString(o) {
				break
			}
		}
	}
	return true, ""
}

// sseLineRE is a line that an event stream starts with.
var sseLineRE = regexp.MustCompile(`^(retry|id|event|data): |^:`)

func readDocBlocks(root string) ([]*docBlock, error) {
	files, err := docFiles(root)
	if err != nil {
		return nil, err
	}
	var all []*docBlock
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		blocks, err := parseDocBlocks(f, string(raw))
		if err != nil {
			return nil, err
		}
		all = append(all, blocks...)
	}
	return all, nil
}

// explains reports whether a refusal's message gives the doc's reason for
// it: every word of four letters or more of why, in any case.
func explains(message, why string) bool {
	message = strings.ToLower(message)
	for _, w := range regexp.MustCompile(`[A-Za-z0-9-]{4,}`).FindAllString(why, -1) {
		if !strings.Contains(message, strings.ToLower(w)) {
			return false
		}
	}
	return true
}
