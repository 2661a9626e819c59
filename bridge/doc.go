// Package bridge is Herald's core: it takes typed events from publishers
// (gRPC and REST), appends them to a Broker, and fans every accepted event
// out to the Server-Sent Events streams of the subscribers on this node.
//
// Data flow, one owner per arrow:
//
//	gRPC / REST publish → validate (topic, type, size, payload against the TypeResolver)
//	  → Broker.Publish (assigns the event's position, the SSE id)
//	Broker subscription (one per node) → Hub → JSON and frame bytes encoded once per event
//	  plain HTTP/1.1 streams: → shard writer (one per core, writer.go) → non-blocking
//	    write of the shared frame to each of its sockets; a full socket puts that
//	    stream behind: ↓
//	  other streams (HTTP/2, TLS, gRPC Subscribe), and streams behind:
//	    → bounded per-subscriber queue → the stream's goroutine (write deadline)
//	slow subscriber: queue overflows → its stream ends → it reconnects with
//	  Last-Event-ID → Broker.Replay fills the gap
//
// The package never imports a broker implementation; cmd/herald wires one in.
package bridge
