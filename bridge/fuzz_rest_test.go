package bridge_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// FuzzRESTPublish feeds arbitrary bodies to POST /v1/topics/{topic}/events:
// every answer is a success or a client error with the REST error body,
// never a 5xx or a panic, whatever the body holds.
func FuzzRESTPublish(f *testing.F) {
	for _, seed := range []string{
		`{"payload":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"a":1}}}`,
		`{"payload":{"@type":"type.googleapis.com/orders.v1.OrderPlaced","orderId":"o-1","totalCents":"5","currency":"EUR"},"idempotencyKey":"k"}`,
		`{"payload":` + nestedAnyJSON(40) + `}`,
		`{"payload":{"@type":"type.googleapis.com/google.protobuf.Struct","value":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}}`,
		`{"payload":{"@type":"evil.example/google.protobuf.Struct","value":{}}}`,
		`{"payload":{"@type":"type.googleapis.com/google.protobuf.Any","value":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}},"type":"x","attributes":{"k":"v"}}`,
		`{"topic":"other","payload":{}}`,
		`{`, ``, `null`, `[]`, `{"payload":{"@type":1}}`,
	} {
		f.Add("orders.eu", seed)
	}
	s := heraldtest.Start(f, heraldtest.Options{})
	h := s.Handler()
	f.Fuzz(func(t *testing.T, topic, body string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/topics/x/events", strings.NewReader(body))
		req.SetPathValue("topic", topic)
		req.URL.Path = "/v1/topics/" + strings.ReplaceAll(topic, "/", "%2F") + "/events"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code == http.StatusOK:
			var resp struct{ ID string }
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.ID == "" {
				t.Fatalf("200 without an id: %s", rec.Body)
			}
		case code == http.StatusTemporaryRedirect || code == http.StatusMovedPermanently:
			// net/http's answer to a path that is not clean ("/v1/topics/./events").
		case code >= 400 && code < 500:
			var e struct {
				Code    int
				Message string
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Fatalf("%d without an error body: %q", code, rec.Body)
			}
		default:
			t.Fatalf("%d for body %q: %s", code, body, rec.Body)
		}
	})
}
