package javaexample

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// aptInstalls returns the package lists of the `apt-get install` commands
// in text, one per command, sorted. A command may run over lines ending in
// a backslash, and in a shell comment ("#   apt-get install ..."); options
// are not packages.
func aptInstalls(text string) [][]string {
	var all [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "#"))
		if !in {
			i := strings.Index(line, "apt-get install")
			if i < 0 {
				continue
			}
			line, in, cur = line[i+len("apt-get install"):], true, nil
		}
		more := strings.HasSuffix(line, `\`)
		for _, f := range strings.Fields(strings.TrimSuffix(line, `\`)) {
			if !strings.HasPrefix(f, "-") {
				cur = append(cur, f)
			}
		}
		if !more {
			slices.Sort(cur)
			all = append(all, cur)
			in = false
		}
	}
	return all
}

// The README, build.sh and CI must name the same packages: a newcomer
// follows the README, build.sh's header is what someone reading the script
// follows, and CI is what the test runs with.
func TestPackageListsAgree(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	one := func(where string, lists [][]string) []string {
		t.Helper()
		if len(lists) != 1 {
			t.Fatalf("%s: %d apt-get install commands for the Java toolchain, want 1: %q", where, len(lists), lists)
		}
		return lists[0]
	}
	readme := one("README.md", aptInstalls(read("README.md")))
	build := one("build.sh", aptInstalls(read("build.sh")))
	var ci [][]string
	for _, l := range aptInstalls(read("../../.ci/run")) {
		if slices.Contains(l, "default-jdk-headless") {
			ci = append(ci, l)
		}
	}
	ciList := one(".ci/run (the command installing default-jdk-headless)", ci)
	if !slices.Equal(readme, ciList) {
		t.Errorf("README.md installs %q;\n.ci/run installs %q", readme, ciList)
	}
	if !slices.Equal(build, readme) {
		t.Errorf("build.sh's header installs %q;\nREADME.md installs %q", build, readme)
	}
}
