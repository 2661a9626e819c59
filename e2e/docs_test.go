package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The docs that name tests as the proof of a promise (the threat model in
// docs/security.md, the SSE checklist, the reasons a shell block is not
// run) name tests that exist: a renamed or deleted test fails here, not
// silently in the docs.
func TestDocsNameTestsThatExist(t *testing.T) {
	funcs := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w+)\(`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			funcs[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The reasons a doc gives for a block that is not run (docs_blocks_test.go)
	// often name the test that covers it instead.
	blocks, err := readDocBlocks("..")
	if err != nil {
		t.Fatal(err)
	}
	inReason := regexp.MustCompile(`\b((?:Test|Fuzz|Benchmark)[A-Z]\w*)`)
	for _, b := range blocks {
		for _, m := range inReason.FindAllStringSubmatch(b.notRun, -1) {
			if !funcs[m[1]] {
				t.Errorf("%s: the reason it is not run names %s, which no test file declares", b, m[1])
			}
		}
	}
	named := regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z]\\w*)")
	for _, doc := range []string{"../docs/security.md", "../docs/sse-checklist.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllStringSubmatch(string(b), -1) {
			if !funcs[m[1]] {
				t.Errorf("%s names %s, which no test file declares", doc, m[1])
			}
		}
	}
}
