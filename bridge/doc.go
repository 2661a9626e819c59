// Package bridge is Herald's server: it takes typed events from publishers
// (gRPC and REST), appends them to a broker.Broker, and fans every accepted
// event out to the Server-Sent Events streams (and gRPC Subscribe calls) of
// the subscribers on this node.
//
// Data flow, one owner per arrow, each step in the file of its name:
//
//	gRPC / REST publish (publish.go) → auth and limits (auth.go, limits.go)
//	  → validate: topic, type, size, payload against the TypeResolver (validate.go)
//	  → Broker.Publish (assigns the event's position, the SSE id)
//	Broker subscription (one per node) → Hub (hub.go) → JSON and frame bytes
//	  encoded once per event and rendering (render.go)
//	  plain HTTP/1.1 streams, taken over from net/http (takeover.go):
//	    → shard writer (one per core, shard.go) → non-blocking write of the
//	      shared frame to each of its sockets; a full socket puts that stream
//	      behind: ↓
//	  other streams (HTTP/2, TLS, gRPC Subscribe), and streams behind:
//	    → bounded per-subscriber queue → the stream's goroutine (stream.go)
//	slow subscriber: queue overflows → its stream ends → it reconnects with
//	  Last-Event-ID → the SSE handler (sse.go) replays from Broker.Replay
//
// The fan-out engine's rules (goroutines, lock order, who touches what) are
// at the top of hub.go; docs/architecture.md walks one event through them.
// The package never imports a broker implementation; cmd/herald wires one in.
package bridge
