package schema_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/heraldhq/herald/internal/schema"
)

// unlimited lifts the push limits, to measure what they guard against.
var unlimited = schema.Options{MaxPushBytes: 1 << 30, MaxPushTypes: 1 << 30, MaxPushedTypes: 1 << 30, MaxPushedBytes: 1 << 30}

// registryOf returns a registry holding about types pushed message types,
// in files of at most 1,000.
func registryOf(tb testing.TB, types int) *schema.Registry {
	tb.Helper()
	r, err := schema.New(context.Background(), unlimited)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; types > 0; i++ {
		n := min(types, 1000)
		types -= n
		if _, _, err := r.Register(context.Background(), genSet(genFile(fmt.Sprintf("base/f%d.proto", i), fmt.Sprintf("base%d.v1", i), n, false))); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

// BenchmarkPush: the latency of a push of 10 types, new ones or a new
// version of a pushed file, onto registries of 30 and of 20,000 pushed
// types. It should not grow with the registry beyond the copy of its maps.
func BenchmarkPush(b *testing.B) {
	for _, registered := range []int{30, 20000} {
		b.Run(fmt.Sprintf("new/registered=%d", registered), func(b *testing.B) {
			var r *schema.Registry
			for i := range b.N {
				if i%500 == 0 { // keep the registry at its size
					b.StopTimer()
					r = registryOf(b, registered)
					b.StartTimer()
				}
				if _, _, err := r.Register(context.Background(), genSet(genFile(fmt.Sprintf("new/p%d.proto", i), fmt.Sprintf("new%d.v1", i), 10, false))); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("version/registered=%d", registered), func(b *testing.B) {
			r := registryOf(b, registered)
			b.ResetTimer()
			for i := range b.N {
				// Compatible versions: the deprecated option comes and goes.
				if _, _, err := r.Register(context.Background(), genSet(genFile("new/p.proto", "new.v1", 10, i%2 == 1))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPushHeap: the heap that pushes leave behind (heap-MB, after a
// GC) and what they allocate on the way (alloc-MB). Four pushes of 20,000
// types each are refused by the default limits (the first one already);
// with the limits lifted, they show what the limits guard against; one
// push of 1,000 types is what a push within the limits costs.
func BenchmarkPushHeap(b *testing.B) {
	for _, tc := range []struct {
		name          string
		opts          schema.Options
		pushes, types int
	}{
		{"4x20000/default-limits", schema.Options{}, 4, 20000},
		{"4x20000/no-limits", unlimited, 4, 20000},
		{"1x1000/default-limits", schema.Options{}, 1, 1000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sets := make([]*descriptorpb.FileDescriptorSet, tc.pushes)
			for i := range sets {
				sets[i] = genSet(genFile(fmt.Sprintf("heap/f%d.proto", i), fmt.Sprintf("heap%d.v1", i), tc.types, false))
			}
			var retained, allocated uint64
			accepted := 0
			for range b.N {
				b.StopTimer()
				r, err := schema.New(context.Background(), tc.opts)
				if err != nil {
					b.Fatal(err)
				}
				before := memStats()
				b.StartTimer()
				accepted = 0
				for _, set := range sets {
					if _, _, err := r.Register(context.Background(), set); err == nil {
						accepted++
					}
				}
				b.StopTimer()
				after := memStats()
				retained += after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
				allocated += after.TotalAlloc - before.TotalAlloc
				runtime.KeepAlive(r)
				b.StartTimer()
			}
			b.ReportMetric(float64(retained)/float64(b.N)/(1<<20), "heap-MB")
			b.ReportMetric(float64(allocated)/float64(b.N)/(1<<20), "alloc-MB")
			b.ReportMetric(float64(accepted), "accepted")
		})
	}
}

func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// BenchmarkHasFieldPath: checking a subscription's field paths costs the
// same with 30 and with 20,000 known types, once the snapshot's index is
// built; first-call is the cost of building it, once per snapshot (after
// a push), on the first subscription with fields=; range-all is what the
// SSE handler did before, with a MessageRanger: every type, every path.
func BenchmarkHasFieldPath(b *testing.B) {
	paths := [][]string{{"id"}, {"prev", "prev", "id"}, {"prev", "nosuch"}, {"nosuch"}, {"prev", "prev", "prev", "prev", "seq"}}
	for _, registered := range []int{30, 20000} {
		r := registryOf(b, registered)
		b.Run(fmt.Sprintf("registered=%d", registered), func(b *testing.B) {
			for _, p := range paths {
				r.HasFieldPath(p)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r.HasFieldPath(paths[i%len(paths)])
			}
		})
		b.Run(fmt.Sprintf("range-all/registered=%d", registered), func(b *testing.B) {
			for i := range b.N {
				resolves(r, paths[i%len(paths)])
			}
		})
		b.Run(fmt.Sprintf("first-call/registered=%d", registered), func(b *testing.B) {
			for i := range b.N {
				b.StopTimer()
				if _, _, err := r.Register(context.Background(), genSet(genFile("new/p.proto", "new.v1", 1, i%2 == 1))); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				r.HasFieldPath(paths[1])
			}
		})
	}
}
