package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestServeHelpNamesWhatItServes: `herald serve --help` (its synopsis and
// the help of --grpc-addr) names every gRPC service a running node
// registers, as listed by server reflection, and the synopsis names every
// REST route of the node's OpenAPI document.
func TestServeHelpNamesWhatItServes(t *testing.T) {
	out, _ := herald(t, context.Background(), "serve", "--help").CombinedOutput()
	help := string(out)
	synopsis, flags, ok := strings.Cut(help, "\nFlags")
	if !ok {
		t.Fatalf("no flag list in serve --help:\n%s", help)
	}
	_, grpcAddrHelp, _ := strings.Cut(flags, "  --grpc-addr ")
	grpcAddrHelp, _, _ = strings.Cut(grpcAddrHelp, "\n  --")

	_, httpAddr, grpcAddr := startServe(t)
	services := listServices(t, grpcAddr)
	if len(services) < 3 {
		t.Fatalf("reflection lists %q", services)
	}
	for _, svc := range services {
		name := svc
		if strings.HasPrefix(svc, "grpc.reflection.") {
			name = "server reflection"
		}
		if !strings.Contains(synopsis, name) {
			t.Errorf("the synopsis of serve --help does not name %s (a service it serves)", name)
		}
		if !strings.Contains(grpcAddrHelp, name) {
			t.Errorf("the help of --grpc-addr does not name %s (a service it serves): %q", name, grpcAddrHelp)
		}
	}

	resp, err := http.Get("http://" + httpAddr + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Paths) == 0 {
		t.Fatal("the OpenAPI document lists no paths")
	}
	for path, methods := range doc.Paths {
		for method := range methods {
			if route := strings.ToUpper(method) + " " + path; !strings.Contains(synopsis, route) {
				t.Errorf("the synopsis of serve --help does not name %s (a REST route it serves)", route)
			}
		}
	}
}

// listServices lists the services of the gRPC server at addr through
// server reflection.
func listServices(t *testing.T, addr string) []string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}
