package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// control is the HTTP API through which a node test asks the Go side to
// act on the servers: publish over gRPC, cut connections, restart. Errors
// a test expects (a refused publish) are answered 200 with "error" set;
// anything else is a 500 that fails the node test.
type control struct {
	t       testing.TB
	servers map[string]*herald
	url     string
}

func startControl(t testing.TB, servers map[string]*herald) *control {
	t.Helper()
	c := &control{t: t, servers: servers}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", c.handle(c.publish))
	mux.HandleFunc("POST /near-limit", c.handle(c.nearLimit))
	mux.HandleFunc("POST /outage", c.handle(c.disrupt(false)))
	mux.HandleFunc("POST /restart", c.handle(c.disrupt(true)))
	mux.HandleFunc("POST /tap", c.handle(c.tapStats))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	c.url = "http://" + ln.Addr().String()
	return c
}

// controlRequest is the body of every control call.
type controlRequest struct {
	Server   string            `json:"server"`
	Topic    string            `json:"topic"`
	Type     string            `json:"type"`
	Payloads []json.RawMessage `json:"payloads"` // google.protobuf.Any in protojson form
	Stream   bool              `json:"stream"`   // publish over one PublishStream
	Unit     string            `json:"unit"`     // near-limit: the text repeated
}

func (c *control) handle(f func(context.Context, *herald, controlRequest) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req controlRequest
		err := json.NewDecoder(r.Body).Decode(&req)
		var out any
		if err == nil {
			h := c.servers[req.Server]
			if h == nil {
				err = fmt.Errorf("no server %q", req.Server)
			} else {
				ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
				out, err = f(ctx, h, req)
				cancel()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			c.t.Logf("control %s: %v", r.URL.Path, err)
			w.WriteHeader(http.StatusInternalServerError)
			out = map[string]string{"error": err.Error()}
		}
		_ = json.NewEncoder(w).Encode(out)
	}
}

func (c *control) requests(h *herald, req controlRequest) ([]*heraldv1.PublishRequest, error) {
	var reqs []*heraldv1.PublishRequest
	for _, raw := range req.Payloads {
		payload := &anypb.Any{}
		if err := (protojson.UnmarshalOptions{Resolver: h.types}).Unmarshal(raw, payload); err != nil {
			return nil, fmt.Errorf("payload %s: %w", raw, err)
		}
		reqs = append(reqs, &heraldv1.PublishRequest{Topic: req.Topic, Type: req.Type, Payload: payload})
	}
	return reqs, nil
}

type publishResult struct {
	IDs   []string `json:"ids"`
	Error *refusal `json:"error,omitempty"`
}

type refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (c *control) publish(ctx context.Context, h *herald, req controlRequest) (any, error) {
	reqs, err := c.requests(h, req)
	if err != nil {
		return nil, err
	}
	if req.Stream {
		ids, err := h.publishStream(ctx, reqs)
		return publishResult{IDs: ids}, err
	}
	var res publishResult
	for _, r := range reqs {
		id, err := h.publish(ctx, r)
		if st, ok := status.FromError(err); ok && err != nil {
			res.Error = &refusal{Code: st.Code().String(), Message: st.Message()}
			return res, nil
		} else if err != nil {
			return nil, err
		}
		res.IDs = append(res.IDs, id)
	}
	return res, nil
}

// nearLimit publishes a chat message exactly at the server's event size
// limit (text: unit repeated, padded with x), and checks that one byte more
// is refused.
func (c *control) nearLimit(ctx context.Context, h *herald, req controlRequest) (any, error) {
	id, text, overErr, err := h.publishNearLimit(ctx, req.Topic, req.Unit)
	if err != nil {
		return nil, err
	}
	return map[string]any{"id": id, "room": "big", "text": text, "overLimit": status.Convert(overErr).Message()}, nil
}

// disrupt cuts every client of the server, by a network failure or by a
// restart, publishes the payloads while they are away, and returns their
// ids once clients may reconnect.
func (c *control) disrupt(restart bool) func(context.Context, *herald, controlRequest) (any, error) {
	return func(ctx context.Context, h *herald, req controlRequest) (any, error) {
		reqs, err := c.requests(h, req)
		if err != nil {
			return nil, err
		}
		var ids []string
		during := func() error {
			for _, r := range reqs {
				id, err := h.publish(ctx, r)
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		}
		if restart {
			err = h.restart(during)
		} else {
			err = h.outage(during)
		}
		return publishResult{IDs: ids}, err
	}
}

func (c *control) tapStats(_ context.Context, h *herald, _ controlRequest) (any, error) {
	return h.tap.stats(), nil
}
