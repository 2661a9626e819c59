package e2e

import (
	"strings"
	"testing"
)

// TestDocsBlockMarkers: how TestDocsShellBlocks reads the docs. An
// unmarked block runs; a marker that does not say how, or a session that
// cannot be put together, fails instead of dropping blocks silently.
func TestDocsBlockMarkers(t *testing.T) {
	fence := "```"
	md := strings.Join([]string{
		"# Doc",
		fence + "sh",
		"herald serve --dev    # a server",
		fence,
		"",
		"<!-- run: after the block above -->",
		fence + "sh",
		"curl -N 'http://localhost:8080/v1/events?topic=orders.>'",
		fence,
		fence,
		"id: k3j9x2ab-41",
		fence,
		"<!-- not run: needs three hosts -->",
		fence + "bash",
		"herald serve --broker nats --nats-url nats://nats-1:4222",
		fence,
		"<!-- run: after herald serve --dev; in examples/schemas; needs npm -->",
		fence + "sh",
		"npm start    # serves http://127.0.0.1:8000/",
		fence,
		fence + "js",
		"new EventSource('/v1/events')",
		fence,
	}, "\n")
	blocks, err := parseDocBlocks("doc.md", md+"\n1. In a list:\n\n   ~~~bash\n   herald version\n   ~~~\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 5 || strings.TrimSpace(blocks[4].text) != "herald version" {
		t.Fatalf("%d blocks; want 5, the last one indented in a list", len(blocks))
	}
	blocks = blocks[:4]
	sessions, notRun, err := docSessions(blocks)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 2 || len(sessions[0].blocks) != 2 || len(notRun) != 1 {
		t.Fatalf("sessions %v, not run %v; want the first two blocks together, the third not run, the fourth alone", sessions, notRun)
	}
	if got := sessions[0].blocks[1].output; got != "id: k3j9x2ab-41\n" {
		t.Errorf("the output block after the curl block: %q", got)
	}
	if notRun[0].notRun != "needs three hosts" {
		t.Errorf("reason: %q", notRun[0].notRun)
	}
	last := sessions[1].blocks[0]
	if last.after != "herald serve --dev" || last.dir != "examples/schemas" || len(last.needs) != 1 || last.needs[0] != "npm" {
		t.Errorf("clauses: %+v", last)
	}

	for _, bad := range []struct{ md, want string }{
		{"<!-- not run: -->\n" + fence + "sh\nls\n" + fence, "needs a reason"},
		{"<!-- not run: why -->\n\n" + fence + "sh\nls\n" + fence, "not right before"},
		{"<!-- run: after the bock above -->\n" + fence + "sh\nls\n" + fence, "not shown"},
		{"<!-- run: later -->\n" + fence + "sh\nls\n" + fence, "unknown run clause"},
		{"<!-- not-run because -->\n" + fence + "sh\nls\n" + fence, "a marker reads"},
		{"<!-- run: after the block above -->\n" + fence + "sh\nls\n" + fence, "no run block is right above"},
		{"<!-- not run: x -->\n" + fence + "sh\nls\n" + fence + "\n<!-- run: after the block above -->\n" + fence + "sh\nls\n" + fence, "no run block is right above"},
		{fence + "console\n$ ls\n" + fence, "write commands in an sh block"},
	} {
		blocks, err := parseDocBlocks("doc.md", bad.md)
		if err == nil {
			_, _, err = docSessions(blocks)
		}
		if bad.want == "not shown" {
			if err == nil || !strings.Contains(err.Error(), "which no shell block") {
				t.Errorf("%q: %v; want an error naming a command no block shows", bad.md, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v; want an error containing %q", bad.md, err, bad.want)
		}
	}
}

// TestDocsCommandsAndOutput: a block splits into commands as bash reads
// it, the comments say what each prints, and shown output is matched by its
// shape: another id or value passes, another field or status does not.
func TestDocsCommandsAndOutput(t *testing.T) {
	cmds, err := parseCommands(`head -c 32 /dev/urandom | base64 > secret     # a shared secret, once
herald publish --topic orders.eu \
  --data '{"orderId":"o-1"}'
# prints the event id, e.g. k3j9x2ab-42
curl -s -X POST localhost:8080/v1/topics/orders.eu/events -d '{
  "payload": {}
}'
# {"id":"k3j9x2ab-43"}
curl -s -o /dev/null -w '%{http_code}\n' http://localhost:8080/metrics    # 404
herald serve --debug-addr :6060    # refused: not a loopback address
herald serve --metrics-addr 127.0.0.1:9100 --cors-origins http://127.0.0.1:8000
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 6 {
		t.Fatalf("%d commands, want 6: %+v", len(cmds), cmds)
	}
	want := []struct {
		program, expect string
		refused         bool
	}{
		{"head", "", false},
		{"herald publish", "k3j9x2ab-42", false},
		{"curl", `{"id":"k3j9x2ab-43"}`, false},
		{"curl", "404", false},
		{"herald serve", "", true},
		{"herald serve", "", false},
	}
	for i, w := range want {
		c := cmds[i]
		if c.program() != w.program || c.expect != w.expect || c.refused != w.refused {
			t.Errorf("command %d %q: program %q, expect %q, refused %v; want %+v", i, c.text, c.program(), c.expect, c.refused, w)
		}
	}
	if !strings.HasSuffix(cmds[2].text, "}'") {
		t.Errorf("the multi-line curl is cut short: %q", cmds[2].text)
	}
	if cmds[4].why != "not a loopback address" {
		t.Errorf("why %q", cmds[4].why)
	}
	for _, c := range []struct {
		message string
		ok      bool
	}{
		{"herald: serve: --debug-addr :6060 is not a loopback address: its Go profiles ...", true},
		{"herald: serve: listen tcp 127.0.0.1:8080: bind: address already in use", false},
	} {
		if explains(c.message, cmds[4].why) != c.ok {
			t.Errorf("%q explains %q: want %v", c.message, cmds[4].why, c.ok)
		}
	}
	if cmds[4].isServer() || !cmds[5].isServer() {
		t.Errorf("a refused serve is run to its end; any other serve in the background")
	}
	if got := strings.Join(cmds[5].ports(), ","); got != "8080,9090,9100" {
		t.Errorf("ports %s, want 8080,9090,9100 (the defaults and --metrics-addr, not a CORS origin)", got)
	}

	frame := `data: {"orderId":"ord-000007","customer":"Ada Lovelace","items":[...],"totalCents":"12900","currency":"EUR",...}`
	for _, c := range []struct {
		shown, output string
		ok            bool
	}{
		{"k3j9x2ab-42", "z2wme4zogf-16\n", true},
		{"k3j9x2ab-42", "published\n", false},
		{`{"id":"k3j9x2ab-43"}`, `{"id":"z2wme4zogf-17"}`, true},
		{`{"id":"k3j9x2ab-43"}`, `{"code":3,"message":"unknown type"}`, false},
		{"404", "404\n", true},
		{"404", "200\n", false},
		{"retry: 2000\nid: k3j9x2ab-41\nevent: orders.v1.OrderPlaced\n" + frame,
			"retry: 2000\n\nid: z2wme4zogf-1\nevent: orders.v1.OrderPlaced\n" +
				`data: {"orderId":"ord-000001","customer":"山田 太郎","items":[{"sku":"PD-04"}],"totalCents":"11800","currency":"EUR","placedAt":"2026-12-03T10:36:42Z"}`, true},
		{frame, `data: {"orderId":"ord-000001","name":"Ada","items":[],"totalCents":"11800","currency":"EUR","x":1}`, false},
		{frame, `data: {"orderId":"ord-000001","customer":"Ada","items":[],"totalCents":11800,"currency":"EUR","x":1}`, false},
		{"retry: 2000\nid: k3j9x2ab-41", "id: z2wme4zogf-1\nretry: 2000", false},
	} {
		if ok, _ := matchShown(c.shown, c.output); ok != c.ok {
			t.Errorf("shown %q, output %q: match %v, want %v", c.shown, c.output, ok, c.ok)
		}
	}
}
