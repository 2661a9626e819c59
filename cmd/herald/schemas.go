package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
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
  herald schemas get NAME       print a type's JSON Schema (what event.data holds)

The flags below belong to every schemas command, before or after its name:
herald schemas push --server host:9090 x.binpb and herald schemas --server
host:9090 push x.binpb are the same.`

// schemasFlags are the settings of every schemas command.
type schemasFlags struct {
	dial    dialFlags
	timeout time.Duration
	token   string
}

func newSchemasCmd() *cobra.Command {
	s := new(schemasFlags)
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "Push, list and describe the payload types a node knows",
		Long:  schemasSynopsis,
	}
	fs := cmd.PersistentFlags()
	s.dial.register(fs)
	fs.DurationVar(&s.timeout, "timeout", 10*time.Second, "give up after this long")
	fs.StringVar(&s.token, "token", "", "bearer token whose schemas grant covers the packages pushed (needed when the server checks tokens; herald token --schemas mints one)")
	markSettings(cmd)
	cmd.AddCommand(
		&cobra.Command{
			Use:   "push FILE...",
			Short: "Register the message types of descriptor sets",
			Long: `Registers the message types of descriptor sets (buf build -o x.binpb, or
protoc --include_imports --descriptor_set_out=x.binpb) with a Herald node;
every node on its broker learns them. It prints what each file added or
changed.

  herald schemas push shop.binpb
  herald schemas push --server herald.internal:9090 --tls --token "$TOKEN" shop.binpb`,
			Args: minArgs(1, "one or more descriptor set files"),
			RunE: s.call(s.push),
		},
		&cobra.Command{
			Use:               "list",
			Short:             "List the known message types and where they came from",
			Args:              noArgs,
			RunE:              s.call(s.list),
			ValidArgsFunction: cobra.NoFileCompletions,
		},
		&cobra.Command{
			Use:   "get NAME",
			Short: "Print a type's JSON Schema (what event.data holds)",
			Long: `Prints the JSON Schema of a message type: what event.data holds for
events of that type.

  herald schemas get orders.v1.OrderPlaced`,
			Args:              exactArgs(1, "one message type, e.g. orders.v1.OrderPlaced"),
			RunE:              s.call(s.get),
			ValidArgsFunction: cobra.NoFileCompletions,
		},
	)
	return cmd
}

// call runs op with a client of the node, bounded by --timeout.
func (s *schemasFlags) call(op func(context.Context, heraldv1.SchemaServiceClient, []string, io.Writer) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		conn, err := s.dial.dial()
		if err != nil {
			return asUsage(fmt.Errorf("schemas: %w", err))
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(withToken(cmd.Context(), s.token), s.timeout)
		defer cancel()
		return op(ctx, heraldv1.NewSchemaServiceClient(conn), args, cmd.OutOrStdout())
	}
}

func (s *schemasFlags) push(ctx context.Context, client heraldv1.SchemaServiceClient, files []string, stdout io.Writer) error {
	for _, path := range files {
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
			return fmt.Errorf("schemas push %s: %s", path, s.dial.rpcError(ctx, err))
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
}

func (s *schemasFlags) list(ctx context.Context, client heraldv1.SchemaServiceClient, _ []string, stdout io.Writer) error {
	resp, err := client.ListSchemas(ctx, &heraldv1.ListSchemasRequest{})
	if err != nil {
		return fmt.Errorf("schemas list: %s", s.dial.rpcError(ctx, err))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tFILE")
	for _, sc := range resp.GetSchemas() {
		src := strings.ToLower(strings.TrimPrefix(sc.GetSource().String(), "SCHEMA_SOURCE_"))
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sc.GetName(), src, sc.GetFile())
	}
	return tw.Flush()
}

func (s *schemasFlags) get(ctx context.Context, client heraldv1.SchemaServiceClient, args []string, stdout io.Writer) error {
	resp, err := client.GetSchema(ctx, &heraldv1.GetSchemaRequest{Name: args[0]})
	if err != nil {
		return fmt.Errorf("schemas get: %s", s.dial.rpcError(ctx, err))
	}
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp.GetJsonSchema())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

func statusText(err error) string {
	s := status.Convert(err)
	return s.Code().String() + ": " + s.Message()
}

// remoteType fetches a message type the server knows (pushed or loaded from
// files) so that publish can encode --data for it. A failed call returns
// its status error.
func remoteType(ctx context.Context, conn grpc.ClientConnInterface, name string) (protoreflect.MessageType, error) {
	resp, err := heraldv1.NewSchemaServiceClient(conn).GetSchema(ctx, &heraldv1.GetSchemaRequest{Name: name})
	if err != nil {
		return nil, err
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
