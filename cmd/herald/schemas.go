package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

const schemasSynopsis = `Manages the payload types a Herald node knows.

  herald schemas push FILE...   register the message types of descriptor sets
                                (buf build -o x.binpb, or protoc --include_imports
                                --descriptor_set_out); every node on the broker learns them
  herald schemas list           list the known message types and where they came from
  herald schemas get NAME       print a type's JSON Schema (what event.data holds)`

func schemas(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("schemas", schemasSynopsis, stderr)
	var dial dialFlags
	dial.register(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	tok := fs.String("token", "", "bearer token whose schemas grant covers the packages pushed (needed when the server checks tokens; herald token --schemas mints one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("schemas: push, list or get?")
	}
	conn, err := dial.dial()
	if err != nil {
		return fmt.Errorf("schemas: %w", err)
	}
	defer conn.Close()
	client := heraldv1.NewSchemaServiceClient(conn)
	ctx, cancel := context.WithTimeout(withToken(ctx, *tok), *timeout)
	defer cancel()
	verb, rest := fs.Arg(0), fs.Args()[1:]
	switch verb {
	case "push":
		if len(rest) == 0 {
			return errors.New("schemas push: name one or more descriptor set files")
		}
		for _, path := range rest {
			raw, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("schemas push: %w", err)
			}
			set := &descriptorpb.FileDescriptorSet{}
			if err := proto.Unmarshal(raw, set); err != nil {
				return fmt.Errorf("schemas push: %s is not a descriptor set: %v", path, err)
			}
			resp, err := client.RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set})
			if err != nil {
				return fmt.Errorf("schemas push %s: %s", path, statusText(err))
			}
			fmt.Fprintf(stdout, "%s: %d added, %d updated\n", path, len(resp.GetAdded()), len(resp.GetUpdated()))
			for _, n := range resp.GetAdded() {
				fmt.Fprintln(stdout, "  added  ", n)
			}
			for _, n := range resp.GetUpdated() {
				fmt.Fprintln(stdout, "  updated", n)
			}
		}
		return nil
	case "list":
		resp, err := client.ListSchemas(ctx, &heraldv1.ListSchemasRequest{})
		if err != nil {
			return fmt.Errorf("schemas list: %s", statusText(err))
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSOURCE\tFILE")
		for _, s := range resp.GetSchemas() {
			src := strings.ToLower(strings.TrimPrefix(s.GetSource().String(), "SCHEMA_SOURCE_"))
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.GetName(), src, s.GetFile())
		}
		return tw.Flush()
	case "get":
		if len(rest) != 1 {
			return errors.New("schemas get: name one message type, e.g. orders.v1.OrderPlaced")
		}
		resp, err := client.GetSchema(ctx, &heraldv1.GetSchemaRequest{Name: rest[0]})
		if err != nil {
			return fmt.Errorf("schemas get: %s", statusText(err))
		}
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp.GetJsonSchema())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	return fmt.Errorf("schemas: unknown verb %q (push, list or get)", verb)
}

func statusText(err error) string {
	s := status.Convert(err)
	return s.Code().String() + ": " + s.Message()
}

// remoteType fetches a message type the server knows (pushed or loaded from
// files) so that publish can encode --data for it.
func remoteType(ctx context.Context, conn grpc.ClientConnInterface, name string) (protoreflect.MessageType, error) {
	resp, err := heraldv1.NewSchemaServiceClient(conn).GetSchema(ctx, &heraldv1.GetSchemaRequest{Name: name})
	if err != nil {
		return nil, errors.New(statusText(err))
	}
	files, err := protodesc.NewFiles(resp.GetDescriptors())
	if err != nil {
		return nil, err
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, err
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a message", name)
	}
	return dynamicpb.NewMessageType(md), nil
}
