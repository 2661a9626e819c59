package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	sse "github.com/tmaxmax/go-sse"

	"github.com/heraldhq/herald/internal/config"
)

const tailSynopsis = `Prints the events of one or more topics as they arrive over Server-Sent
Events, one line each: id, type, JSON data. Reconnects and resumes with
Last-Event-ID when the connection drops. Stop it with Ctrl-C.

  herald tail --topic 'orders.>' --topic chat.rooms.lobby`

type tailFlags struct {
	url    string
	last   string
	token  string
	topics config.StringList
}

func newTailCmd() *cobra.Command {
	var t tailFlags
	cmd := &cobra.Command{
		Use:   "tail [flags]",
		Short: "Print the events of topics as they arrive over SSE",
		Long:  tailSynopsis,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.run(cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&t.url, "url", "http://localhost:8080", "HTTP base URL of a Herald node")
	fs.StringVar(&t.last, "last-event-id", "", "resume after this event id")
	fs.StringVar(&t.token, "token", "", "bearer token allowing the topics (not needed for public topics)")
	fs.Var(&t.topics, "topic", "topic or pattern (* one token, > the rest); may repeat (required)")
	markSettings(cmd)
	return cmd
}

func (t *tailFlags) run(cmd *cobra.Command, stdout, stderr io.Writer) error {
	if len(t.topics) == 0 {
		return usagef(cmd, "at least one --topic is required")
	}
	ctx := cmd.Context()
	q := url.Values{"topic": t.topics}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(t.url, "/")+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	if t.last != "" {
		req.Header.Set("Last-Event-ID", t.last)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	client := &sse.Client{
		ResponseValidator: func(r *http.Response) error {
			if r.StatusCode == http.StatusOK {
				return nil
			}
			var body struct{ Message string }
			_ = json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body)
			return fmt.Errorf("%s: %s", r.Status, body.Message)
		},
		OnRetry: func(err error, wait time.Duration) {
			fmt.Fprintf(stderr, "herald tail: %v; reconnecting in %v\n", err, wait.Round(time.Millisecond))
		},
	}
	conn := client.NewConnection(req)
	conn.SubscribeToAll(func(e sse.Event) {
		typ := e.Type
		if typ == "" {
			typ = "message"
		}
		fmt.Fprintf(stdout, "%s %s %s\n", e.LastEventID, typ, e.Data)
	})
	err = conn.Connect()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("tail: %w", err)
}
