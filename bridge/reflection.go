package bridge

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// registerReflection serves gRPC server reflection. When the payload types
// can be looked up as files (the schema registry: compiled in, loaded with
// --descriptors, pushed at run time), reflection knows them too, so that
// tools such as grpcurl can describe a pushed type and publish an Any of
// it; Herald's own API comes from the binary.
func registerReflection(s *grpc.Server, types TypeResolver) {
	opts := reflection.ServerOptions{Services: s}
	if files, ok := types.(protodesc.Resolver); ok {
		opts.DescriptorResolver = chainedFiles{files, protoregistry.GlobalFiles}
	}
	rpb.RegisterServerReflectionServer(s, reflection.NewServerV1(opts))
	rpbalpha.RegisterServerReflectionServer(s, reflection.NewServer(opts))
}

// chainedFiles looks descriptors up in each resolver in turn: the types the
// server publishes with first, so that a schema pushed at run time wins over
// the copy compiled into the binary.
type chainedFiles []protodesc.Resolver

func (c chainedFiles) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, r := range c {
		if fd, err := r.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, protoregistry.NotFound
}

func (c chainedFiles) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, r := range c {
		if d, err := r.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, protoregistry.NotFound
}
