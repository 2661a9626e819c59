// Package clustertest holds the multi-node tests: three real `herald serve`
// processes on one broker (an embedded NATS JetStream server, or a real
// redis-server), SSE subscribers on every node read with an independent
// parser, publishers spread over the nodes; then a node is killed with
// SIGKILL and later the broker is restarted, mid-stream, and every
// subscriber must still receive every event exactly once, in topic order.
//
// The admin tests run three nodes with tokens on each broker: the
// subscriber counts of the three add up on every node, a revocation made on
// one node ends the revoked subject's streams on all, and a killed node's
// counts expire from the others'.
package clustertest
