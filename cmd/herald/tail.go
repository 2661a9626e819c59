package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/heraldhq/herald/internal/config"
)

const tailSynopsis = `Prints the events of one or more topics as they arrive over Server-Sent
Events, one line each: id, type, JSON data. Reconnects and resumes with
Last-Event-ID when the connection drops. Stop it with Ctrl-C.

  herald tail --topic 'orders.>' --topic chat.rooms.lobby`

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", tailSynopsis, stderr)
	base := fs.String("url", "http://localhost:8080", "HTTP base URL of a Herald node")
	last := fs.String("last-event-id", "", "resume after this event id")
	tok := fs.String("token", "", "bearer token allowing the topics (not needed for public topics)")
	var topics config.StringList
	fs.Var(&topics, "topic", "topic or pattern (* one token, > the rest); may repeat (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(topics) == 0 {
		fs.Usage()
		return errors.New("tail: at least one --topic is required")
	}
	q := url.Values{"topic": topics}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*base, "/")+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	if *tok != "" {
		req.Header.Set("Authorization", "Bearer "+*tok)
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
