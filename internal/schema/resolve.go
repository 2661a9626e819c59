package schema

import (
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The registry as a protodesc.Resolver: the files and declarations of
// every type it knows, pushed ones included, so that gRPC server reflection
// describes them and tools such as grpcurl can build an Any of them.

// FindFileByPath returns the file of the registry with path.
func (r *Registry) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fe, ok := r.cur.Load().files.get(path); ok {
		return fe.fd, nil
	}
	return nil, protoregistry.NotFound
}

// FindDescriptorByName returns the declaration of the registry with the
// full name: a message, enum, service or extension, or one nested in them
// (a field, a nested message, a method).
func (r *Registry) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d := r.cur.Load().descriptor(name); d != nil {
		return d, nil
	}
	return nil, protoregistry.NotFound
}

func (s *snapshot) descriptor(name protoreflect.FullName) protoreflect.Descriptor {
	if d, ok := s.decls.get(name); ok {
		return d
	}
	parent := name.Parent()
	if parent == "" || parent == name {
		return nil
	}
	short := name.Name()
	switch p := s.descriptor(parent).(type) {
	case protoreflect.MessageDescriptor:
		for _, d := range []protoreflect.Descriptor{
			p.Fields().ByName(short), p.Messages().ByName(short), p.Enums().ByName(short),
			p.Oneofs().ByName(short), p.Extensions().ByName(short),
		} {
			if d != nil { // a lookup that found nothing is a nil interface
				return d
			}
		}
	case protoreflect.ServiceDescriptor:
		if m := p.Methods().ByName(short); m != nil {
			return m
		}
	}
	return nil
}
