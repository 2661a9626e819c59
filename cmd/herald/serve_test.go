package main

import (
	"io"
	"strings"
	"testing"
)

func TestServeValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--dev"}, ""},
		{[]string{"--auth-jwks-file", "keys.json", "--grpc-client-cert-topics", "billing=orders.>,invoices.>"}, ""},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, `--log-format: want text or json, got "xml"`},
		{[]string{"--retention-events", "0"}, "--max-event-bytes, --retention-events and --queue-size must be positive"},
		{[]string{"--heartbeat", "0s"}, "--heartbeat must be positive, got 0s"},
		{[]string{"--shutdown-timeout", "-1s"}, "--shutdown-timeout must be positive"},
		{[]string{"--tls-cert", "cert.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--broker", "kafka"}, `--broker is "kafka"; want memory, nats or redis`},
		{[]string{"--broker-timeout", "0s"}, "--broker-timeout must be positive"},
		{[]string{"--grpc-tls-key", "key.pem"}, "--grpc-tls-cert and --grpc-tls-key go together"},
		{[]string{"--grpc-client-ca", "ca.pem"}, "--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key"},
		{[]string{"--trusted-proxies", "proxy.internal"}, `--trusted-proxies "proxy.internal": want an address or a CIDR`},
		{[]string{"--grpc-client-cert-topics", "billing"}, `--grpc-client-cert-topics "billing": want COMMON-NAME=pattern,pattern`},
		{[]string{"--dev", "--http-addr", "0.0.0.0:8080"}, "--dev refuses to listen on 0.0.0.0:8080"},
		{[]string{"--demo", "--grpc-addr", "10.0.0.1:9090"}, "--dev refuses to listen on 10.0.0.1:9090"}, // --demo implies --dev
	} {
		c, err := parseServeFlags(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err = c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want valid", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseServeFlags([]string{"--dev", "extra"}, io.Discard); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("a stray argument: %v", err)
	}
}
