package apidoc

import (
	"runtime/debug"
	"sync"
)

// modulePath is Herald's module, whose version the document states even
// when Herald is built into another program.
const modulePath = "github.com/heraldhq/herald"

var version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(bi)
})

// Version is the version of the running Herald build, as the document's
// info.version states it: the Herald module's version (a release tag, or
// the pseudo-version the go command stamps from the repository), else the
// VCS revision the binary was built from, else "devel".
func Version() string { return version() }

func versionOf(bi *debug.BuildInfo) string {
	mod := &bi.Main
	if mod.Path != modulePath {
		mod = nil
		for _, dep := range bi.Deps {
			if dep.Path == modulePath {
				mod = dep
				if dep.Replace != nil {
					mod = dep.Replace
				}
				break
			}
		}
	}
	if mod != nil && mod.Version != "" && mod.Version != "(devel)" {
		return mod.Version
	}
	// The VCS settings describe the main module's repository: Herald's
	// only when Herald is the main module.
	if mod == &bi.Main {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified == "true" {
				rev += "+dirty"
			}
			return rev
		}
	}
	return "devel"
}
