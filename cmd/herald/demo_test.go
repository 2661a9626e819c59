package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
)

// TestExampleTypesOnlyWithDemo: the example schemas and the demo page are
// part of --demo only; a plain node knows the well-known types and what it
// is given.
func TestExampleTypesOnlyWithDemo(t *testing.T) {
	payload, err := anypb.New(&ordersv1.OrderPlaced{OrderId: "o-1", Customer: "Ada", TotalCents: 4200, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		accepted bool
		page     int
	}{
		{"dev", nil, false, http.StatusNotFound},
		{"demo", []string{"--demo"}, true, http.StatusOK},
		{"dev with the examples as --descriptors", []string{"--descriptors", writeExamples(t)}, true, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, httpAddr, grpcAddr := startServe(t, tc.args...)
			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err = heraldv1.NewPublisherServiceClient(conn).Publish(ctx, &heraldv1.PublishRequest{Topic: "orders.eu", Payload: payload})
			switch {
			case tc.accepted && err != nil:
				t.Errorf("publish of orders.v1.OrderPlaced: %v", err)
			case !tc.accepted && (status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "orders.v1.OrderPlaced")):
				t.Errorf("publish of orders.v1.OrderPlaced: %v; want INVALID_ARGUMENT naming the unknown type", err)
			}
			resp, err := http.Get("http://" + httpAddr + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.page {
				t.Errorf("GET /: %d, want %d", resp.StatusCode, tc.page)
			}
		})
	}
}
