package broker_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTheContractStandsAlone: the contract, the memory backend and the
// auth contract depend on the standard library, protobuf and each other
// only, so that a backend author reads the contract without the server,
// and the embedded broker builds without gRPC, the gateway or Prometheus.
func TestTheContractStandsAlone(t *testing.T) {
	const module = "github.com/heraldhq/herald/"
	pkgs := []string{module + "internal/broker", module + "internal/broker/memory", module + "internal/auth"}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{module + "internal/broker", module + "internal/auth", "google.golang.org/protobuf/"}
	for dep := range strings.FieldsSeq(string(out)) {
		ok := false
		for _, prefix := range allowed {
			ok = ok || strings.HasPrefix(dep, prefix)
		}
		if !ok {
			t.Errorf("%s is among the dependencies of %v; the contract must need only the standard library and protobuf", dep, pkgs)
		}
	}
}
