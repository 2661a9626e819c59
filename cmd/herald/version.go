package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// unknown stands for what the build did not record: the VCS fields are
// missing from builds outside a checkout or with -buildvcs=false (which
// GOFLAGS may hold).
const unknown = "unknown"

// releaseVersion and releaseRevision, when set at link time (make image:
// -ldflags "-X main.releaseVersion=v1.2.3 -X main.releaseRevision=..."),
// are printed instead of the module's version, which a build of a
// checkout knows only as a pseudo-version, and instead of a VCS revision
// the build did not record (GOFLAGS=-buildvcs=false, a git worktree).
var releaseVersion, releaseRevision string

// version is what a build of herald knows of itself.
type version struct {
	module, revision, time, goVersion string
	modified                          bool
}

// buildVersion reads the version from the binary's build information.
func buildVersion() version {
	v := version{module: unknown, revision: unknown, time: unknown, goVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v.module = info.Main.Version // (devel) for a build of a checkout
	}
	if releaseVersion != "" {
		v.module = releaseVersion
	}
	if releaseRevision != "" {
		v.revision = releaseRevision
	}
	v.goVersion = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.revision = s.Value
		case "vcs.time":
			v.time = s.Value
		case "vcs.modified":
			v.modified = s.Value == "true"
		}
	}
	return v
}

func (v version) String() string {
	rev := v.revision
	if v.modified {
		rev += " (with uncommitted changes)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "herald %s\n", v.module)
	fmt.Fprintf(&b, "  revision: %s\n", rev)
	fmt.Fprintf(&b, "  time:     %s\n", v.time)
	fmt.Fprintf(&b, "  go:       %s %s/%s\n", v.goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and time, and Go version",
		Long: `Prints herald's module version, the VCS revision and commit time it was
built from, and the Go version that built it, from the binary's build
information. A build outside a git checkout, or with -buildvcs=false, has
no revision or time: they print as "unknown".`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), buildVersion())
			return err
		},
	}
}
