package schema_test

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// genFile is a file of n messages in package pkg, each with three fields,
// one of them referring to the previous message: what a code generator
// would push, built without a compiler so that benchmarks measure the
// registry alone.
func genFile(path, pkg string, n int, deprecated bool) *descriptorpb.FileDescriptorProto {
	fd := &descriptorpb.FileDescriptorProto{Name: proto.String(path), Package: proto.String(pkg), Syntax: proto.String("proto3")}
	for i := range n {
		m := &descriptorpb.DescriptorProto{
			Name: proto.String(fmt.Sprintf("M%d", i)),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("id"), JsonName: proto.String("id"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
					Options: &descriptorpb.FieldOptions{Deprecated: proto.Bool(deprecated)}},
				{Name: proto.String("seq"), JsonName: proto.String("seq"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
			},
		}
		if i > 0 {
			m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{Name: proto.String("prev"), JsonName: proto.String("prev"), Number: proto.Int32(3),
				Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), TypeName: proto.String(fmt.Sprintf(".%s.M%d", pkg, i-1))})
		}
		fd.MessageType = append(fd.MessageType, m)
	}
	return fd
}

func genSet(files ...*descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorSet {
	return &descriptorpb.FileDescriptorSet{File: files}
}
