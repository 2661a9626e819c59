package remote

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSFiles(t *testing.T) {
	if (TLSFiles{}).Set() {
		t.Error("no settings: Set reports TLS on")
	}
	for _, f := range []TLSFiles{{CAFile: "ca.pem"}, {CertFile: "c.pem", KeyFile: "k.pem"}, {InsecureSkipVerify: true}} {
		if !f.Set() {
			t.Errorf("%+v: Set reports TLS off", f)
		}
	}

	cfg := &tls.Config{}
	if err := (TLSFiles{InsecureSkipVerify: true}).Apply(cfg); err != nil || !cfg.InsecureSkipVerify {
		t.Errorf("InsecureSkipVerify: err %v, applied %v", err, cfg.InsecureSkipVerify)
	}
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		files TLSFiles
		want  string
	}{
		{TLSFiles{CAFile: filepath.Join(dir, "missing.pem")}, "TLS CA file: open"},
		{TLSFiles{CAFile: notPEM}, "holds no PEM certificate"},
		{TLSFiles{CertFile: notPEM, KeyFile: notPEM}, "TLS client certificate"},
	} {
		err := c.files.Apply(&tls.Config{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Apply(%+v) = %v; want an error with %q", c.files, err, c.want)
		}
	}
}
