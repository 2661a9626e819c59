// Package bridge is Herald's core: it takes typed events from publishers
// (gRPC and REST), appends them to a Broker, and fans every accepted event
// out to the Server-Sent Events streams of the subscribers on this node.
//
// Data flow, one owner per arrow:
//
//	gRPC / REST publish → validate (topic, type, size, payload against the TypeResolver)
//	  → Broker.Publish (assigns the event's position, the SSE id)
//	Broker subscription (one per node) → Hub → JSON and frame bytes encoded once per event
//	  → bounded per-subscriber queue → SSE handler (write deadline, flush)
//	slow subscriber: queue overflows → its stream ends → it reconnects with
//	  Last-Event-ID → Broker.Replay fills the gap
//
// The package never imports a broker implementation; cmd/herald wires one in.
package bridge
