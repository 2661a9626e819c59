// Package schema is Herald's registry of payload types: it tells the
// publish path which protobuf messages it may accept and how to render them
// as JSON. Today it knows the compiled-in types: the protobuf well-known
// types and the example schemas (orders, monitoring, chat). The Registry
// swaps its whole type set atomically, which is the seam for schemas loaded
// at run time.
package schema

import (
	"fmt"
	"sort"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/apipb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/sourcecontextpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/typepb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	monitoringv1 "github.com/heraldhq/herald/gen/monitoring/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
)

// builtinFiles are the files whose messages every Herald knows.
var builtinFiles = []protoreflect.FileDescriptor{
	anypb.File_google_protobuf_any_proto,
	apipb.File_google_protobuf_api_proto,
	durationpb.File_google_protobuf_duration_proto,
	emptypb.File_google_protobuf_empty_proto,
	fieldmaskpb.File_google_protobuf_field_mask_proto,
	sourcecontextpb.File_google_protobuf_source_context_proto,
	structpb.File_google_protobuf_struct_proto,
	timestamppb.File_google_protobuf_timestamp_proto,
	typepb.File_google_protobuf_type_proto,
	wrapperspb.File_google_protobuf_wrappers_proto,
	ordersv1.File_orders_v1_orders_proto,
	monitoringv1.File_monitoring_v1_monitoring_proto,
	chatv1.File_chat_v1_chat_proto,
}

// Registry resolves payload types. It is safe for concurrent use.
type Registry struct {
	types atomic.Pointer[protoregistry.Types]
}

// NewBuiltin returns a registry of the compiled-in types.
func NewBuiltin() (*Registry, error) {
	types := new(protoregistry.Types)
	for _, fd := range builtinFiles {
		if err := registerMessages(types, fd.Messages()); err != nil {
			return nil, fmt.Errorf("schema: %s: %w", fd.Path(), err)
		}
	}
	r := &Registry{}
	r.types.Store(types)
	return r, nil
}

func registerMessages(types *protoregistry.Types, msgs protoreflect.MessageDescriptors) error {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if md.IsMapEntry() {
			continue
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
		if err != nil {
			return err
		}
		if err := types.RegisterMessage(mt); err != nil {
			return err
		}
		if err := registerMessages(types, md.Messages()); err != nil {
			return err
		}
	}
	return nil
}

// FindMessageByName implements protoregistry.MessageTypeResolver.
func (r *Registry) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	return r.types.Load().FindMessageByName(name)
}

// FindMessageByURL implements protoregistry.MessageTypeResolver.
func (r *Registry) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	return r.types.Load().FindMessageByURL(url)
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (r *Registry) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return r.types.Load().FindExtensionByName(field)
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (r *Registry) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return r.types.Load().FindExtensionByNumber(message, field)
}

// Names returns the full names of all known message types, sorted.
func (r *Registry) Names() []string {
	var names []string
	r.types.Load().RangeMessages(func(mt protoreflect.MessageType) bool {
		names = append(names, string(mt.Descriptor().FullName()))
		return true
	})
	sort.Strings(names)
	return names
}
