package bridge_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/schema"
)

func TestShutdownBeforeServe(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	types, _ := schema.NewBuiltin()
	srv, err := bridge.New(bridge.Config{Broker: b, Types: types})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown of a server that never served: %v", err)
	}
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := srv.Serve(hl, gl); !errors.Is(err, bridge.ErrClosed) {
		t.Fatalf("Serve after Shutdown = %v, want ErrClosed", err)
	}
}
